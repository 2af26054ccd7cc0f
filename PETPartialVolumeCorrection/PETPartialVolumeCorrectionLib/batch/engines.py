"""Where the scans run: a local pool of worker processes, or an existing Dask distributed cluster.

Both engines take :class:`worker.ScanJob` s and yield ``(job, record)`` as scans finish, in any order.
A worker that dies (killed for memory, say) fails its scans with a record written here; a rerun
retries them.
"""

from __future__ import annotations

import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Iterable, Iterator, Optional

from ..errors import PVCInputError
from .derivatives import scan_columns
from .worker import ScanJob, ScanLog, correct_scan, error_line, finish_attempt, init_pool_worker, utc_now


def engine_failure(job: ScanJob, error: BaseException) -> dict:
    """Record (and write) a scan whose worker could not return a record."""
    record = {**scan_columns(job.scan), "status": "failed", "error": f"worker lost: {error_line(error)}",
              "input_sha256": job.input_sha256, **job.settings, "finished": utc_now()}
    log = ScanLog()
    log.write(f"failed: {record['error']}")
    finish_attempt(job.output_root, job.scan, record, log)
    return record


def run_local(jobs: Iterable[ScanJob], workers: int, threads: Optional[int] = None) -> Iterator[tuple]:
    """Run ``jobs`` in ``workers`` fresh (spawned) processes, each loading the model once.

    Closing the iterator early (Ctrl-C in the caller) asks the running scans to stop at their next
    step; they leave nothing behind, and the pending scans are not started.
    """
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold a backend's threads
    stop = context.Event()
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=init_pool_worker,
                                   initargs=(stop, threads))
    try:
        futures = {executor.submit(correct_scan, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                yield job, future.result()
            except Exception as error:  # the worker process died (BrokenProcessPool) or could not start
                yield job, engine_failure(job, error)
    finally:
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)


def run_dask(jobs: Iterable[ScanJob], scheduler: str) -> Iterator[tuple]:
    """Run ``jobs`` on the Dask cluster whose scheduler is at ``scheduler`` (``tcp://HOST:PORT``).

    Each Dask worker process loads the model on its first scan and keeps it. Inputs, the model folder
    and the output folder must be reachable at the same paths on every worker (a shared file system).
    Closing the iterator early cancels the scans not yet started; running ones finish (atomically).
    """
    try:
        from distributed import Client, as_completed as dask_as_completed
    except ImportError:
        raise PVCInputError("--dask-scheduler needs dask.distributed: pip install "
                            "'pet-partial-volume-correction[batch]'") from None
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError, ValueError) as error:
        raise PVCInputError(f"cannot reach the Dask scheduler {scheduler} ({error_line(error)})") from None
    futures = {}
    try:
        for job in jobs:
            futures[client.submit(correct_scan, job, pure=False, key=f"pet-pvc-{job.scan.scan_id}-{uuid.uuid4().hex[:8]}")] = job
        for future in dask_as_completed(futures):
            job = futures[future]
            try:
                yield job, future.result()
            except Exception as error:  # KilledWorker, a lost connection
                yield job, engine_failure(job, error)
    finally:
        client.cancel(list(futures))
        client.close()
