"""Out-of-distribution checks: does an input lie inside what the network saw in training?

:func:`input_statistics` measures an input (voxel size, axial field of view, crop level, lowest
value, the brain found from the PET); :func:`training_ranges` summarises those of the training
subjects (the model card records them as ``training_ranges``); :func:`out_of_distribution_warnings`
compares one input against a card's ranges and returns one line per finding. The correction is still
made: the warnings say where its result deserves less trust.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .geometry import Geometry
from .grid import world_bounding_box
from .intensity import IntensityScaling

#: A statistic is out of range when it lies further than this fraction of the range's largest
#: magnitude outside [lowest, highest] seen in training.
RANGE_MARGIN = 0.1
#: The brain found from the PET is "cut" when it reaches this close (slices) to the first or last
#: slice of the standard grid that the input covers.
EDGE_SLICES = 2

#: What each statistic is, for the warning lines: (description, format).
STATISTICS = {
    "voxel_size_mm": ("largest voxel side (mm)", "{:.2f}"),
    "axial_fov_mm": ("axial field of view (mm)", "{:.0f}"),
    "crop_level": ("crop level (crop value / image maximum; low: hot spots far above the brain)", "{:.2f}"),
    "lowest_over_crop": ("lowest value / crop value (negative: negative activity)", "{:.3f}"),
    "brain_volume_ml": ("volume of the brain found from the PET (mL)", "{:.0f}"),
}


def input_statistics(volume: np.ndarray, geometry: Geometry, standard: np.ndarray,
                     scaling: IntensityScaling) -> dict:
    """Statistics of one input: ``volume`` ``[z, y, x]`` on its own grid ``geometry``, ``standard`` the
    same on the 1 mm standard grid and ``scaling`` its normalisation. Brain entries are None when the
    normalisation found no brain mask ("global_minmax")."""
    low, high = world_bounding_box(volume.shape, geometry)
    crop_value, peak = scaling.crop_value, float(standard.max())
    statistics = {"voxel_size_mm": float(max(geometry.spacing)), "axial_fov_mm": float(high[2] - low[2]),
                  "crop_level": crop_value / peak if peak > 0 else None,
                  "lowest_over_crop": float(standard.min()) / crop_value if crop_value > 0 else None,
                  "brain_volume_ml": None, "brain_found": None, "brain_cut": None}
    if scaling.brain_slices is not None:
        covered = np.flatnonzero(np.any(standard != 0, axis=(1, 2)))
        first, last = scaling.brain_slices
        statistics.update(brain_volume_ml=scaling.brain_voxels / 1000.0, brain_found=scaling.brain_converged,
                          brain_cut=bool(first - covered[0] < EDGE_SLICES or covered[-1] - last < EDGE_SLICES))
    return statistics


def training_ranges(statistics: Sequence[dict]) -> dict:
    """``[lowest, highest]`` of each numeric statistic over training inputs (None values skipped)."""
    ranges = {}
    for name in STATISTICS:
        values = [entry[name] for entry in statistics if entry.get(name) is not None]
        if values:
            ranges[name] = [float(min(values)), float(max(values))]
    return ranges


def out_of_distribution_warnings(statistics: dict, ranges: Optional[dict]) -> list[str]:
    """One line per way the input lies outside the training ``ranges`` (a card's
    ``training_ranges``; None: the card records none, said in one line)."""
    warnings = []
    if statistics.get("brain_found") is False:
        warnings.append("no clear brain found in the PET (the brain mask search did not settle): the "
                        "intensity normalisation, and so the correction, may be off")
    if statistics.get("brain_cut"):
        warnings.append("the brain found in the PET reaches the top or bottom of the field of view: a cut "
                        "brain was not in the training data")
    if ranges is None:
        warnings.append("the model card records no training ranges: the input could not be checked "
                        "against what the model saw")
        return warnings
    for name, (description, number) in STATISTICS.items():
        value, known = statistics.get(name), ranges.get(name)
        if value is None or known is None:
            continue
        lowest, highest = known
        margin = RANGE_MARGIN * max(abs(lowest), abs(highest))
        if not lowest - margin <= value <= highest + margin:
            warnings.append(f"{description} {number.format(value)} lies outside the training range "
                            f"{number.format(lowest)} to {number.format(highest)}")
    return warnings
