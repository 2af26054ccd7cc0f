"""One scan's correction as a worker process runs it (a local pool process or a Dask worker).

:func:`correct_scan` reads the scan, corrects it with the worker's cached model, writes its images and
sidecars atomically (:func:`io.staged_outputs`), its log and its record, and returns the record. A
failure of the scan is recorded (status ``failed`` and its one-line reason), never raised, so the
other scans go on; a stop request (Ctrl-C in the parent) raises and leaves nothing of the scan.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from ..errors import PVCInputError
from ..io import read_image, staged_outputs, write_staged_image, write_text_atomic
from ..progress import ProcessingCancelled
from .derivatives import log_path, output_names, scan_columns, sidecars, write_record
from .scans import Scan

_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()
_STOP_EVENT = None  # set in pool workers: the parent's request to stop


@dataclass(frozen=True)
class ScanJob:
    """What a worker needs for one scan (picklable).

    Attributes:
        settings: record columns of the run's settings (:data:`derivatives.SETTINGS_COLUMNS`, batch_size).
        options: keyword arguments of :func:`pipeline.correct_volume` (mode, overlap, batch_size,
            output_grid, crop_fov, device).
    """

    scan: Scan
    output_root: str
    input_sha256: str
    model_dir: str
    settings: dict
    options: dict


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def worker_model(model_dir: str, device: str):
    """The model of this process, loaded on first use (once per worker). Returns (model, load seconds)."""
    from ..model import load_model

    with _MODELS_LOCK:
        key = (str(model_dir), device)
        if key in _MODELS:
            return _MODELS[key], 0.0
        start = time.perf_counter()
        _MODELS[key] = load_model(model_dir, device=device)
        return _MODELS[key], time.perf_counter() - start


def limit_threads(threads: Optional[int]) -> None:
    """Cap the threads of the backend and of ITK in this process (before the backend is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not threads:
        return
    for variable in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[variable] = str(threads)
    import SimpleITK as sitk
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _stop_on_sigterm(signal_number, frame) -> None:
    raise ProcessingCancelled("stopped by SIGTERM")  # unwinds the staging; the scan is recorded as lost


def init_pool_worker(stop_event, threads: Optional[int]) -> None:
    """Initializer of a local pool process: Ctrl-C is the parent's to handle (it sets ``stop_event``);
    SIGTERM (a batch system's) stops the running scan cleanly."""
    global _STOP_EVENT
    _STOP_EVENT = stop_event
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    limit_threads(threads)


def _stop_requested() -> bool:
    return _STOP_EVENT is not None and _STOP_EVENT.is_set()


def error_line(error: BaseException) -> str:
    """One line saying why a scan failed (the message alone for bad input)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    line = text if isinstance(error, PVCInputError) else f"{type(error).__name__}: {text}".rstrip(": ")
    return line[:300]


class ScanLog:
    """Timestamped lines of one attempt; also the progress callback of the correction."""

    def __init__(self):
        self.lines: list = []
        self._last_message = None

    def __call__(self, fraction: float, message: str) -> None:
        if message != self._last_message:
            self.write(f"{fraction:4.0%} {message}")
            self._last_message = message

    def write(self, text: str) -> None:
        self.lines.append(f"{utc_now()} {text}")


def _result_columns(result) -> dict:
    settings = result.settings
    scaling = settings["intensity_scaling"]
    columns = {key: settings[key] for key in ("model_name", "model_sha256", "mode", "overlap", "batch_size",
                                              "output_grid", "crop_fov", "device", "software")}
    columns.update(intensity_method=scaling["method"], crop_value=scaling["crop_value"],
                   crop_over_maximum=settings["input_statistics"]["crop_level"],
                   input_shape_zyx=" ".join(str(n) for n in settings["input_shape_zyx"]),
                   input_spacing_mm=" ".join(f"{s:g}" for s in settings["input_geometry"]["spacing"]))
    return columns


def _correct_into(job: ScanJob, record: dict, log: ScanLog) -> None:
    from ..pipeline import correct_volume

    scan, root = job.scan, Path(job.output_root)
    names = output_names(scan)
    start = time.perf_counter()
    volume, geometry = read_image(scan.path, frame=record["frame"])
    read_s = time.perf_counter() - start
    log.write(f"read {scan.path} {volume.shape} (z, y, x) in {read_s:.1f} s")
    model, load_s = worker_model(job.model_dir, job.options["device"])
    if load_s:
        log.write(f"loaded the model {job.model_dir} in {load_s:.1f} s")
    folder = root / scan.output_folder
    # Made here, not by staged_outputs: a failure then never removes a folder that other workers write in.
    folder.mkdir(parents=True, exist_ok=True)
    with staged_outputs(folder, [Path(n).name for n in names.values()], force=True,
                        protected=[scan.path]) as staging:
        result = correct_volume(volume, geometry, model=model, progress=log, cancel=_stop_requested, **job.options)
        for role in ("corrected", "sharpened"):
            write_staged_image(getattr(result, role), result.geometry, staging, Path(names[role]).name)
        record.update(_result_columns(result))
        record.update({**result.timings, "read_s": read_s, "load_model_s": load_s})
        record.update(status="corrected", corrected=names["corrected"], sharpened=names["sharpened"],
                      finished=utc_now())
        for role, sidecar in sidecars(record, scan).items():
            (staging / Path(names[role]).name).write_text(json.dumps(sidecar, indent=1) + "\n")


def correct_scan(job: ScanJob) -> dict:
    """Correct one scan into the derivatives folder; write its log and record; return the record."""
    if _stop_requested():  # queued before the stop: do not start it
        raise ProcessingCancelled("stopped before the scan started")
    scan = job.scan
    log = ScanLog()
    record = {**scan_columns(scan), "status": None, "error": None, "input_sha256": job.input_sha256,
              **job.settings, "log": log_path(".", scan).as_posix(),
              "worker": f"{socket.gethostname()}:{os.getpid()}", "started": utc_now()}
    log.write(f"start {scan.scan_id} on {record['worker']}")
    try:
        _correct_into(job, record, log)
        log.write(f"corrected in {record['total_s']:.1f} s: {record['corrected']}")
    except ProcessingCancelled:
        raise
    except Exception as error:  # any failure of one scan is recorded; the others go on
        with contextlib.suppress(OSError):
            os.removedirs(Path(job.output_root) / scan.output_folder)  # only while empty
        record.update(status="failed", error=error_line(error), finished=utc_now())
        log.write(f"failed: {record['error']}")
        if not isinstance(error, PVCInputError):
            log.lines.extend(traceback.format_exc().rstrip().splitlines())
    finish_attempt(job.output_root, scan, record, log)
    return record


def finish_attempt(output_root, scan: Scan, record: dict, log: ScanLog) -> None:
    """Append the attempt's lines to the scan's log and write its record (both atomically)."""
    path = log_path(output_root, scan)
    path.parent.mkdir(parents=True, exist_ok=True)
    earlier = path.read_text() if path.is_file() else ""
    write_text_atomic(path, earlier + "\n".join(log.lines) + "\n", force=True)
    write_record(output_root, scan, record)
