"""The point spread function (PSF) blur shared by the classical engine and the simulator.

The PSF is a separable Gaussian given by its full width at half maximum (FWHM) in mm per axis,
``(x, y, z)`` order; arrays are indexed ``[z, y, x]``. Two discrete kernels are offered:

- ``"gaussian"`` (default, the physical PSF): the Gaussian sampled at voxel centres, cut at
  4 sigma, normalised to sum 1 (as ``scipy.ndimage.gaussian_filter``).
- ``"itk"``: ITK's ``DiscreteGaussianImageFilter`` at its defaults, which PETPVC uses: Lindeberg's
  discrete Gaussian ``exp(-t) I_n(t)`` (``t`` = variance in voxels^2, ``I_n`` the modified Bessel
  function), cut where its mass reaches 0.99 (at most 32 coefficients per side), renormalised.
  Its effective FWHM is below nominal; use it to reproduce PETPVC's numbers.

Both blur along the array index axes (direction cosines ignored, as PETPVC and SPM do) with
replicate (zero-flux) borders, so a constant image stays constant.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np
from scipy import ndimage, special

from ..errors import PVCInputError

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))  # 2.3548

KERNELS = ("gaussian", "itk")

#: The sampled Gaussian is cut at this many sigma.
GAUSSIAN_TRUNCATE_SIGMA = 4.0
#: ITK DiscreteGaussianImageFilter defaults (PETPVC leaves them as they are).
ITK_MAXIMUM_ERROR = 0.01
ITK_MAXIMUM_KERNEL_WIDTH = 32

#: PSF FWHM outside this range (mm) draws a warning: brain PET scanners lie at ~3.5-8.5 mm.
PLAUSIBLE_FWHM_MM = (1.0, 15.0)
#: A PSF FWHM above this (mm, any axis) is refused: no PET scanner blurs this much (a PET smoothed
#: twice with 8 mm reaches 11.3 mm), and the corrections become absurd (RBV at 50 mm: values 1e6
#: times the input's). Most often the value was given in the wrong unit (voxels, or mm for cm).
MAX_FWHM_MM = 20.0

#: Volumes with at least this many voxels are blurred in slabs on several threads.
THREADED_BLUR_MIN_VOXELS = 2_000_000
BLUR_THREADS = max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else (os.cpu_count() or 1)))


def check_fwhm(fwhm_mm, warn: bool = True) -> np.ndarray:
    """Validate a PSF FWHM (mm, a number or ``(x, y, z)``) and return it as ``(x, y, z)`` floats.

    Raises :class:`PVCInputError` for a wrong length, negative or non-finite values, or an axis above
    :data:`MAX_FWHM_MM`; warns (``UserWarning``) when an axis lies outside :data:`PLAUSIBLE_FWHM_MM`.
    """
    try:
        values = np.asarray(fwhm_mm, dtype=float).ravel()
    except (TypeError, ValueError):
        raise PVCInputError(f"PSF FWHM must be numbers in mm (x y z), got {fwhm_mm!r}") from None
    if values.size == 1:
        values = np.repeat(values, 3)
    if values.size != 3:
        raise PVCInputError(f"PSF FWHM needs 1 or 3 values in mm (x y z), got {values.size}")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise PVCInputError(f"PSF FWHM {tuple(values.tolist())} mm must be finite and >= 0")
    if np.any(values > MAX_FWHM_MM):
        raise PVCInputError(f"PSF FWHM {tuple(round(v, 3) for v in values.tolist())} mm is above {MAX_FWHM_MM:g} mm, "
                            "wider than any PET scanner's (brain scanners ~3.5-8.5 mm); give the FWHM in mm")
    low, high = PLAUSIBLE_FWHM_MM
    if warn and (np.any(values < low) or np.any(values > high)):
        warnings.warn(f"PSF FWHM {tuple(round(v, 3) for v in values.tolist())} mm is implausible for a "
                      f"PET scanner (expected {low:g}-{high:g} mm per axis, brain scanners ~3.5-8.5 mm); "
                      "check the value and its units", UserWarning, stacklevel=3)
    return values


def fwhm_to_sigma_voxels(fwhm_mm, spacing_mm) -> tuple[float, float, float]:
    """Gaussian sigma in voxels in array axis order ``[z, y, x]``.

    Args:
        fwhm_mm: PSF FWHM in mm, a number or ``(x, y, z)``.
        spacing_mm: voxel size in mm, ``(x, y, z)``.
    """
    fwhm_xyz = np.broadcast_to(np.asarray(fwhm_mm, dtype=float), (3,))
    sigma_xyz = fwhm_xyz / FWHM_PER_SIGMA / np.asarray(spacing_mm, dtype=float)
    return tuple(float(s) for s in sigma_xyz[::-1])


def _sampled_gaussian(sigma_voxels: float) -> np.ndarray:
    radius = int(GAUSSIAN_TRUNCATE_SIGMA * sigma_voxels + 0.5)
    if radius == 0:
        return np.ones(1)
    x = np.arange(-radius, radius + 1, dtype=float)
    weights = np.exp(-0.5 * (x / sigma_voxels) ** 2)
    return weights / weights.sum()


def _itk_discrete_gaussian(sigma_voxels: float) -> np.ndarray:
    variance = sigma_voxels ** 2
    half = [special.ive(0, variance), special.ive(1, variance)]
    mass = half[0] + 2.0 * half[1]
    order = 2
    while mass < 1.0 - ITK_MAXIMUM_ERROR:
        coefficient = special.ive(order, variance)
        half.append(coefficient)
        mass += 2.0 * coefficient
        if coefficient <= 0.0 or len(half) > ITK_MAXIMUM_KERNEL_WIDTH:
            break
        order += 1
    half = np.asarray(half) / mass
    return np.concatenate([half[:0:-1], half])


def kernel_1d(sigma_voxels: float, kernel: str = "gaussian") -> np.ndarray:
    """The normalised, symmetric 1D kernel (odd length) for ``sigma_voxels`` (voxels)."""
    if kernel == "gaussian":
        return _sampled_gaussian(sigma_voxels)
    if kernel == "itk":
        return _itk_discrete_gaussian(sigma_voxels)
    raise PVCInputError(f"unknown PSF kernel {kernel!r}; use one of {', '.join(KERNELS)}")


def psf_kernels(fwhm_mm, spacing_mm, kernel: str = "gaussian") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three 1D kernels of the separable PSF, in array axis order ``[z, y, x]``.

    Args:
        fwhm_mm: PSF FWHM in mm, a number or ``(x, y, z)``; 0 along an axis means no blur there.
        spacing_mm: voxel size in mm, ``(x, y, z)``.
        kernel: ``"gaussian"`` or ``"itk"`` (see the module docstring).
    """
    return tuple(kernel_1d(sigma, kernel) for sigma in fwhm_to_sigma_voxels(fwhm_mm, spacing_mm))


