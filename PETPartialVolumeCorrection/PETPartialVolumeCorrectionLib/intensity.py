"""Intensity normalisation of the network input and its exact inverse.

Two methods, both of the form ``scaled = (volume - offset) / scale``, network input
``min(scaled, crop_level)``:

- ``"brain_percentile"`` (model cards from format version 2): ``offset = 0``; the crop value is the
  :data:`BRAIN_CROP_PERCENTILE`-th percentile of the voxels inside a bright-brain mask found from the
  PET itself (:func:`find_brain_mask`), and it maps to :data:`NETWORK_CROP_LEVEL`. Nothing outside
  that mask (extra-cerebral hot spots, the neck in or out of the field of view) moves the scaling.
- ``"global_minmax"`` (the founding study's, format version 1 cards): min-max scale the whole volume
  to [0, 1], crop at its 99th percentile. A single hot voxel outside the brain sets the scale.

What cropping removes is kept: the corrected volume in physical units is the network output mapped
back plus the input's crop excess. Training targets are normalised with the input's parameters
(:meth:`IntensityScaling.normalise_target`), so ``restore(normalise_target(t)) == t``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from .errors import PVCInputError

METHODS = ("brain_percentile", "global_minmax")

#: The founding study's crop: the 99th percentile of the whole volume ("global_minmax").
GLOBAL_CROP_PERCENTILE = 99.0
#: "brain_percentile": crop at this percentile of the brain mask's voxels (on simulated heads it is
#: the study's global 99th percentile to within a few %) ...
BRAIN_CROP_PERCENTILE = 85.0
#: ... and map it to this network level: the crop level the shipped v1 model saw on simulated data
#: (0.73-0.8), so a model warm-started from it sees inputs on the scale it was trained on.
NETWORK_CROP_LEVEL = 0.8

#: Brain mask search (:func:`find_brain_mask`), on a 2x block-averaged grid smoothed by this sigma
#: (voxels of the coarse grid, 2 mm on the 1 mm standard grid) ...
MASK_SMOOTHING_SIGMA = 1.0
#: ... the largest connected region above this fraction of the mask's own level ...
MASK_THRESHOLD_FRACTION = 0.5
#: ... where the level is this percentile of the smoothed mask voxels (a fixed point, iterated).
MASK_LEVEL_PERCENTILE = 90.0
MASK_MAX_ITERATIONS = 30


@dataclass(frozen=True)
class BrainMask:
    """The bright-brain mask found from a PET volume: ``mask`` (bool, the volume's shape) and whether
    the fixed-point search converged."""

    mask: np.ndarray
    converged: bool


def _block_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return volume.astype(np.float32)
    z, y, x = (side // factor for side in volume.shape)
    trimmed = volume[:z * factor, :y * factor, :x * factor].astype(np.float32)
    return trimmed.reshape(z, factor, y, factor, x, factor).mean(axis=(1, 3, 5))


def _largest_component(candidate: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, count = ndimage.label(candidate)
    if count == 0:
        return candidate
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())


def find_brain_mask(volume: np.ndarray) -> BrainMask:
    """The brain's bright core in a PET volume ``[z, y, x]`` (any units, 1 mm standard grid expected).

    The largest connected region of the smoothed, 2x block-averaged volume above
    :data:`MASK_THRESHOLD_FRACTION` of the :data:`MASK_LEVEL_PERCENTILE`-th percentile of that same
    region, found by fixed-point iteration from the whole positive volume. The fixed point depends
    only on the region and what touches it, so hot spots not connected to the brain and slabs below
    it do not change the mask. On a side of odd length the last voxel is left out of the mask.
    """
    from scipy import ndimage

    factor = 2 if min(volume.shape) >= 16 else 1
    smooth = ndimage.gaussian_filter(_block_mean(volume, factor), MASK_SMOOTHING_SIGMA)
    region = smooth > 0
    if not region.any():
        return BrainMask(np.zeros(volume.shape, bool), False)
    mask, converged = region, False
    for _ in range(MASK_MAX_ITERATIONS):
        level = np.percentile(smooth[mask], MASK_LEVEL_PERCENTILE)
        following = _largest_component(smooth > MASK_THRESHOLD_FRACTION * level)
        if np.array_equal(following, mask):
            converged = True
            break
        mask = following
    full = np.zeros(volume.shape, bool)
    if factor > 1:
        mask = mask.repeat(factor, 0).repeat(factor, 1).repeat(factor, 2)
    full[tuple(slice(0, side) for side in mask.shape)] = mask
    return BrainMask(full, converged)


@dataclass(frozen=True)
class IntensityScaling:
    """Scaling parameters of one volume: ``scaled = (volume - offset) / scale``, cropped at
    ``crop_level``.

    Attributes:
        offset, scale: physical units (Bq/mL, SUV, ...).
        crop_level: dimensionless network level of the crop.
        method: one of :data:`METHODS`.
        brain_voxels: voxels in the PET-found brain mask ("brain_percentile"; 0 for "global_minmax").
        brain_converged: whether the brain mask search converged ("brain_percentile").
        brain_slices: first and last ``z`` index of the brain mask ("brain_percentile"; None else).
    """

    offset: float
    scale: float
    crop_level: float
    method: str = "brain_percentile"
    brain_voxels: int = 0
    brain_converged: bool = True
    brain_slices: Optional[tuple[int, int]] = None

    @classmethod
    def fit(cls, volume: np.ndarray, method: str = "brain_percentile") -> "IntensityScaling":
        """Parameters for ``volume`` (``[z, y, x]``, finite values) by ``method``."""
        if method not in METHODS:
            raise PVCInputError(f"unknown intensity normalisation {method!r}; use one of {', '.join(METHODS)}")
        minimum, maximum = float(volume.min()), float(volume.max())
        if not maximum > minimum:
            raise PVCInputError(f"image is constant ({minimum:g}); cannot scale intensities")
        percentile_99 = float(np.percentile(volume, GLOBAL_CROP_PERCENTILE))
        if not percentile_99 > minimum:  # refused by either method: no brain PET is this empty
            raise PVCInputError(f"the {GLOBAL_CROP_PERCENTILE:g}th percentile equals the minimum: the image "
                                "is almost empty (more than 99 % of voxels at the lowest value)")
        if method == "global_minmax":
            crop_level = (percentile_99 - minimum) / (maximum - minimum)
            return cls(minimum, maximum - minimum, crop_level, method)
        brain = find_brain_mask(volume)
        inside = volume[brain.mask]
        crop_value = float(np.percentile(inside, BRAIN_CROP_PERCENTILE)) if inside.size else 0.0
        if not crop_value > 0.0:
            raise PVCInputError("no brain found in the PET: no bright connected region with positive "
                                "activity (is this a brain PET in activity units?)")
        slices = np.flatnonzero(brain.mask.any(axis=(1, 2)))
        return cls(0.0, crop_value / NETWORK_CROP_LEVEL, NETWORK_CROP_LEVEL, method, int(inside.size),
                   brain.converged, (int(slices[0]), int(slices[-1])))

    @property
    def crop_value(self) -> float:
        """The crop level in physical units."""
        return self.offset + self.crop_level * self.scale

    def _scale(self, volume: np.ndarray) -> np.ndarray:
        return ((volume.astype(np.float64) - self.offset) / self.scale).astype(np.float32)

    def crop_excess(self, volume: np.ndarray) -> np.ndarray:
        """What cropping removes from ``volume`` in scaled units (0 below the crop level)."""
        return np.maximum(self._scale(volume) - np.float32(self.crop_level), np.float32(0.0))

    def normalise(self, volume: np.ndarray) -> np.ndarray:
        """Network input: scaled and cropped at ``crop_level`` (float32)."""
        return np.minimum(self._scale(volume), np.float32(self.crop_level))

    def normalise_target(self, target: np.ndarray, volume: np.ndarray) -> np.ndarray:
        """Training target for ``volume``'s corrected version ``target``: scaled with the input's
        parameters, minus the input's crop excess."""
        return self._scale(target) - self.crop_excess(volume)

    def restore(self, normalised: np.ndarray, volume: np.ndarray) -> np.ndarray:
        """Map a network output for ``volume`` back to physical units (float32)."""
        scaled = normalised.astype(np.float64) + self.crop_excess(volume)
        return (scaled * self.scale + self.offset).astype(np.float32)

    def to_dict(self) -> dict:
        return {**asdict(self), "crop_value": self.crop_value}


def normalisation_record() -> dict:
    """The "brain_percentile" normalisation and its constants, as model cards record it."""
    return {"method": "brain_percentile", "brain_crop_percentile": BRAIN_CROP_PERCENTILE,
            "network_crop_level": NETWORK_CROP_LEVEL, "offset": 0.0,
            "brain_mask": {"grid": "2x block mean of the 1 mm grid", "smoothing_sigma_voxels": MASK_SMOOTHING_SIGMA,
                           "threshold_fraction": MASK_THRESHOLD_FRACTION, "level_percentile": MASK_LEVEL_PERCENTILE},
            "description": "crop at the brain_crop_percentile-th percentile of a bright-brain mask found from "
                           "the PET (largest connected region above threshold_fraction of its own "
                           "level_percentile-th percentile, 2 mm grid, fixed point), which maps to "
                           "network_crop_level; no offset. Targets are scaled with the input's parameters "
                           "minus the input's crop excess (intensity.py)."}
