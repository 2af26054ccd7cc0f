"""The founding study's standard grid (1 mm isotropic, 256^3) and the way back to the input's grid.

The standard grid is axis-aligned and RAS-ordered like MNI templates and SPM reslices (array
``[z, y, x]`` runs inferior->superior, posterior->anterior, left->right; in ITK's LPS terms the
direction is diag(-1, -1, 1)), 1 mm voxels, 256 voxels per axis, centred on the physical centre of
the input image. It overlays the input exactly in world coordinates whatever the input's direction
cosines (oblique or flipped) and voxel size, and it is the orientation the network is trained in
(the simulator's grid).
"""

from __future__ import annotations

import numpy as np

from .errors import PVCInputError
from .geometry import Geometry

STANDARD_SPACING_MM = 1.0
STANDARD_SIZE = 256
#: Direction cosines (LPS columns of the i, j, k axes) of the standard grid: RAS-ordered arrays.
STANDARD_DIRECTION = np.diag([-1.0, -1.0, 1.0])


def standard_grid_geometry(shape_zyx, geometry: Geometry, size: int = STANDARD_SIZE,
                           spacing_mm: float = STANDARD_SPACING_MM) -> Geometry:
    """Geometry of the standard grid for an input of ``shape_zyx`` voxels and ``geometry``."""
    centre = geometry.world_center(shape_zyx)
    half_extent = (size - 1) / 2.0 * spacing_mm
    origin = centre - STANDARD_DIRECTION @ np.full(3, half_extent)
    return Geometry((spacing_mm,) * 3, tuple(origin), STANDARD_DIRECTION)


