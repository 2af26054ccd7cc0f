"""The ``pet-pvc`` command line: a thin face over the library, one subcommand per job.

Every subcommand module has ``register(subparsers)`` that adds its parser and sets ``handler``
(a function of the parsed arguments returning the exit code). Whatever goes wrong ends in one line
on stderr (after any progress bar is cleared) and an exit code: bad input (:class:`PVCInputError`)
2; an operating-system failure (disk full, ...) 1; SIGINT 130 and SIGTERM 143 (what Slicer's Cancel
sends), both handled alike: the run stops, its staged outputs are removed, nothing is half-written.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from . import __version__
from .errors import PVCInputError, RunInterrupted

#: Modules that register subcommands, in the order ``pet-pvc --help`` lists them.
COMMAND_MODULES = (
    "PETPartialVolumeCorrectionLib.commands",
    "PETPartialVolumeCorrectionLib.training.command",
    "PETPartialVolumeCorrectionLib.classical.command",
    "PETPartialVolumeCorrectionLib.simulation.command",
    "PETPartialVolumeCorrectionLib.quantification.command",
    "PETPartialVolumeCorrectionLib.batch.command",
)

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Signals this run received: an interrupt can surface as another exception (an import that it broke
#: raises ImportError), which is then reported as the interrupt it was.
_signals_received: list = []


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


def _handle_interrupts() -> dict:
    """Turn SIGINT and SIGTERM into :class:`RunInterrupted` in this process (worker processes it
    forks keep the default action); a second signal during the clean-up is ignored. Returns the
    handlers replaced (none off the main thread, where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    main_pid = os.getpid()

    def interrupt(signal_number, frame):
        if os.getpid() != main_pid:
            signal.signal(signal_number, signal.SIG_DFL)
            os.kill(os.getpid(), signal_number)
            return
        for each in INTERRUPT_SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        _signals_received.append(signal_number)
        raise RunInterrupted(signal_number)

    return {each: signal.signal(each, interrupt) for each in INTERRUPT_SIGNALS}


def _clear_progress_bars() -> None:
    """Close any tqdm bar still on screen so the error line starts on a clean line."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is not None:
        for bar in list(getattr(tqdm_module.tqdm, "_instances", ())):
            bar.close()


def _interrupted(signal_number: int) -> tuple[str, int]:
    return f"interrupted ({signal.Signals(signal_number).name})", 128 + signal_number


def main(argv=None) -> int:
    _signals_received.clear()
    replaced_handlers = _handle_interrupts()
    try:
        return _run(argv)
    finally:
        for signal_number, handler in replaced_handlers.items():
            signal.signal(signal_number, handler)


def _run(argv) -> int:
    name = "pet-pvc"
    try:
        args = build_parser().parse_args(argv)
        name = f"pet-pvc {args.command}"
        return int(args.handler(args) or 0)
    except PVCInputError as error:
        message, code = f"error: {error}", EXIT_BAD_INPUT
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        message, code = f"error: {where}{error.strerror or error}", EXIT_FAILURE
    except RunInterrupted as interrupt:
        message, code = _interrupted(interrupt.signal_number)
    except KeyboardInterrupt:
        message, code = _interrupted(signal.SIGINT)
    except Exception:
        if not _signals_received:
            raise
        message, code = _interrupted(_signals_received[0])
    _clear_progress_bars()
    print(f"{name}: {message}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
