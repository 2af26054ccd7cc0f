"""The one exception type for bad input: the command line prints its message on one line, exit 2."""


class PVCInputError(ValueError):
    """The input (image, labels, model, options or output path) cannot be processed as asked.

    The message is one line that says what is wrong and, where possible, what to do.
    """
