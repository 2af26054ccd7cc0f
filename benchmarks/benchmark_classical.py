"""Speed of the classical PVC engine on a 256^3, 1 mm brain-like phantom with ~100 regions, 8 mm PSF.

Prints one line per figure: ``<what>: <seconds> s (goal <= <seconds> s)``, plus the CPU count and
load average (the machine may be shared). Each method is timed from its public call with a label
image (so its own region blurs are included), then the shared-blur variants are shown.

    python benchmarks/benchmark_classical.py [--size 256] [--fwhm 8] [--threads N] [--mg-only --repeat 3]

``--mg-only`` times only Mueller-Gaertner's public call from tissue maps (WM value from the eroded
WM, PETPVC's default, and from the GTM), the best of ``--repeat`` runs each.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from scipy import ndimage

from PETPartialVolumeCorrectionLib.classical import (blur_regions, blur_tissue_maps, gtm, iterative_yang, labbe,
                                                      mueller_gaertner, multi_target_correction, psf, rbv,
                                                      richardson_lucy, van_cittert)

GOALS_S = {"GTM + MG": 20.0, "RBV": 25.0, "iY (10 iterations)": 60.0, "VC (10 iterations)": 15.0,
           "RL (10 iterations)": 15.0}


def fibonacci_directions(count: int) -> np.ndarray:
    """``count`` roughly even unit vectors (x, y, z)."""
    index = np.arange(count) + 0.5
    polar = np.arccos(1.0 - 2.0 * index / count)
    azimuth = np.pi * (1.0 + 5.0 ** 0.5) * index
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1)


def brain_phantom(size: int, seed: int = 0):
    """Label image (0 outside the head's brain, 101 regions), activity and GM/WM/CSF maps, 1 mm voxels.

    Regions: 68 cortical ribbon parcels (3-4 mm thick), 16 WM parcels, 14 deep nuclei, 2 ventricles,
    an outer CSF shell. Activity: GM 1.5-3, WM 1.0-1.4, nuclei 1-3, CSF 0.1, outside 0.2 (scalp).
    """
    rng = np.random.default_rng(seed)
    centre = (size - 1) / 2.0
    z, y, x = np.meshgrid(*(np.arange(size, dtype=np.float32) - centre,) * 3, indexing="ij")
    scale = size / 256.0
    rho = np.sqrt((x / (70 * scale)) ** 2 + (y / (85 * scale)) ** 2 + (z / (60 * scale)) ** 2)
    directions = np.stack([x, y, z], axis=-1) / np.maximum(rho, 1e-6)[..., None]
    labels = np.zeros((size,) * 3, dtype=np.int32)
    cortex_seeds, wm_seeds = fibonacci_directions(68), fibonacci_directions(16)
    brain = rho <= 1.0
    cortex = brain & (rho > 0.95)
    labels[cortex] = 1 + np.argmax(directions[cortex] @ cortex_seeds.T, axis=1)
    white = rho <= 0.95
    labels[white] = 101 + np.argmax(directions[white] @ wm_seeds.T, axis=1)
    labels[(rho > 1.0) & (rho <= 1.04)] = 200
    for n in range(14):
        side = 1 if n % 2 else -1
        offset = np.array([side * (8 + 3 * (n // 2)), -20 + 6 * (n // 2), -10 + 3 * (n % 5)]) * scale
        radii = (4 + n % 4 * 2) * scale
        inside = ((x - offset[0]) ** 2 + (y - offset[1]) ** 2 + (z - offset[2]) ** 2) <= radii ** 2
        labels[inside] = 301 + n
    for n, side in enumerate((-1, 1)):
        inside = ((x - side * 7 * scale) / (4 * scale)) ** 2 + (y / (22 * scale)) ** 2 + ((z - 8 * scale) / (7 * scale)) ** 2 <= 1
        labels[inside] = 401 + n
    values = {0: 0.2, 200: 0.1, 401: 0.1, 402: 0.1}
    values.update({label: rng.uniform(1.5, 3.0) for label in range(1, 69)})
    values.update({label: rng.uniform(1.0, 1.4) for label in range(101, 117)})
    values.update({label: rng.uniform(1.0, 3.0) for label in range(301, 315)})
    table = np.zeros(labels.max() + 1, dtype=np.float32)
    for label, value in values.items():
        table[label] = value
    activity = table[labels]
    tissue = {"gm": (labels >= 1) & (labels <= 68) | (labels >= 301) & (labels <= 314),
              "wm": (labels >= 101) & (labels <= 116), "csf": (labels == 200) | (labels >= 401)}
    maps = {name: np.clip(ndimage.gaussian_filter(mask.astype(np.float32), 0.7, mode="nearest"), 0, 1)
            for name, mask in tissue.items()}
    return labels, activity, maps


def timed(results: dict, name: str, function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    results[name] = time.perf_counter() - start
    goal = GOALS_S.get(name)
    print(f"{name}: {results[name]:.1f} s" + (f" (goal <= {goal:g} s)" if goal else ""), flush=True)
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="grid size per axis (1 mm voxels)")
    parser.add_argument("--fwhm", type=float, default=8.0, help="PSF FWHM, mm")
    parser.add_argument("--threads", type=int, help="blur threads (default: all available cores)")
    parser.add_argument("--mg-only", action="store_true", help="time only MG from tissue maps")
    parser.add_argument("--repeat", type=int, default=1, help="with --mg-only: runs per figure (best shown)")
    args = parser.parse_args(argv)
    if args.threads:
        psf.BLUR_THREADS = args.threads
    warnings.simplefilter("ignore")
    print(f"cores available: {psf.BLUR_THREADS}; load average before: {os.getloadavg()[0]:.2f}")
    labels, activity, maps = brain_phantom(args.size)
    rng = np.random.default_rng(1)
    pet = psf.gaussian_blur(activity, args.fwhm, (1.0, 1.0, 1.0))
    pet += rng.normal(0, 0.03, pet.shape).astype(np.float32) * pet
    count = len(np.unique(labels)) - 1
    print(f"phantom: {args.size}^3 at 1 mm, {count} regions + background, PSF {args.fwhm:g} mm")
    spacing = (1.0, 1.0, 1.0)
    results: dict[str, float] = {}
    psf_args = {"fwhm_mm": args.fwhm, "spacing_mm": spacing}
    if args.mg_only:
        for wm_value in ("eroded", "gtm"):
            name = f"MG from tissue maps (WM value {wm_value}, CSF value gtm), best of {args.repeat}"
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                mueller_gaertner(pet, gm=maps["gm"], wm=maps["wm"], csf=maps["csf"], wm_value=wm_value,
                                 csf_value="gtm", **psf_args)
                best = min(best, time.perf_counter() - start)
            print(f"{name}: {best:.1f} s", flush=True)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return 0

    def gtm_and_mg():
        gtm(pet, labels=labels, **psf_args)
        mueller_gaertner(pet, gm=maps["gm"], wm=maps["wm"], csf=maps["csf"], wm_value="gtm", csf_value="gtm",
                         **psf_args)

    timed(results, "GTM + MG", gtm_and_mg)
    timed(results, "RBV", rbv, pet, labels=labels, **psf_args)
    timed(results, "iY (10 iterations)", iterative_yang, pet, labels=labels, iterations=10, **psf_args)
    timed(results, "VC (10 iterations)", van_cittert, pet, tolerance=0.0, **psf_args)
    timed(results, "RL (10 iterations)", richardson_lucy, pet, **psf_args)
    shared = timed(results, "blur regions (shared)", blur_regions, labels=labels, **psf_args)
    timed(results, "GTM with shared blurs", gtm, pet, blurred_regions=shared)
    timed(results, "Labbe with shared blurs", labbe, pet, blurred_regions=shared)
    timed(results, "RBV with shared blurs", rbv, pet, blurred_regions=shared)
    timed(results, "iY (10 iterations) with shared blurs", iterative_yang, pet, blurred_regions=shared)
    timed(results, "MTC with shared blurs", multi_target_correction, pet, blurred_regions=shared)
    tissues = timed(results, "blur tissue maps (shared)", blur_tissue_maps, gm=maps["gm"], wm=maps["wm"],
                    csf=maps["csf"], **psf_args)
    timed(results, "MG (GTM values) with shared blurs", mueller_gaertner, pet, blurred_tissues=tissues,
          wm_value="gtm", csf_value="gtm")
    timed(results, "RBV + VC (10 iterations) with shared blurs", rbv, pet, blurred_regions=shared,
          deconvolution="vc", tolerance=0.0)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    missed = [name for name, goal in GOALS_S.items() if results[name] > goal]
    print("goals met" if not missed else f"goals missed: {', '.join(missed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
