"""Invariance checks of the deep-learning correction that need no ground truth.

Each check perturbs a subject's scanner-grid PET, corrects both versions through the user's path
(:func:`..pipeline.correct_volume`) and compares them on the brain voxels of the 1 mm standard grid:

(a) scale: ``correct(c x) = c correct(x)``, largest brain difference / brain mean <= 1e-3;
(b) a hot spot (a 10 mm radius ball at 20x the brain mean, 3 cm below the cerebellum, clamped into the
    field of view) changes brain voxels by a median <= 0.5 % and the cortical SUVR by <= 0.5 %;
(c) the neck out (every slice from 1 cm below the cerebellum down set to 0): median <= 1 %;
(d) a left-right flip and a 3 mm shift (1, 2, 2 voxels of the standard grid) commute with the
    correction: median <= 1 % each;
(e) deep white matter (> 8 mm from grey matter) changes its mean by <= 3 %;
(f) amyloid-positive subjects: the cortical SUVR is raised whenever MG raises it.

Median relative change over brain voxels: ``median(|a - b| / |b|)``. SUVRs use cerebellar grey
matter as reference. Failing properties are reported with their figures, like passing ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..geometry import Geometry
from ..grid import resample_to_native_grid, resample_to_standard_grid

#: (name, what it measures, limit): the figure passes when it is at most the limit.
PROPERTIES = (
    ("a_scale", "scale equivariance: max brain |correct(c x)/c - correct(x)| / brain mean", 1e-3),
    ("b_hot_spot_brain", "hot spot 20x brain mean 3 cm below the cerebellum: median brain change", 0.005),
    ("b_hot_spot_suvr", "hot spot: cortical SUVR change", 0.005),
    ("c_neck", "neck out of the field of view: median brain change", 0.01),
    ("d_flip", "left-right flip commutes: median brain difference", 0.01),
    ("d_shift", "3 mm shift commutes: median brain difference", 0.01),
    ("e_deep_wm", "deep white matter (> 8 mm from GM) mean change", 0.03),
    ("f_suvr_raised", "amyloid-positive subjects where MG raises the cortical SUVR and the network does not", 0),
)
SCALE_FACTOR = 1000.0
HOT_SPOT_FACTOR, HOT_SPOT_RADIUS_MM, HOT_SPOT_BELOW_MM, HOT_SPOT_SIGMA_MM = 20.0, 10.0, 30.0, 3.0
NECK_CUT_BELOW_MM = 10.0
SHIFT_VOXELS = (1, 2, 2)  # [z, y, x] on the 1 mm standard grid: 3 mm
DEEP_WM_DISTANCE_MM = 8.0

Correct = Callable[[np.ndarray, Geometry], np.ndarray]  # volume on its grid -> corrected on the standard grid


@dataclass
class RobustnessCase:
    """One subject: ``pet`` ``[z, y, x]`` on ``geometry`` (the scanner grid), and its anatomy on
    ``anatomy_geometry``: ``labels`` (FreeSurfer ids, :mod:`..simulation.regions`), ``gm``, ``wm``
    (probabilities). ``mg_raises_suvr``: whether the MG target raises the cortical SUVR over the input
    (None: not amyloid-positive, property (f) does not apply)."""

    name: str
    pet: np.ndarray
    geometry: Geometry
    labels: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    anatomy_geometry: Geometry
    mg_raises_suvr: Optional[bool] = None


def _median_relative_change(changed: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    reference, changed = reference[mask].astype(np.float64), changed[mask].astype(np.float64)
    return float(np.median(np.abs(changed - reference) / np.maximum(np.abs(reference), 1e-12)))


def _world_coordinates(shape_zyx, geometry: Geometry, indices_zyx: np.ndarray) -> np.ndarray:
    """World LPS mm of voxel indices ``(n, 3)`` in ``[z, y, x]`` order."""
    matrix = geometry.index_to_world()
    return indices_zyx[:, ::-1] @ matrix[:3, :3].T + matrix[:3, 3]


def _cerebellum_bottom(case: RobustnessCase) -> np.ndarray:
    """World position (LPS mm) below the cerebellum's centre at its lowest voxel."""
    from ..simulation.regions import reference_region_ids

    cerebellum = np.argwhere(np.isin(case.labels, reference_region_ids()))
    world = _world_coordinates(case.labels.shape, case.anatomy_geometry, cerebellum.astype(float))
    return np.array([*world[:, :2].mean(axis=0), world[:, 2].min()])


