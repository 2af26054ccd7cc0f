"""Image agreement metrics as the founding study reports them: SSIM and RMSE.

SSIM is the 3D structural similarity of scikit-image on volumes min-max scaled with the
reference's range (so both share one mapping and ``data_range`` is 1). RMSE is in the volumes'
physical units (Bq/mL, SUV). Both can be restricted to a mask (e.g. the brain).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .errors import PVCInputError


def _check_same_shape(prediction: np.ndarray, reference: np.ndarray, mask: Optional[np.ndarray]) -> None:
    if prediction.shape != reference.shape:
        raise PVCInputError(f"volumes differ in shape {prediction.shape} vs {reference.shape}; "
                            "compare images on the same grid")
    if mask is not None and mask.shape != reference.shape:
        raise PVCInputError(f"mask shape {mask.shape} differs from the volumes' {reference.shape}")
    if mask is not None and not np.any(mask):
        raise PVCInputError("mask is empty")


def rmse(prediction: np.ndarray, reference: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """Root mean squared error in physical units, over all voxels or those in ``mask``."""
    _check_same_shape(prediction, reference, mask)
    difference = prediction.astype(np.float64) - reference.astype(np.float64)
    if mask is not None:
        difference = difference[mask.astype(bool)]
    return float(np.sqrt(np.mean(difference ** 2)))


def ssim(prediction: np.ndarray, reference: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """Mean 3D SSIM (scikit-image, 7-voxel window) after scaling both with the reference's min-max."""
    from skimage.metrics import structural_similarity

    _check_same_shape(prediction, reference, mask)
    low, high = float(reference.min()), float(reference.max())
    if not high > low:
        raise PVCInputError("reference volume is constant; SSIM is undefined")
    scale = lambda volume: ((volume.astype(np.float64) - low) / (high - low)).astype(np.float32)  # noqa: E731
    if mask is None:
        return float(structural_similarity(scale(prediction), scale(reference), data_range=1.0))
    _, ssim_map = structural_similarity(scale(prediction), scale(reference), data_range=1.0, full=True)
    return float(ssim_map[mask.astype(bool)].mean())