def world_bounding_box(shape_zyx, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest world (LPS, mm) coordinates covered by the image's voxels (outer faces)."""
    corners_ijk = np.array([[i, j, k] for i in (-0.5, shape_zyx[2] - 0.5)
                            for j in (-0.5, shape_zyx[1] - 0.5) for k in (-0.5, shape_zyx[0] - 0.5)])
    matrix = geometry.index_to_world()
    corners_world = corners_ijk @ matrix[:3, :3].T + matrix[:3, 3]
    return corners_world.min(axis=0), corners_world.max(axis=0)


#: Share of the image's activity that may lie outside the standard grid and be cut without asking:
#: scanners' fields of view are often wider than 256 mm, with only air at the edges.
MAX_CUT_ACTIVITY_FRACTION = 0.005
#: A voxel counts as activity when above this fraction of the image's 99.9th percentile; below it is
#: the noise of reconstructed air (a few % of the brain's uptake), which would otherwise add up, over
#: the many voxels at the edges of a wide field of view, to more than the cut allowed.
NOISE_FLOOR_FRACTION = 0.05


def noise_floor(volume: np.ndarray) -> float:
    """The level (the volume's units) below which a voxel is taken for noise: see :data:`NOISE_FLOOR_FRACTION`."""
    return NOISE_FLOOR_FRACTION * max(float(np.percentile(volume, 99.9)), 0.0)


def activity_outside_grid(volume: np.ndarray, geometry: Geometry, grid: Geometry,
                          size: int = STANDARD_SIZE) -> float:
    """Fraction of ``volume``'s activity above the noise floor (:func:`noise_floor`) in voxels whose
    centres fall outside ``grid``."""
    to_grid_index = np.linalg.inv(grid.index_to_world()) @ geometry.index_to_world()
    j, i = np.meshgrid(np.arange(volume.shape[1]), np.arange(volume.shape[2]), indexing="ij")
    floor = noise_floor(volume)
    outside_sum = total_sum = 0.0
    for k in range(volume.shape[0]):  # slice by slice: no full-volume coordinate arrays
        activity = np.where(volume[k] > floor, volume[k], 0.0)
        ijk = np.stack([i, j, np.full_like(i, k), np.ones_like(i)]).reshape(4, -1)
        grid_index = (to_grid_index @ ijk)[:3]
        outside = np.any((grid_index < -0.5) | (grid_index > size - 0.5), axis=0).reshape(i.shape)
        outside_sum += float(activity[outside].sum())
        total_sum += float(activity.sum())
    return outside_sum / max(total_sum, np.finfo(float).tiny)


def check_field_of_view(volume: np.ndarray, geometry: Geometry, size: int = STANDARD_SIZE,
                        spacing_mm: float = STANDARD_SPACING_MM) -> None:
    """Raise :class:`PVCInputError` when the image extends beyond the standard grid and more than
    :data:`MAX_CUT_ACTIVITY_FRACTION` of its activity would be cut, saying how much (mm on each side
    per axis, share of the activity)."""
    low, high = world_bounding_box(volume.shape, geometry)
    extent = high - low
    over = extent - size * spacing_mm
    if not np.any(over > 0.5 * spacing_mm):
        return
    cut_fraction = activity_outside_grid(volume, geometry, standard_grid_geometry(volume.shape, geometry,
                                                                                  size, spacing_mm), size)
    if cut_fraction > MAX_CUT_ACTIVITY_FRACTION:
        cut = ", ".join(f"{axis}: {extent[n]:.0f} mm, {over[n] / 2:.0f} mm cut on each side"
                        for n, axis in enumerate(("x (R-L)", "y (A-P)", "z (I-S)")) if over[n] > 0.5 * spacing_mm)
        raise PVCInputError(f"field of view is larger than the {size * spacing_mm:.0f} mm standard grid ({cut}) "
                            f"and {cut_fraction:.1%} of the activity lies there; crop the image to the head, "
                            "or pass --crop-fov to cut it centred")


def _is_axis_aligned(geometry: Geometry) -> bool:
    """True when every index axis runs along a world axis (direction diagonal, entries +/-1)."""
    return bool(np.array_equal(np.abs(geometry.direction), np.eye(3)))


def _linear_axis_operator(source: Geometry, source_size: int, target: Geometry, target_size: int,
                          axis: int) -> np.ndarray:
    """ITK's linear interpolation along index axis ``axis`` (0 = x) as a (target_size x
    source_size) matrix: neighbours clamped to the edge voxels, 0 for target voxels whose source
    position lies outside ``[-0.5, source_size - 0.5)``."""
    source_step = source.direction[axis, axis] * source.spacing[axis]
    target_step = target.direction[axis, axis] * target.spacing[axis]
    positions = (target.origin[axis] - source.origin[axis] + np.arange(target_size) * target_step) / source_step
    base = np.floor(positions)
    fraction = positions - base
    rows = np.arange(target_size)
    operator = np.zeros((target_size, source_size))
    np.add.at(operator, (rows, np.clip(base, 0, source_size - 1).astype(int)), 1.0 - fraction)
    np.add.at(operator, (rows, np.clip(base + 1, 0, source_size - 1).astype(int)), fraction)
    operator[(positions < -0.5) | (positions >= source_size - 0.5)] = 0.0
    return operator.astype(np.float32)


def _resample_axis_aligned_linear(volume: np.ndarray, geometry: Geometry, target_shape_zyx,
                                  target_geometry: Geometry) -> np.ndarray:
    """Linear resampling between axis-aligned grids, one matrix product per axis (numpy only, the
    same values as SimpleITK's to float32 rounding)."""
    result = np.asarray(volume, dtype=np.float32)
    # Axes that shrink go first, so intermediate arrays stay small.
    for axis in sorted(range(3), key=lambda a: target_shape_zyx[a] / volume.shape[a]):
        operator = _linear_axis_operator(geometry, volume.shape[axis], target_geometry,
                                         int(target_shape_zyx[axis]), 2 - axis)
        result = np.moveaxis(np.tensordot(operator, result, axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(result)


def _resample(volume: np.ndarray, geometry: Geometry, target_shape_zyx, target_geometry: Geometry,
              interpolation: str) -> np.ndarray:
    """Resample onto ``target_geometry``. Linear between axis-aligned grids (most PET files, and
    every simulated scanner grid) is done in numpy, so the simulator's training input needs no
    SimpleITK; everything else by SimpleITK."""
    if interpolation == "linear" and _is_axis_aligned(geometry) and _is_axis_aligned(target_geometry):
        return _resample_axis_aligned_linear(volume, geometry, target_shape_zyx, target_geometry)
    import SimpleITK as sitk

    from .io import to_sitk_image

    reference = sitk.Image([int(s) for s in target_shape_zyx[::-1]], sitk.sitkFloat32)
    reference.SetSpacing(target_geometry.spacing)
    reference.SetOrigin(target_geometry.origin)
    reference.SetDirection(tuple(target_geometry.direction.ravel()))
    interpolator = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor,
                    "bspline": sitk.sitkBSpline}[interpolation]
    source = to_sitk_image(volume.astype(np.float32, copy=False), geometry)
    resampled = sitk.Resample(source, reference, sitk.Transform(), interpolator, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled)


def resample_to_standard_grid(volume: np.ndarray, geometry: Geometry, crop_fov: bool = False,
                              interpolation: str = "linear", size: int = STANDARD_SIZE,
                              spacing_mm: float = STANDARD_SPACING_MM) -> tuple[np.ndarray, Geometry]:
    """Resample ``volume`` (``[z, y, x]``, any units) onto the 1 mm 256^3 standard grid.

    Voxels of the grid outside the input are 0. Raises :class:`PVCInputError` when the input's field
    of view exceeds 256 mm along an axis with activity (not just air) beyond, unless ``crop_fov``.
    ``size`` and ``spacing_mm`` change the grid (the simulator's small test grids); the network's
    grid is the default.

    Returns:
        float32 array of shape (size, size, size) and the standard grid's geometry.
    """
    if not crop_fov:
        check_field_of_view(volume, geometry, size, spacing_mm)
    target = standard_grid_geometry(volume.shape, geometry, size, spacing_mm)
    return _resample(volume, geometry, (size,) * 3, target, interpolation), target


def resample_to_native_grid(volume: np.ndarray, geometry: Geometry, native_shape_zyx,
                            native_geometry: Geometry, interpolation: str = "linear") -> np.ndarray:
    """Resample ``volume`` (e.g. a result on the standard grid) back onto the input's own grid."""
    return _resample(volume, geometry, native_shape_zyx, native_geometry, interpolation)
