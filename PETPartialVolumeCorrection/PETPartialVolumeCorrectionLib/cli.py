"""The ``pet-pvc`` command line: a thin face over the library, one subcommand per job.

Every subcommand module has ``register(subparsers)`` that adds its parser and sets ``handler``
(a function of the parsed arguments returning the exit code). Bad input raises
:class:`PVCInputError`, printed here as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import PVCInputError

#: Modules that register subcommands, in the order ``pet-pvc --help`` lists them.
COMMAND_MODULES = (
    "PETPartialVolumeCorrectionLib.commands",
    "PETPartialVolumeCorrectionLib.training.command",
    "PETPartialVolumeCorrectionLib.classical.command",
    "PETPartialVolumeCorrectionLib.simulation.command",
    "PETPartialVolumeCorrectionLib.quantification.command",
)

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pet-pvc",
        description="Partial volume correction of brain amyloid PET (deep learning, no MRI needed; "
                    "or classical PVC with a segmentation).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except PVCInputError as error:
        print(f"pet-pvc {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"pet-pvc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