def kernel_radii(kernels) -> tuple[int, int, int]:
    """Half-widths in voxels ``[z, y, x]`` of the kernels from :func:`psf_kernels`."""
    return tuple(len(k) // 2 for k in kernels)


def _blur_axes(volume: np.ndarray, kernels, axes, out: np.ndarray) -> None:
    current = volume
    for axis in axes:
        ndimage.correlate1d(current, kernels[axis], axis=axis, output=out, mode="nearest")
        current = out
    if current is volume:
        out[...] = volume


def blur(volume: np.ndarray, kernels, threads: Optional[int] = None) -> np.ndarray:
    """Blur ``volume`` (``[z, y, x]``) with separable ``kernels`` (from :func:`psf_kernels`).

    Replicate borders. float32 in, float32 out (float64 stays float64); volumes of at least
    :data:`THREADED_BLUR_MIN_VOXELS` voxels are split into slabs blurred on ``threads`` threads.
    """
    dtype = np.float64 if volume.dtype == np.float64 else np.float32
    volume = np.asarray(volume, dtype=dtype)
    # In-plane axes (y, x) first, then z: the same order, so the same rounding, on any thread count.
    in_plane = [axis for axis in (1, 2) if len(kernels[axis]) > 1]
    active_axes = in_plane + ([0] if len(kernels[0]) > 1 else [])
    out = np.empty_like(volume)
    threads = min(threads or BLUR_THREADS, volume.shape[0], volume.shape[1])
    if volume.size < THREADED_BLUR_MIN_VOXELS or threads < 2:
        _blur_axes(volume, kernels, active_axes, out)
        return out
    # In-plane axes on slabs along z, then z on slabs along y: each slab is independent.
    z_slabs = np.array_split(np.arange(volume.shape[0]), threads)
    y_slabs = np.array_split(np.arange(volume.shape[1]), threads)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda rows: _blur_axes(volume[rows[0]:rows[-1] + 1], kernels, in_plane,
                                              out[rows[0]:rows[-1] + 1]), z_slabs))
        if 0 in active_axes:
            source = out if in_plane else volume
            list(pool.map(lambda rows: _blur_axes(source[:, rows[0]:rows[-1] + 1], kernels, [0],
                                                  out[:, rows[0]:rows[-1] + 1]), y_slabs))
    return out


def gaussian_blur(volume: np.ndarray, fwhm_mm, spacing_mm, kernel: str = "gaussian") -> np.ndarray:
    """Blur ``volume`` (``[z, y, x]``) with the Gaussian PSF, zero-flux (replicate) borders.

    Args:
        volume: 3D array, any units; returned in the same units as float32 (float64 input stays).
        fwhm_mm: PSF FWHM in mm, a number or ``(x, y, z)``; 0 along an axis means no blur there.
        spacing_mm: voxel size in mm, ``(x, y, z)``.
        kernel: ``"gaussian"`` (sampled, cut at 4 sigma) or ``"itk"`` (PETPVC's discrete kernel).
    """
    return blur(volume, psf_kernels(fwhm_mm, spacing_mm, kernel))
