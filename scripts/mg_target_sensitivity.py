"""How far the MG training target moves when the PSF or the tissue maps are misjudged.

The network sees no MRI and is not told the scanner's PSF (4-9 mm FWHM in training), so it must
infer both from the PET. This script measures, on held-out simulated subjects, the SSIM and RMSE
and the median absolute error of the cortical parcels' SUVR (as ``pet-pvc evaluate``) against the
MG target of MG recomputed (a) with the right tissue maps but a PSF off by
``--offsets`` mm and (b) with the right PSF but the GM/WM/CSF maps moved by ``--shifts`` mm along
x, next to the uncorrected input's: what such errors cost, for reading the evaluation's numbers
(docs/results.md).

    python scripts/mg_target_sensitivity.py --subjects 3 --offsets -1 1 --shifts 1 2
"""

from __future__ import annotations

import argparse

import numpy as np

from PETPartialVolumeCorrectionLib.simulation import SimulationSettings, simulate_subject, split_seeds
from PETPartialVolumeCorrectionLib.simulation.subject import mg_target
from PETPartialVolumeCorrectionLib.training.evaluate import score_images


def scores_against_target(subject, offsets_mm, shifts_mm) -> dict:
    """SSIM, RMSE/RMSE(input) and median |parcel SUVR error| against ``subject.mg_target`` for the
    input, each PSF offset (mm) and each shift of the tissue maps (whole mm on the 1 mm grid, along x)."""
    in_view = subject.field_of_view
    tissue = [map_ * in_view for map_ in (subject.gm, subject.wm, subject.csf)]
    fwhm = np.asarray(subject.psf_fwhm_mm, dtype=float)
    images = {"input": subject.pet_1mm}
    for offset in offsets_mm:
        images[f"PSF {offset:+g} mm"] = mg_target(subject.pet_1mm, *tissue, tuple(fwhm + offset), subject.spacing_mm)
    for shift in shifts_mm:
        moved = [np.roll(map_, int(round(shift / subject.spacing_mm[0])), axis=2) * in_view for map_ in tissue]
        images[f"maps {shift:+g} mm"] = mg_target(subject.pet_1mm, *moved, tuple(fwhm), subject.spacing_mm)
    scores = score_images(images, {"mg_target": subject.mg_target}, subject.labels)["mg_target"]
    input_rmse = scores["input"]["rmse"]
    return {name: (score["ssim"], score["rmse"] / input_rmse, float(np.median(score["suvr_abs_error"])))
            for name, score in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=3, help="held-out test subjects (the evaluation's first)")
    parser.add_argument("--offsets", type=float, nargs="+", default=[-1.0, 1.0], help="PSF FWHM offsets, mm")
    parser.add_argument("--shifts", type=float, nargs="+", default=[1.0, 2.0], help="tissue-map shifts along x, mm")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the splits (as pet-pvc evaluate)")
    parser.add_argument("--templates", help="template cache .npz (pet-pvc simulate --save-templates)")
    args = parser.parse_args()

    _, _, seeds = split_seeds(0, 0, args.subjects, args.seed)
    table: dict = {}
    for seed in seeds:
        subject = simulate_subject(seed, SimulationSettings(templates_path=args.templates))
        fwhm = ", ".join(f"{value:.1f}" for value in subject.psf_fwhm_mm)
        for name, values in scores_against_target(subject, args.offsets, args.shifts).items():
            table.setdefault(name, []).append(values)
            print(f"subject {seed} (PSF {fwhm} mm) {name:>11}: SSIM {values[0]:.4f}, RMSE / input's "
                  f"{values[1]:.3f}, median SUVR error {100 * values[2]:.2f} %")
    print("mean over subjects:")
    for name, values in table.items():
        ssim_mean, ratio_mean, suvr_mean = np.mean(values, axis=0)
        print(f"  {name:>11}: SSIM {ssim_mean:.4f}, RMSE / input's {ratio_mean:.3f}, "
              f"median SUVR error {100 * suvr_mean:.2f} %")


if __name__ == "__main__":
    main()
