"""True activity: regional amyloid-tracer uptake, smooth heterogeneity and a global scale.

Values are relative to the cerebellar grey matter (= 1, the SUVR reference) and then multiplied
by a global scale (log-uniform, the cerebellar activity in the file's units), so intensities span
several orders of magnitude across subjects as real data in Bq/mL, kBq/mL or SUV do.

Regional values (uniform draws; spec ranges in the design note, the rest chosen here):
- a tracer per subject (:data:`TRACERS`): the amyloid-binding grey matter (cortex, striatum,
  hippocampus, amygdala) is drawn on PiB's scale, ``v`` below, and mapped to the tracer by its
  published Centiloid calibration ``slope * v + intercept``; cerebral WM in the tracer's range
  (non-specific white-matter binding), each hemisphere +/-2 %; relative to it: cerebellar WM
  0.75-0.9, brain stem 0.85-1.0, ventral DC 0.75-0.9, thalamus 0.6-0.75, pallidum 0.7-0.85;
- CSF 0.05-0.2, skull 0.1-0.3, outside the head 0, and the head's soft tissue and extra-cerebral
  structures in :data:`EXTRACEREBRAL_UPTAKE` (hot spots up to 5x the cerebellar GM);
- amyloid-negative cortex: a subject level 0.95-1.2 plus N(0, 0.04) per parcel, kept in 0.9-1.3;
  caudate and accumbens 0.9-1.2, putamen 1.0-1.3, hippocampus and amygdala 0.9-1.2;
- amyloid-positive cortex: 1.4 + 1.2 * clip(load_h * (0.3 + 0.7 w) * (1 + N(0, 0.06)), 0, 1) in
  1.4-2.6, with the subject's load 0.25-1, load_h = load * (1 +/- asymmetry / 2) per hemisphere
  (asymmetry -0.1..0.1) and w the parcel's pattern weight (:data:`regions.CORTICAL_PARCELS`);
  striatum (caudate, putamen, accumbens) raised by 0.9 * load_h, hippocampus and amygdala by
  0.15 * load_h.
Heterogeneity: the regional value times ``1 + sd * z``, z a unit-RMS cubic B-spline random field
(control points ``heterogeneity_control_spacing_mm`` apart), kept in [0.5, 1.5] and rescaled per
region so that each region's mean is exactly its drawn value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import head, regions
from .anatomy import BSPLINE_RMS_PER_CONTROL_SD, smooth_random_field

STATUSES = ("negative", "positive")


@dataclass(frozen=True)
class Tracer:
    """An amyloid tracer: its cortical SUVR = ``slope`` x PiB's + ``intercept`` (Centiloid
    calibration, whole-cerebellum reference), and its cerebral WM range (x cerebellar GM)."""

    slope: float
    intercept: float
    white_matter: tuple
    source: str


#: PiB's own scale: young controls 1.00 +/- 0.05, typical AD 2.07 +/- 0.20 (Klunk et al. 2015,
#: Alzheimers Dement 11:1-15). WM ranges are chosen here from typical images (the 18F tracers bind
#: white matter more than PiB, flutemetamol most); the calibrations are the papers'.
TRACERS = {
    "florbetapir": Tracer(0.514, 0.451, (1.6, 2.2), "Navitsky et al., Alzheimers Dement 12(7S) 2016 "
                                                     "(AAIC abstract; 10.1016/j.jalz.2016.06.1232)"),
    "florbetaben": Tracer(0.61, 0.39, (1.6, 2.2), "Rowe et al. 2017, Eur J Nucl Med Mol Imaging 44:2053"),
    "flutemetamol": Tracer(0.77, 0.22, (1.8, 2.5), "Battle et al. 2018, EJNMMI Res 8:107"),
    "pib": Tracer(1.0, 0.0, (1.4, 1.9), "Klunk et al. 2015, Alzheimers Dement 11:1-15"),
}

#: Uptake ranges (x cerebellar GM) outside the brain, chosen so that, as on real florbetapir scans,
#: the hottest voxels of the PET are extra-cerebral (nasal mucosa, nasopharynx, glands, marrow)
#: at several times the brain mean; which structures take up amyloid tracers: Chiaravalloti et al.
#: 2019 (doi:10.1007/978-3-030-27779-6_8): salivary glands, muscles, bone marrow.
EXTRACEREBRAL_UPTAKE = {
    regions.HEAD_EXTRACEREBRAL: (0.3, 0.8),  # scalp, face and neck soft tissue
    head.NASAL_MUCOSA: (1.5, 5.0), head.SINUS_MUCOSA: (1.0, 3.5), head.NASOPHARYNX: (1.5, 5.0),
    head.PAROTID: (1.2, 3.0), head.SUBMANDIBULAR: (1.2, 3.0),
    head.SKULL_BASE_MARROW: (1.0, 3.0), head.CALVARIAL_MARROW: (0.5, 2.0),
    head.EXTRAOCULAR_MUSCLES: (1.0, 2.5), head.NECK_MUSCLES: (0.5, 1.2), head.EYEBALL: (0.1, 0.3),
}


def _relative_to_wm(rng, low, high, wm_value):
    return float(rng.uniform(low, high) * wm_value)


def draw_uptake(rng: np.random.Generator, settings) -> dict:
    """All random uptake choices of one subject (JSON-ready): tracer, status, load, scale, regional values."""
    tracer_name = settings.tracers[int(rng.integers(len(settings.tracers)))]
    tracer = TRACERS[tracer_name]
    positive = bool(rng.uniform() < settings.positive_fraction)
    load = float(rng.uniform(0.25, 1.0)) if positive else 0.0
    asymmetry = float(rng.uniform(-0.1, 0.1))
    log_low, log_high = np.log10(settings.global_scale)
    global_scale = float(10.0 ** rng.uniform(log_low, log_high))
    heterogeneity_sd = float(rng.uniform(*settings.heterogeneity_sd))
    hemisphere_load = {"left": load * (1 + asymmetry / 2), "right": load * (1 - asymmetry / 2)}
    negative_cortex_level = float(rng.uniform(0.95, 1.2))

    def on_tracer_scale(pib_value: float) -> float:
        return float(tracer.slope * pib_value + tracer.intercept)

    values = {regions.BACKGROUND: 0.0, regions.CSF: float(rng.uniform(0.05, 0.2)),
              regions.SKULL: float(rng.uniform(0.1, 0.3))}
    for region_id, (low, high) in EXTRACEREBRAL_UPTAKE.items():
        values[region_id] = float(rng.uniform(low, high))
    wm_level = float(rng.uniform(*tracer.white_matter))
    values[regions.BRAINSTEM] = _relative_to_wm(rng, 0.85, 1.0, wm_level)
    for side in ("left", "right"):
        side_index = 0 if side == "left" else 1
        wm = wm_level * float(rng.uniform(0.98, 1.02))
        values[regions.CEREBRAL_WM[side]] = wm
        values[regions.CEREBELLAR_WM[side]] = _relative_to_wm(rng, 0.75, 0.9, wm)
        values[regions.CEREBELLAR_CORTEX[side]] = 1.0
        sub = {name: ids[side_index] for name, ids in regions.SUBCORTICAL.items()}
        values[sub["VentralDC"]] = _relative_to_wm(rng, 0.75, 0.9, wm)
        values[sub["Thalamus"]] = _relative_to_wm(rng, 0.6, 0.75, wm)
        values[sub["Pallidum"]] = _relative_to_wm(rng, 0.7, 0.85, wm)
        side_load = hemisphere_load[side]
        for name, low, high, raise_per_load in (("Caudate", 0.9, 1.2, 0.9), ("Accumbens-area", 0.9, 1.2, 0.9),
                                                ("Putamen", 1.0, 1.3, 0.9), ("Hippocampus", 0.9, 1.2, 0.15),
                                                ("Amygdala", 0.9, 1.2, 0.15)):
            values[sub[name]] = on_tracer_scale(rng.uniform(low, high) + raise_per_load * side_load)
        for region_id in regions.cortical_ids(side):
            if positive:
                weight = regions.cortical_pattern_weight(region_id)
                binding = side_load * (0.3 + 0.7 * weight) * (1.0 + rng.normal(0.0, 0.06))
                values[region_id] = on_tracer_scale(1.4 + 1.2 * np.clip(binding, 0.0, 1.0))
            else:
                values[region_id] = on_tracer_scale(np.clip(negative_cortex_level + rng.normal(0.0, 0.04), 0.9, 1.3))
    return {"tracer": tracer_name, "status": STATUSES[int(positive)], "amyloid_load": load,
            "hemisphere_asymmetry": asymmetry,
            "global_scale": global_scale, "heterogeneity_sd": heterogeneity_sd,
            "heterogeneity_control_spacing_mm": float(settings.heterogeneity_control_spacing_mm),
            "relative_values": {str(k): v for k, v in sorted(values.items())}}


def heterogeneity_field(labels: np.ndarray, sd: float, control_spacing_mm: float, spacing_mm: float,
                        rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field (float32, [z, y, x]) whose mean over every region is 1."""
    if sd == 0.0:
        return np.ones(labels.shape, dtype=np.float32)
    field = smooth_random_field(rng, labels.shape[0], spacing_mm, control_spacing_mm)
    field *= np.float32(sd / BSPLINE_RMS_PER_CONTROL_SD)
    field += np.float32(1.0)
    np.clip(field, 0.5, 1.5, out=field)
    flat_labels = labels.ravel()
    sums = np.bincount(flat_labels, weights=field.ravel())
    counts = np.maximum(np.bincount(flat_labels), 1)
    field /= (sums / counts).astype(np.float32)[labels]
    return field


def true_activity(labels: np.ndarray, uptake: dict, spacing_mm: float,
                  rng_heterogeneity: np.random.Generator) -> np.ndarray:
    """The subject's true activity (float32, [z, y, x]) in file units."""
    lookup = np.zeros(int(labels.max()) + 1, dtype=np.float32)
    for region_id, value in uptake["relative_values"].items():
        if int(region_id) < lookup.size:
            lookup[int(region_id)] = value * uptake["global_scale"]
    field = heterogeneity_field(labels, uptake["heterogeneity_sd"], uptake["heterogeneity_control_spacing_mm"],
                                spacing_mm, rng_heterogeneity)
    field *= lookup[labels]
    return field