def _scanner_world(case: RobustnessCase) -> np.ndarray:
    """World coordinates of every scanner voxel, ``[z, y, x, 3]``."""
    indices = np.indices(case.pet.shape).reshape(3, -1).T.astype(float)
    return _world_coordinates(case.pet.shape, case.geometry, indices).reshape(*case.pet.shape, 3)


def with_hot_spot(case: RobustnessCase, brain_mean: float) -> tuple[np.ndarray, float]:
    """The PET plus the hot spot, and how far (mm) its centre lies below the cerebellum."""
    from scipy import ndimage

    world = _scanner_world(case)
    bottom = _cerebellum_bottom(case)
    lowest_z = world[..., 2].min() + HOT_SPOT_RADIUS_MM
    centre = np.array([bottom[0], bottom[1], max(bottom[2] - HOT_SPOT_BELOW_MM, lowest_z)])
    ball = np.sum((world - centre) ** 2, axis=-1) <= HOT_SPOT_RADIUS_MM ** 2
    sigma = [HOT_SPOT_SIGMA_MM / s for s in case.geometry.spacing_zyx]
    blob = ndimage.gaussian_filter(ball.astype(np.float32), sigma) * np.float32(HOT_SPOT_FACTOR * brain_mean)
    return case.pet + blob, float(bottom[2] - centre[2])


def without_neck(case: RobustnessCase) -> np.ndarray:
    """The PET with every voxel from :data:`NECK_CUT_BELOW_MM` below the cerebellum down set to 0."""
    world_z = _scanner_world(case)[..., 2]
    return np.where(world_z < _cerebellum_bottom(case)[2] - NECK_CUT_BELOW_MM, np.float32(0.0), case.pet)


def _axis_aligned(geometry: Geometry) -> bool:
    return bool(np.allclose(np.abs(geometry.direction), np.eye(3), atol=1e-6))


def subject_properties(correct: Correct, case: RobustnessCase) -> dict:
    """The figures of :data:`PROPERTIES` (a)-(e) for one subject, plus the cortical SUVRs for (f)."""
    from scipy import ndimage

    from ..simulation.regions import is_brain, regional_suvr

    standard, standard_geometry = resample_to_standard_grid(case.pet, case.geometry, crop_fov=True)

    def on_standard(anatomy, interpolation="nearest"):
        return resample_to_native_grid(anatomy, case.anatomy_geometry, standard.shape, standard_geometry,
                                       interpolation)

    labels = np.rint(on_standard(case.labels.astype(np.float32))).astype(np.int32)
    brain = is_brain(labels) & (standard > 0)
    distance = ndimage.distance_transform_edt(case.gm <= 0.5, sampling=case.anatomy_geometry.spacing_zyx)
    deep_wm = on_standard(((case.wm > 0.5) & (distance > DEEP_WM_DISTANCE_MM)).astype(np.float32)) > 0.5
    base = correct(case.pet, case.geometry)
    figures = {}

    scaled = correct(case.pet * np.float32(SCALE_FACTOR), case.geometry) / np.float32(SCALE_FACTOR)
    figures["a_scale"] = float(np.max(np.abs(scaled - base)[brain]) / np.mean(base[brain]))

    hot_pet, below_mm = with_hot_spot(case, float(np.mean(standard[brain])))
    hot = correct(hot_pet, case.geometry)
    figures["b_hot_spot_brain"] = _median_relative_change(hot, base, brain)
    suvr_base, suvr_hot = (regional_suvr(image, labels)["cortex"] for image in (base, hot))
    figures["b_hot_spot_suvr"] = abs(suvr_hot / suvr_base - 1.0)
    figures["hot_spot_below_cerebellum_mm"] = below_mm

    figures["c_neck"] = _median_relative_change(correct(without_neck(case), case.geometry), base, brain)

    if _axis_aligned(case.geometry) and _axis_aligned(standard_geometry):
        flipped = correct(case.pet[:, :, ::-1].copy(), case.geometry)[:, :, ::-1]
        figures["d_flip"] = _median_relative_change(flipped, base, brain)
    shifted = correct(np.roll(standard, SHIFT_VOXELS, axis=(0, 1, 2)), standard_geometry)
    figures["d_shift"] = _median_relative_change(np.roll(shifted, [-s for s in SHIFT_VOXELS], axis=(0, 1, 2)),
                                                 base, brain)

    figures["e_deep_wm"] = abs(float(np.mean(base[deep_wm]) / np.mean(standard[deep_wm])) - 1.0) \
        if deep_wm.any() else None
    figures["suvr_input"] = regional_suvr(standard, labels)["cortex"]
    figures["suvr_network"] = suvr_base
    figures["mg_raises_suvr"] = case.mg_raises_suvr
    return figures


