"""The exception types the command line turns into one line on stderr and an exit code."""

import signal


class PVCInputError(ValueError):
    """The input (image, labels, model, options or output path) cannot be processed as asked.

    The message is one line that says what is wrong and, where possible, what to do. Exit code 2.
    """


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: raised like Ctrl-C, so every ``finally`` (staging clean-up) runs.

    Attributes:
        signal_number: the signal received; the command line exits with 128 + it (130, 143).
    """

    def __init__(self, signal_number: int = signal.SIGINT):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = int(signal_number)
