"""Throughput of ``pet-pvc batch`` (scans per hour) with 1 and 2 local workers, and peak memory per worker.

Simulates the scanner-grid PET of ``--scans`` subjects (``simulation.generate_dataset``, seeds from
``split_seeds``; no targets), lays them out as a BIDS dataset, and runs the participant level with the
shipped model (or ``--model``) and ``--crop-fov`` once per worker count, each in its own process so that its workers' peak
resident memory (``RUSAGE_CHILDREN``: the largest worker) is its own. Prints one line per figure and
the load average before and after (the CPU may be shared).

    nice -n 10 python benchmarks/benchmark_batch.py                 # 8 scans, 1 and 2 workers, CPU
    python benchmarks/benchmark_batch.py --scans 4 --workers 1 2 4 --device gpu
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def simulated_bids_dataset(folder: Path, scans: int, seed: int) -> Path:
    """A BIDS dataset of ``scans`` simulated PET scans on their scanner grids (sub-01 ... sub-NN)."""
    from PETPartialVolumeCorrectionLib.simulation import SimulationSettings
    from PETPartialVolumeCorrectionLib.simulation.dataset import generate_dataset, split_seeds

    manifest = generate_dataset(folder / "simulated", split_seeds(scans, 0, 0, seed).train,
                                SimulationSettings(targets=False), volumes=("pet_scanner",))
    bids = folder / "bids"
    for number, subject in enumerate(manifest["subjects"], start=1):
        pet = bids / f"sub-{number:02d}" / "pet"
        pet.mkdir(parents=True)
        os.replace(folder / "simulated" / subject["folder"] / "pet_scanner.nii.gz", pet / f"sub-{number:02d}_pet.nii.gz")
        (pet / f"sub-{number:02d}_pet.json").write_text(json.dumps({"Units": "Bq/mL", "SimulationSeed": subject["seed"]}))
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "simulated", "BIDSVersion": "1.9.0"}))
    return bids


def run_one(args) -> None:
    """The participant level with ``args.workers`` workers; prints a JSON line of its figures."""
    from PETPartialVolumeCorrectionLib.batch.runner import run_participant_level

    # The simulated scanner grids reach past 256 mm with noise alone in the air: cut it (--crop-fov).
    options = {"mode": "gaussian", "overlap": None, "batch_size": 1, "output_grid": "standard",
               "crop_fov": True, "device": args.device}
    start = time.perf_counter()
    run = run_participant_level(args.bids, args.out, options=options, model=args.model, workers=args.workers,
                                threads_per_worker=max(1, (os.cpu_count() or 1) // args.workers), progress="none")
    wall = time.perf_counter() - start
    worker_peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    errors = sorted({r["error"] for r in run.records.values() if r.get("error")})
    print(json.dumps({"wall_s": wall, "counts": dict(run.counts), "worker_peak_gb": worker_peak_gb, "errors": errors,
                      "mean_scan_s": sum(r.get("total_s", 0) for r in run.records.values()) / max(1, len(run.records))}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0, help="base seed of the simulated subjects")
    parser.add_argument("--model", help="model folder (default: the shipped model)")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="cpu")
    parser.add_argument("--run-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bids", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        args.workers = args.workers[0]
        return run_one(args)

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="pvc-batch-benchmark-") as temporary:
        start = time.perf_counter()
        bids = simulated_bids_dataset(Path(temporary), args.scans, args.seed)
        print(f"simulated {args.scans} scans (seed {args.seed}) in {time.perf_counter() - start:.0f} s", flush=True)
        for workers in args.workers:
            command = [sys.executable, __file__, "--run-one", "--workers", str(workers), "--bids", str(bids),
                       "--out", os.path.join(temporary, f"out-{workers}"), "--device", args.device]
            command += ["--model", args.model] if args.model else []
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            figures = json.loads(output.strip().splitlines()[-1])
            print(f"{workers} worker(s): {args.scans} scans in {figures['wall_s']:.0f} s = "
                  f"{3600 * args.scans / figures['wall_s']:.1f} scans/hour; mean correction "
                  f"{figures['mean_scan_s']:.1f} s/scan; peak RSS per worker {figures['worker_peak_gb']:.2f} GB; "
                  f"{figures['counts']}" + (f"; errors: {figures['errors']}" if figures["errors"] else ""), flush=True)
            print(f"  load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
