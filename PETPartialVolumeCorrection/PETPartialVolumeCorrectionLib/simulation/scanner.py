"""The scanner: PSF blur, the reconstruction grid, correlated activity-dependent noise.

1. The true activity on the output grid is blurred with a Gaussian PSF (the shared
   :func:`~..classical.psf.gaussian_blur`); its FWHM is the image's effective resolution.
2. The blurred image is sampled at the centres of the scanner's voxels (cubic B-spline, separable:
   all grids here share the RAS-aligned direction, so resampling is one 1D operator per axis).
   The scanner's field of view is centred on the output grid, so that the standard grid
   ``correct`` makes for the scanner image (centred on it) is the output grid itself; where the
   head lies in the field of view is the anatomy's choice (:mod:`.anatomy`, translation).
3. Noise is added on the scanner grid: white Gaussian noise smoothed with a Gaussian whose FWHM
   is ``noise_correlation_psf_fraction`` (0.4-0.8) of the PSF's (renormalised to unit variance;
   neighbouring voxels are correlated as after a post-filtered reconstruction), times ``relative_noise * sqrt(reference * max(b, 0.02 *
   reference))`` where b is the blurred activity and reference the cerebellar GM activity: the
   variance follows the activity, as for Poisson counts. Negative values are set to 0 (as OSEM
   gives). relative_noise is the count level's (settings.COUNT_LEVELS, for 8 mm^3 voxels) times
   sqrt(8 mm^3 / voxel volume): smaller voxels hold fewer counts.
Axial coverage varies (:func:`draw_coverage`): the brain's centre lies anywhere along z from
touching the bottom to touching the top of the field of view (up to ``brain_past_edge_mm`` past
it), so the neck is in or out and the top of the skull may be cut; and some scanner images have
zero-padded slices at their ends (outside the field of view for the targets).

The network's input is the scanner image brought to the output grid by ``correct``'s own
:func:`~..grid.resample_to_standard_grid` (see :mod:`.subject`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..classical.psf import fwhm_to_sigma_voxels, gaussian_blur
from ..geometry import Geometry
from .anatomy import RAS_DIRECTION
from .settings import NOISE_REFERENCE_VOXEL_MM3

#: Interpolation order of every resampling (cubic B-spline).
SPLINE_ORDER = 3
#: Interpolation weights below this are set to 0.
OPERATOR_FLOOR = 1e-9
#: Noise floor: the variance outside the head is that of this fraction of the reference activity.
NOISE_FLOOR = 0.02


def draw_scanner(rng: np.random.Generator, settings) -> dict:
    """Random scanner choices (JSON-ready; per-axis values in (x, y, z) order, mm)."""
    low, high = settings.psf_fwhm_mm
    fwhm_xy = float(rng.uniform(low, high))
    fwhm_z = float(np.clip(fwhm_xy * rng.uniform(*settings.psf_axial_ratio), low, high))
    grid = settings.scanner_grids[int(rng.integers(len(settings.scanner_grids)))]
    jitter = 1.0 + rng.uniform(-settings.voxel_jitter, settings.voxel_jitter, 2)
    spacing = np.array(grid.spacing_mm) * np.array([jitter[0], jitter[0], jitter[1]])
    spacing = np.clip(spacing, *settings.voxel_range_mm)
    count_level = sorted(settings.count_levels)[int(rng.integers(len(settings.count_levels)))]
    voxel_volume = float(np.prod(spacing))
    relative_noise = settings.count_levels[count_level] * np.sqrt(NOISE_REFERENCE_VOXEL_MM3 / voxel_volume)
    return {
        "psf_fwhm_mm": [fwhm_xy, fwhm_xy, fwhm_z],
        "grid_name": grid.name,
        "matrix": list(grid.matrix),
        "spacing_mm": spacing.tolist(),
        "count_level": count_level if settings.noise else "noise-free",
        "relative_noise": float(relative_noise) if settings.noise else 0.0,
        "noise_correlation_psf_fraction": float(rng.uniform(*settings.noise_correlation_psf_fraction)),
    }


#: Height of the cerebrum and cerebellum (GM > 0.5) in MNI space: 152 mm in both anatomy sources.
BRAIN_HEIGHT_MM = 152.0


def draw_coverage(rng: np.random.Generator, settings, scanner: dict, scale_z: float) -> dict:
    """Where the brain's centre lies along z relative to the field of view's centre (mm, uniform
    over the positions from touching the bottom to touching the top, ``brain_past_edge_mm``
    beyond), and the zero-padded slices at the bottom and top of the scanner image."""
    fov_z = scanner["matrix"][2] * scanner["spacing_mm"][2]
    reach = max(fov_z - BRAIN_HEIGHT_MM * scale_z, 0.0) / 2.0 + settings.brain_past_edge_mm
    brain_offset = float(rng.uniform(-reach, reach))
    zero_slices = [0, 0]
    if rng.uniform() < settings.zero_slab_probability:
        low, high = settings.zero_slab_slices
        zero_slices = [int(n) for n in rng.integers(low, high + 1, 2)]
    return {"brain_offset_mm": brain_offset, "zero_slices": zero_slices}


def scanner_geometry(scanner: dict, output: Geometry, output_shape) -> Geometry:
    """The scanner grid, RAS-aligned, centred on the output grid (``output_shape`` ``[z, y, x]``).

    Args:
        scanner: choices from :func:`draw_scanner`.
    """
    spacing = np.asarray(scanner["spacing_mm"])
    half_extent = (np.asarray(scanner["matrix"]) - 1) / 2.0 * spacing
    centre = output.world_center(output_shape)
    return Geometry(tuple(spacing), tuple(centre - RAS_DIRECTION @ half_extent), RAS_DIRECTION)


def _cubic_bspline(offsets: np.ndarray) -> np.ndarray:
    t = np.abs(offsets)
    return np.where(t < 1, (4 - 6 * t**2 + 3 * t**3) / 6, np.where(t < 2, (2 - t) ** 3 / 6, 0.0))


def _mirror(indices: np.ndarray, size: int) -> np.ndarray:
    """Indices reflected about the edge voxels' centres (scipy.ndimage's ``mode="mirror"``)."""
    if size == 1:
        return np.zeros_like(indices)
    period = 2 * size - 2
    folded = np.mod(indices, period)
    return np.where(folded >= size, period - folded, folded)


def _source_positions(source: Geometry, target: Geometry, target_size: int, axis: int) -> np.ndarray:
    """Source index (along index axis ``axis``, 0 = x) of each target voxel on that axis."""
    direction = source.direction[axis, axis]
    return ((target.origin[axis] - source.origin[axis]) * direction
            + np.arange(target_size) * target.spacing[axis]) / source.spacing[axis]


def _inside(positions: np.ndarray, source_size: int) -> np.ndarray:
    """Positions within half a voxel of the source grid: ``[-0.5, source_size - 0.5)``, the
    voxels ITK's (and :mod:`..grid`'s) resampling gives values."""
    return (positions >= -0.5) & (positions < source_size - 0.5)


def field_of_view(source: Geometry, source_shape, target: Geometry, target_shape, zero_slices=(0, 0)) -> np.ndarray:
    """Boolean ``target_shape`` mask of the target voxels inside the source grid (the scanner's
    field of view, where resampling gives values), less ``zero_slices`` (bottom, top) slices and
    the interpolation's ramp into them (up to the last non-zero slice's centre)."""
    inside = [_inside(_source_positions(source, target, target_shape[2 - axis], axis), source_shape[2 - axis])
              for axis in range(3)]
    bottom, top = zero_slices
    z_positions = _source_positions(source, target, target_shape[0], 2)
    if bottom:
        inside[2] &= z_positions >= bottom
    if top:
        inside[2] &= z_positions <= source_shape[0] - 1 - top
    return inside[2][:, None, None] & inside[1][None, :, None] & inside[0][None, None, :]


def _axis_operator(source: Geometry, source_size: int, target: Geometry, target_size: int,
                   axis: int) -> np.ndarray:
    """Cubic B-spline interpolation along one index axis as a (target_size x source_size) matrix,
    the same as ``scipy.ndimage.map_coordinates(order=3, mode="mirror")`` in 1D.

    Target voxels more than half a voxel outside the source grid get 0; weights below
    :data:`OPERATOR_FLOOR` are set to 0 (the prefilter's tails, which would be denormal numbers)."""
    positions = _source_positions(source, target, target_size, axis)
    coefficients = ndimage.spline_filter1d(np.eye(source_size), order=SPLINE_ORDER, axis=0, mode="mirror")
    first_tap = np.floor(positions).astype(int) - 1
    operator = np.zeros((target_size, source_size))
    for tap in range(4):
        indices = first_tap + tap
        operator += _cubic_bspline(positions - indices)[:, None] * coefficients[_mirror(indices, source_size)]
    operator[~_inside(positions, source_size)] = 0.0
    operator[np.abs(operator) < OPERATOR_FLOOR] = 0.0
    return operator.astype(np.float32)


def resample(volume: np.ndarray, source: Geometry, target: Geometry, target_shape) -> np.ndarray:
    """Reslice ``volume`` ([z, y, x], on ``source``) onto ``target`` (cubic B-spline, float32).

    Both grids must share the same diagonal direction (axis-aligned grids)."""
    if not (np.allclose(source.direction, target.direction)
            and np.allclose(source.direction, np.diag(np.diag(source.direction)))):
        raise ValueError("resample needs two axis-aligned grids with the same direction")
    result = np.asarray(volume, dtype=np.float32)
    # One matrix product per axis; axes that shrink go first, so intermediate arrays stay small.
    axes = sorted(range(3), key=lambda a: target_shape[a] / volume.shape[a])
    for axis in axes:
        operator = _axis_operator(source, volume.shape[axis], target, target_shape[axis], 2 - axis)
        result = np.moveaxis(np.tensordot(operator, result, axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(result)


def correlated_noise(shape, fwhm_mm, spacing_mm, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of unit variance, smoothed with a Gaussian of FWHM ``fwhm_mm`` (x, y, z)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    sigma_zyx = fwhm_to_sigma_voxels(fwhm_mm, spacing_mm)
    smoothed = ndimage.gaussian_filter(white, sigma_zyx, mode="wrap")
    variance = 1.0
    for sigma in sigma_zyx:
        impulse = np.zeros(2 * int(8 * sigma + 1) + 1)
        impulse[impulse.size // 2] = 1.0
        variance *= float(np.sum(ndimage.gaussian_filter1d(impulse, sigma, mode="constant") ** 2))
    smoothed /= np.float32(np.sqrt(variance))
    return smoothed


def scan(truth: np.ndarray, output: Geometry, geometry: Geometry, scanner: dict, reference_activity: float,
         rng_noise: np.random.Generator, zero_slices=(0, 0)) -> np.ndarray:
    """The PET on the scanner grid (float32, [z, y, x]) from the true activity.

    Args:
        truth: true activity on the output grid ``output``.
        geometry: the scanner grid (:func:`scanner_geometry`); scanner: choices from :func:`draw_scanner`.
        reference_activity: cerebellar GM activity, file units (sets the noise level).
        zero_slices: slices set to 0 at the bottom and top (zero-padded reconstructions).
    """
    blurred = gaussian_blur(truth, scanner["psf_fwhm_mm"], output.spacing)
    shape = tuple(scanner["matrix"][::-1])
    image = resample(blurred, output, geometry, shape)
    if scanner["relative_noise"] > 0.0:
        noise_fwhm = scanner["noise_correlation_psf_fraction"] * np.asarray(scanner["psf_fwhm_mm"])
        noise = correlated_noise(shape, noise_fwhm, geometry.spacing, rng_noise)
        variance_activity = np.maximum(image, np.float32(NOISE_FLOOR * reference_activity))
        noise *= np.float32(scanner["relative_noise"]) * np.sqrt(
            np.float32(reference_activity) * variance_activity)
        image += noise
        np.maximum(image, 0.0, out=image)
    bottom, top = zero_slices
    image[:bottom] = 0.0
    image[image.shape[0] - top:] = 0.0
    return image
