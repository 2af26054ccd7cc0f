"""The point spread function (PSF) blur shared by the classical engine and the simulator.

The PSF is a separable Gaussian given by its full width at half maximum (FWHM) in mm per axis,
``(x, y, z)`` order; arrays are indexed ``[z, y, x]``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))  # 2.3548

#: The sampled Gaussian is cut at this many sigma.
GAUSSIAN_TRUNCATE_SIGMA = 4.0


def fwhm_to_sigma_voxels(fwhm_mm, spacing_mm) -> tuple[float, float, float]:
    """Gaussian sigma in voxels in array axis order ``[z, y, x]``.

    Args:
        fwhm_mm: PSF FWHM in mm, a number or ``(x, y, z)``.
        spacing_mm: voxel size in mm, ``(x, y, z)``.
    """
    fwhm_xyz = np.broadcast_to(np.asarray(fwhm_mm, dtype=float), (3,))
    sigma_xyz = fwhm_xyz / FWHM_PER_SIGMA / np.asarray(spacing_mm, dtype=float)
    return tuple(float(s) for s in sigma_xyz[::-1])


def gaussian_blur(volume: np.ndarray, fwhm_mm, spacing_mm) -> np.ndarray:
    """Blur ``volume`` (``[z, y, x]``) with a sampled Gaussian PSF, zero-flux (replicate) borders.

    Args:
        volume: 3D array, any units; returned in the same units as float32 (float64 input stays).
        fwhm_mm: PSF FWHM in mm, a number or ``(x, y, z)``; 0 along an axis means no blur there.
        spacing_mm: voxel size in mm, ``(x, y, z)``.
    """
    sigma = fwhm_to_sigma_voxels(fwhm_mm, spacing_mm)
    dtype = np.float64 if volume.dtype == np.float64 else np.float32
    return ndimage.gaussian_filter(volume.astype(dtype, copy=False), sigma, mode="nearest",
                                   truncate=GAUSSIAN_TRUNCATE_SIGMA)
