"""Progress reporting and cancellation shared by every long step.

A progress callback is ``progress(fraction, message)`` with ``fraction`` in [0, 1].
A cancel check is ``cancel() -> bool``; long loops call :func:`raise_if_cancelled` between steps.
Background workers (the Slicer module runs ``pet-pvc`` in a child process) print machine-readable
lines, ``PETPVC-PROGRESS <fraction> <message>``, parsed back by :func:`parse_progress_line`.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]

PROGRESS_LINE_PREFIX = "PETPVC-PROGRESS"
PROGRESS_STYLES = ("bar", "lines", "none")


class ProcessingCancelled(Exception):
    """Raised inside a long step when its cancel check returns True."""


def raise_if_cancelled(cancel: Optional[CancelCheck]) -> None:
    if cancel is not None and cancel():
        raise ProcessingCancelled("cancelled by the user")


def report(progress: Optional[ProgressCallback], fraction: float, message: str) -> None:
    """Call ``progress`` if there is one."""
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def scaled(progress: Optional[ProgressCallback], start: float, stop: float) -> Optional[ProgressCallback]:
    """A callback that maps a sub-step's [0, 1] onto [start, stop] of ``progress``."""
    if progress is None:
        return None
    return lambda fraction, message: progress(start + (stop - start) * fraction, message)


def progress_reporter(style: str = "bar") -> Optional[ProgressCallback]:
    """A callback for the command line: a tqdm bar on stderr, parseable lines on stdout, or none."""
    if style == "none":
        return None
    if style == "lines":
        def print_line(fraction: float, message: str) -> None:
            print(f"{PROGRESS_LINE_PREFIX} {fraction:.4f} {message}", flush=True)
        return print_line
    if style != "bar":
        raise ValueError(f"unknown progress style {style!r}; use one of {PROGRESS_STYLES}")
    from tqdm import tqdm

    bar = tqdm(total=1000, file=sys.stderr, bar_format="{desc} {bar} {percentage:3.0f}% [{elapsed}]",
               leave=False)

    def update_bar(fraction: float, message: str) -> None:
        bar.set_description_str(message, refresh=False)
        bar.n = int(round(fraction * 1000))
        bar.refresh()
        if fraction >= 1.0:
            bar.close()
    return update_bar


def parse_progress_line(line: str) -> Optional[tuple[float, str]]:
    """``(fraction, message)`` from a worker's progress line, or None for any other line."""
    parts = line.strip().split(" ", 2)
    if len(parts) < 2 or parts[0] != PROGRESS_LINE_PREFIX:
        return None
    try:
        fraction = float(parts[1])
    except ValueError:
        return None
    return fraction, parts[2] if len(parts) > 2 else ""