def summarise(per_subject: dict) -> list[dict]:
    """One record per property over all subjects: the worst figure, its limit and whether it holds."""
    lines = []
    for name, description, limit in PROPERTIES:
        if name == "f_suvr_raised":
            applicable = [f for f in per_subject.values() if f["mg_raises_suvr"]]
            figure = sum(f["suvr_network"] <= f["suvr_input"] for f in applicable)
            lines.append({"property": name, "description": description, "figure": figure, "limit": limit,
                          "subjects": len(applicable), "holds": figure <= limit if applicable else None})
            continue
        values = [f[name] for f in per_subject.values() if f.get(name) is not None]
        figure = max(values) if values else None
        lines.append({"property": name, "description": description, "figure": figure, "limit": limit,
                      "subjects": len(values), "holds": None if figure is None else figure <= limit})
    return lines


def format_line(line: dict) -> str:
    """``PASS|FAIL|N/A <property>: <figure> (limit <limit>, n subjects) - <description>``."""
    verdict = {True: "PASS", False: "FAIL", None: "N/A "}[line["holds"]]
    figure = "-" if line["figure"] is None else f"{line['figure']:.3g}"
    return (f"{verdict} {line['property']}: {figure} (limit {line['limit']:g}, {line['subjects']} subjects) "
            f"- {line['description']}")


def simulated_case(subject) -> RobustnessCase:
    """The :class:`RobustnessCase` of a simulated subject (its scanner-grid PET and anatomy); whether MG
    raises the cortical SUVR is measured on the simulator's grid (MG target vs resliced PET)."""
    from ..simulation.regions import regional_suvr

    mg_raises = None
    if subject.status == "positive":
        mg_raises = bool(regional_suvr(subject.mg_target, subject.labels)["cortex"]
                         > regional_suvr(subject.pet_1mm, subject.labels)["cortex"])
    return RobustnessCase(subject.record.get("name", f"seed{subject.seed}"), subject.pet_scanner,
                          subject.scanner_geometry, subject.labels, subject.gm, subject.wm, subject.geometry,
                          mg_raises)


def check_simulated(model_dir, seeds, settings=None, device: str = "auto", progress=None) -> dict:
    """Properties of the model in ``model_dir`` on freshly simulated subjects ``seeds``: per-subject
    figures and the summary lines."""
    from ..model import load_model
    from ..pipeline import correct_volume
    from ..progress import report
    from ..simulation import simulate_subject

    pvc_model = load_model(model_dir, device=device)

    def correct(volume, geometry):
        return correct_volume(volume, geometry, model=pvc_model, crop_fov=True).corrected

    per_subject = {}
    for index, seed in enumerate(seeds):
        case = simulated_case(simulate_subject(seed, settings))
        per_subject[case.name] = subject_properties(correct, case)
        report(progress, (index + 1) / len(seeds), f"robustness: {index + 1}/{len(seeds)} subjects")
    return {"per_subject": per_subject, "summary": summarise(per_subject)}
