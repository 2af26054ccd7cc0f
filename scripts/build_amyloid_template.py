"""Build the amyloid PET templates that ``pet-pvc quantify`` registers PET scans to (MNI space, 2 mm).

Reproducible from the project's own simulator: subjects with the template anatomy left as it is in
MNI space (no rotation, scaling, translation, elastic deformation, asymmetry or atrophy), no noise,
a mid-range PSF, ``--subjects`` amyloid-negative and as many amyloid-positive seeds. Each PET
(``pet_1mm``) is divided by its subject's global scale (cerebellar grey matter = 1), the subjects
of one status are averaged, and the mean is resampled (linear) onto the MNI152 2 mm grid of the
GAAIN Centiloid VOIs. The intracranial mask of the anatomy comes with them (the registration
metric's mask). Output: one compressed .npz (float16 images, a few MB), by default the shipped
``Resources/Templates/amyloid_pet_template_2mm.npz``.

    python scripts/build_amyloid_template.py [--subjects 4] [--seed 0] [--psf 6.5]
        [--templates CACHE.npz] [-o Resources/Templates/amyloid_pet_template_2mm.npz]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from PETPartialVolumeCorrectionLib.io import to_sitk_image
from PETPartialVolumeCorrectionLib.quantification.template import (MNI_2MM_GEOMETRY, MNI_2MM_SHAPE,
                                                                   save_template)
from PETPartialVolumeCorrectionLib.simulation import SimulationSettings, load_templates, simulate_subject
from PETPartialVolumeCorrectionLib.simulation.templates import PAD_BELOW_MM

#: The MNI (RAS, mm) position of index (0, 0, 0) of the unpadded 1 mm ICBM 2009a grid nilearn ships
#: (``load_mni152_gm_template(resolution=1).affine``: identity axes, 1 mm, this origin).
ICBM_1MM_ORIGIN_RAS = np.array([-98.0, -134.0, -72.0])

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "Resources" / "Templates" / "amyloid_pet_template_2mm.npz"


def template_settings(psf_fwhm_mm: float, positive: bool, templates_path) -> SimulationSettings:
    """Simulator settings that keep the anatomy exactly in MNI space and add no noise."""
    return replace(SimulationSettings(), rotation_max_deg=0.0, scale_range=(1.0, 1.0), translation_max_mm=0.0,
                   elastic_amplitude_mm=(0.0, 0.0), atrophy_probability=0.0, asymmetry_probability=0.0,
                   psf_fwhm_mm=(psf_fwhm_mm, psf_fwhm_mm), psf_axial_ratio=(1.0, 1.0), noise=False,
                   targets=False, positive_fraction=1.0 if positive else 0.0, templates_path=templates_path)


def subject_to_mni(subject, brain_center_zyx):
    """The subject's geometry moved so that world = MNI (LPS mm): the simulator centres the template's
    brain centre on world (0, 0, 0), a pure shift when the anatomy is left untransformed."""
    centre_xyz = np.asarray(brain_center_zyx, dtype=float)[::-1] - np.array([0.0, 0.0, PAD_BELOW_MM])
    shift_ras = ICBM_1MM_ORIGIN_RAS + centre_xyz
    geometry = subject.geometry
    origin = np.asarray(geometry.origin) + np.diag([-1.0, -1.0, 1.0]) @ shift_ras
    return replace(geometry, origin=tuple(origin))


def mean_status_image(seeds, settings, brain_center) -> tuple[np.ndarray, np.ndarray, list]:
    """Mean of the subjects' PET / global scale on the MNI 2 mm grid, the intracranial mask there."""
    reference = to_sitk_image(np.zeros(MNI_2MM_SHAPE, np.float32), MNI_2MM_GEOMETRY)
    total = np.zeros(MNI_2MM_SHAPE, np.float64)
    mask = None
    records = []
    for seed in seeds:
        subject = simulate_subject(seed, settings)
        geometry = subject_to_mni(subject, brain_center)
        pet = to_sitk_image(subject.pet_1mm / np.float32(subject.record["uptake"]["global_scale"]), geometry)
        total += sitk.GetArrayFromImage(sitk.Resample(pet, reference, sitk.Transform(), sitk.sitkLinear, 0.0))
        if mask is None:
            brain = to_sitk_image(subject.brain_mask.astype(np.float32), geometry)
            mask = sitk.GetArrayFromImage(sitk.Resample(brain, reference, sitk.Transform(), sitk.sitkLinear)) >= 0.5
        records.append({"seed": seed, "uptake": subject.record["uptake"], "scanner": subject.record["scanner"]})
        print(f"  seed {seed}: {subject.status}, amyloid load {subject.record['uptake']['amyloid_load']:.2f}", flush=True)
    return (total / len(seeds)).astype(np.float32), mask, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=4, help="subjects per amyloid status")
    parser.add_argument("--seed", type=int, default=0, help="first seed (negative: seed.., positive: seed+subjects..)")
    parser.add_argument("--psf", type=float, default=6.5, help="PSF FWHM of the simulated scans, mm")
    parser.add_argument("--templates", help="simulator template cache .npz (pet-pvc simulate --save-templates)")
    parser.add_argument("-o", "--output", default=str(DEFAULT_OUTPUT), help="template file to write")
    args = parser.parse_args()

    anatomy = load_templates(args.templates)
    images, records = {}, {}
    mask = None
    for index, status in enumerate(("negative", "positive")):
        seeds = list(range(args.seed + index * args.subjects, args.seed + (index + 1) * args.subjects))
        print(f"{status}: seeds {seeds}", flush=True)
        images[status], status_mask, records[status] = mean_status_image(
            seeds, template_settings(args.psf, status == "positive", args.templates), anatomy.brain_center)
        mask = status_mask if mask is None else mask
    provenance = {"script": "scripts/build_amyloid_template.py", "arguments": vars(args) | {"output": None},
                  "simulator_templates_sha256": anatomy.sha256, "subjects": records,
                  "units": "relative to the cerebellar grey matter's true activity (= 1)"}
    save_template(args.output, images["negative"], images["positive"], mask, provenance)
    print(f"wrote {args.output} ({Path(args.output).stat().st_size / 1e6:.1f} MB)")
    print(json.dumps({s: float(np.mean(images[s][mask])) for s in images}))


if __name__ == "__main__":
    main()
