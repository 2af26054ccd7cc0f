"""The two BIDS-App levels: ``participant`` (correct every scan not yet done) and ``group`` (the table).

Exit codes: 0 when every scan is corrected, up to date or skipped (a 4D file without a frame chosen);
:data:`EXIT_SCAN_FAILED` when any scan failed (the others are done); 2 for bad input before any scan
ran (the command line's rule); 130 after Ctrl-C.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import PVCInputError
from .derivatives import (existing_record, is_up_to_date, output_names, read_json, record_path, scan_columns,
                          write_dataset_description, write_group_table, write_record)
from .scans import Scan, find_scans, input_sha256
from .worker import ScanJob, ScanLog, finish_attempt, utc_now

EXIT_SCAN_FAILED = 3


@dataclass
class ParticipantRun:
    """What a participant-level run did: records by scan id and the scans found up to date."""

    records: dict = field(default_factory=dict)
    up_to_date: list = field(default_factory=list)

    @property
    def counts(self) -> Counter:
        return Counter(record["status"] for record in self.records.values()) + Counter(
            {"up to date": len(self.up_to_date)})

    @property
    def exit_code(self) -> int:
        return EXIT_SCAN_FAILED if self.counts["failed"] else 0


def verified_model_card(model_dir: Path) -> dict:
    """The card of ``model_dir`` once its weights match the card's checksum (checked before any scan)."""
    from ..model import MODEL_CARD_NAME, WEIGHTS_FILE_NAME, file_sha256, read_model_card

    card = read_model_card(model_dir)
    weights = model_dir / WEIGHTS_FILE_NAME
    if not isinstance(card.get("weights_sha256"), str) or not weights.is_file() \
            or file_sha256(weights) != card["weights_sha256"].lower():
        raise PVCInputError(f"model folder {model_dir}: weights missing or not matching the checksum in "
                            f"{MODEL_CARD_NAME}; the folder is damaged")
    return card


def scan_settings(scan: Scan, model_sha256: str, options: dict, frame: Optional[int]) -> dict:
    """The record's settings columns for ``scan`` (``frame`` applies to 4D files only)."""
    return {"model_sha256": model_sha256, "mode": options["mode"], "overlap": options["overlap"],
            "output_grid": options["output_grid"], "crop_fov": options["crop_fov"],
            "frame": frame if (scan.frames or 1) > 1 else None, "batch_size": options["batch_size"]}


def _record_without_running(output_root, scan: Scan, settings: dict, sha256, status: str, reason: str) -> dict:
    record = {**scan_columns(scan), "status": status, "error": reason, "input_sha256": sha256, **settings,
              "started": utc_now(), "finished": utc_now()}
    log = ScanLog()
    log.write(f"{status}: {reason}")
    finish_attempt(output_root, scan, record, log)
    return record


def plan_scan(scan: Scan, output_root: Path, settings: dict, force: bool):
    """``("job", sha256)`` to run, ``("up to date", record)``, or ``("record", record)`` written without running."""
    if (scan.frames or 1) > 1 and settings["frame"] is None:
        return "record", _record_without_running(
            output_root, scan, settings, None, "skipped",
            f"4D file with {scan.frames} frames; choose one with --frame N (0-based)")
    try:
        sha256 = input_sha256(scan.path)
    except OSError as error:
        return "record", _record_without_running(output_root, scan, settings, None, "failed",
                                                 f"{scan.path}: cannot be read ({error.strerror})")
    existing = existing_record(output_root, scan)
    if is_up_to_date(existing, sha256, settings):
        if read_json(record_path(output_root, scan)) != existing:
            write_record(output_root, scan, existing)  # an interruption came between outputs and record
        return "up to date", existing
    if not force and any((output_root / name).exists() for name in output_names(scan).values()):
        return "record", _record_without_running(
            output_root, scan, settings, sha256, "failed",
            "outputs made from another input or with other settings exist; use --force to replace them")
    return "job", sha256


def _progress_bar(style: str, total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="scan", file=sys.stderr, disable=style == "none" or total == 0,
                desc="correcting", dynamic_ncols=True)


def run_participant_level(source, output_root, *, options: dict, model=None, frame: Optional[int] = None,
                          participant_labels=None, session_labels=None, workers: int = 1,
                          threads_per_worker: Optional[int] = None, dask_scheduler: Optional[str] = None,
                          force: bool = False, progress: str = "bar") -> ParticipantRun:
    """Correct every scan of ``source`` not yet done into the derivatives folder ``output_root``.

    ``options`` are :func:`pipeline.correct_volume`'s mode, overlap, batch_size, output_grid, crop_fov
    and device. Scans run on a local pool of ``workers`` processes, or on the Dask cluster at
    ``dask_scheduler``.
    """
    from ..model import find_model_dir
    from .engines import run_dask, run_local

    if workers < 1 or (threads_per_worker is not None and threads_per_worker < 1):
        raise PVCInputError(f"--workers and --threads-per-worker must be at least 1, not "
                            f"{workers} and {threads_per_worker}")
    if frame is not None and frame < 0:
        raise PVCInputError(f"--frame counts from 0; {frame} is not a frame")
    scans = find_scans(source, participant_labels, session_labels)
    model_dir = find_model_dir(model).resolve()
    card = verified_model_card(model_dir)
    output_root = Path(output_root).resolve()
    write_dataset_description(output_root, source, card)
    run, jobs = ParticipantRun(), []
    for scan in scans:
        settings = scan_settings(scan, card["weights_sha256"], options, frame)
        kind, value = plan_scan(scan, output_root, settings, force)
        if kind == "job":
            jobs.append(ScanJob(scan, str(output_root), value, str(model_dir), settings, options))
        elif kind == "up to date":
            run.up_to_date.append(scan.scan_id)
        else:
            run.records[scan.scan_id] = value
            print(f"{scan.scan_id}: {value['status']}: {value['error']}", file=sys.stderr)
    engine = run_dask(jobs, dask_scheduler) if dask_scheduler else run_local(jobs, workers, threads_per_worker)
    with _progress_bar(progress, len(jobs)) as bar, contextlib.closing(engine) as finished:
        for job, record in (finished if jobs else ()):
            run.records[job.scan.scan_id] = record
            if record["status"] == "failed":
                bar.write(f"{job.scan.scan_id}: failed: {record['error']}", file=sys.stderr)
            bar.update(1)
            bar.set_postfix(failed=sum(r["status"] == "failed" for r in run.records.values()), refresh=False)
    return run


def group_records(source, output_root, participant_labels=None, session_labels=None) -> list:
    """One record per scan of ``source``: its last attempt's, or status ``not-run``."""
    return [read_json(record_path(output_root, scan)) or {**scan_columns(scan), "status": "not-run"}
            for scan in find_scans(source, participant_labels, session_labels)]


def run_group_level(source, output_root, participant_labels=None, session_labels=None) -> tuple:
    """Write the group table of ``output_root``; returns (its path, the records)."""
    if not Path(output_root).is_dir():
        raise PVCInputError(f"{output_root}: no such derivatives folder; run the participant level first")
    records = group_records(source, output_root, participant_labels, session_labels)
    return write_group_table(output_root, records), records

