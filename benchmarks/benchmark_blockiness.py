"""Blockiness of the deep-learning correction: energy of (corrected - input) at the Nyquist frequency.

Simulates one held-out subject, corrects its scanner-grid PET with :func:`pipeline.correct_volume`
(the user's path) for each model folder given, and prints, per axis, the energy of
``corrected - input`` (both on the 1 mm 256^3 grid) at the Nyquist frequency (period 2 voxels)
relative to its total energy. A 2-voxel periodic pattern (the depth-to-space head) shows up there;
white noise would give 1/256 = 3.9e-3 per axis.

    python benchmarks/benchmark_blockiness.py                       # the shipped model
    python benchmarks/benchmark_blockiness.py --model A --model B   # several model folders
"""

from __future__ import annotations

import argparse
import os

import numpy as np


def nyquist_energy_fraction(difference: np.ndarray) -> list[float]:
    """Per axis ``[z, y, x]``: energy of ``difference`` at the Nyquist frequency of that axis (all
    frequencies of the other two) over its total energy (Parseval)."""
    difference = np.asarray(difference, dtype=np.float64)
    total = float(np.sum(difference ** 2))
    fractions = []
    for axis, side in enumerate(difference.shape):
        alternating = (-1.0) ** np.arange(side)  # the Nyquist Fourier coefficient along this axis
        shape = [1, 1, 1]
        shape[axis] = side
        coefficient = np.sum(difference * alternating.reshape(shape), axis=axis)
        fractions.append(float(np.sum(coefficient ** 2)) / side / total)
    return fractions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="model folder (repeatable; default: the shipped model)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the held-out split")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="cpu")
    args = parser.parse_args()

    from PETPartialVolumeCorrectionLib.grid import resample_to_standard_grid
    from PETPartialVolumeCorrectionLib.model import find_model_dir
    from PETPartialVolumeCorrectionLib.pipeline import correct_volume
    from PETPartialVolumeCorrectionLib.simulation import simulate_subject, split_seeds

    seed = split_seeds(0, 0, 1, args.seed).test[0]
    subject = simulate_subject(seed)
    standard, _ = resample_to_standard_grid(subject.pet_scanner, subject.scanner_geometry, crop_fov=True)
    print(f"subject seed {seed}; load average {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs")
    for model in args.model or [None]:
        folder = find_model_dir(model)
        result = correct_volume(subject.pet_scanner, subject.scanner_geometry, model=folder, device=args.device,
                                crop_fov=True)
        fractions = nyquist_energy_fraction(result.corrected - standard)
        print(f"{folder}: Nyquist energy fraction of corrected - input (z, y, x): "
              + ", ".join(f"{value:.3g}" for value in fractions))


if __name__ == "__main__":
    main()
