"""A subject's anatomy: the template moved, deformed and optionally atrophied, on the output grid.

Each output voxel looks up the template through one backward map (template index, mm, from the
output position), built from:
1. the brain centred in the grid, then a random affine: rotation about x, y, z, scale per axis,
   translation;
2. a smooth elastic displacement: cubic B-spline of random control vectors (Gaussian, SD
   ``elastic_amplitude_mm``) on a ``elastic_control_spacing_mm`` lattice;
3. optional left/right asymmetry: one hemisphere scaled across the midline by up to
   ``hemisphere_scale_max``;
4. optional atrophy: ventricles enlarged by a radial displacement about their centre (factor
   ``1 / (1 - enlargement)`` at the centre), and cortex thinned: grey matter next to CSF becomes
   CSF (the moved fraction is ``thinning`` x the CSF map smoothed over 1 mm).
Tissue maps are sampled trilinearly; each voxel's region is the most probable tissue (background,
scalp, skull, CSF, GM, WM) and, for GM and WM, the template's nearest atlas region there; scalp and
skull voxels take the template's extra-cerebral structure there (:mod:`.head`; sinus air is
background).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..geometry import Geometry
from . import head, regions
from .templates import LABEL_CODE_BASE, AnatomyTemplates

#: Direction of the output grid in LPS: x towards the subject's right, y anterior, z superior,
#: i.e. the identity in RAS, as the MNI templates (NIfTI affine diagonal positive).
RAS_DIRECTION = np.diag([-1.0, -1.0, 1.0])

#: Tissue classes in the order used to pick the most probable one (earlier wins ties).
TISSUE_CLASSES = ("background", "scalp", "skull", "csf", "gm", "wm")

#: Width of the smooth step that separates the hemispheres for the asymmetry, mm.
MIDLINE_STEP_MM = 8.0
#: RMS of a cubic B-spline field over space per unit SD of its control values: sqrt((151/315)^3).
BSPLINE_RMS_PER_CONTROL_SD = float(np.sqrt((151.0 / 315.0) ** 3))
#: Radius (Gaussian SD) of the ventricle enlargement, mm.
VENTRICLE_RADIUS_MM = 22.0
#: SD of the smoothing of the CSF map that decides which grey matter atrophy removes, mm.
THINNING_SMOOTHING_MM = 1.0


@dataclass
class Anatomy:
    """Tissue maps and regions of one subject on the output grid (arrays ``[z, y, x]``)."""

    gm: np.ndarray  # float32 probability
    wm: np.ndarray
    csf: np.ndarray
    labels: np.ndarray  # int16, FreeSurfer ids (see regions)
    brain_mask: np.ndarray  # bool, intracranial (GM, WM or CSF region)
    geometry: Geometry


def output_geometry(grid_size: int, spacing_mm: float) -> Geometry:
    """The output grid: ``grid_size``^3 voxels of ``spacing_mm``, centred on world (0, 0, 0)."""
    half_extent = (grid_size - 1) / 2.0 * spacing_mm
    origin = -RAS_DIRECTION @ np.full(3, half_extent)
    return Geometry((spacing_mm,) * 3, tuple(origin), RAS_DIRECTION)


def draw_anatomy_parameters(rng: np.random.Generator, settings) -> dict:
    """Random choices of the spatial transform (JSON-ready; per-axis values in (x, y, z) order)."""
    parameters = {
        "source": settings.anatomy_sources[int(rng.integers(len(settings.anatomy_sources)))],
        "rotation_deg": rng.uniform(-settings.rotation_max_deg, settings.rotation_max_deg, 3).tolist(),
        "scale": rng.uniform(*settings.scale_range, 3).tolist(),
        "translation_mm": rng.uniform(-settings.translation_max_mm, settings.translation_max_mm, 3).tolist(),
        "elastic_amplitude_mm": float(rng.uniform(*settings.elastic_amplitude_mm)),
        "elastic_control_spacing_mm": float(settings.elastic_control_spacing_mm),
        "hemisphere_scale": 0.0, "ventricle_enlargement": 0.0, "cortical_thinning": 0.0,
    }
    if rng.uniform() < settings.asymmetry_probability:
        parameters["hemisphere_scale"] = float(rng.uniform(-settings.hemisphere_scale_max,
                                                           settings.hemisphere_scale_max))
    if rng.uniform() < settings.atrophy_probability:
        parameters["ventricle_enlargement"] = float(rng.uniform(*settings.ventricle_enlargement))
        parameters["cortical_thinning"] = float(rng.uniform(*settings.cortical_thinning))
    return parameters


def _rotation_zyx(angles_xyz_deg) -> np.ndarray:
    """Rotation matrix acting on ``(z, y, x)`` vectors, from angles about x, y, z (degrees)."""
    ax, ay, az = np.deg2rad(angles_xyz_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rotation_xyz = rz @ ry @ rx
    flip = np.eye(3)[::-1]  # (x, y, z) <-> (z, y, x)
    return flip @ rotation_xyz @ flip


def bspline_basis(positions_mm: np.ndarray, control_spacing_mm: float, n_control: int) -> np.ndarray:
    """Cubic B-spline weights (len(positions) x n_control) of control points 1 spacing apart,
    the first one spacing before position 0."""
    u = positions_mm[:, None] / control_spacing_mm + 1.0 - np.arange(n_control)[None, :]
    t = np.abs(u)
    return np.where(t < 1, (4 - 6 * t**2 + 3 * t**3) / 6,
                    np.where(t < 2, (2 - t) ** 3 / 6, 0.0)).astype(np.float32)


def smooth_random_field(rng: np.random.Generator, grid_size: int, spacing_mm: float,
                        control_spacing_mm: float) -> np.ndarray:
    """A smooth random field on the ``grid_size``^3 grid: a cubic B-spline of standard normal
    control values on a lattice ``control_spacing_mm`` apart (float32, ``[z, y, x]``)."""
    positions = np.arange(grid_size) * spacing_mm
    n_control = int(np.ceil(positions[-1] / control_spacing_mm)) + 3
    basis = bspline_basis(positions, control_spacing_mm, n_control)
    values = rng.standard_normal((n_control,) * 3).astype(np.float32)
    # Separable evaluation: contract the x, then y, then z control axes.
    field = np.tensordot(values, basis, axes=([2], [1]))          # (cz, cy, x)
    field = np.tensordot(field, basis, axes=([1], [1]))           # (cz, x, y)
    field = np.tensordot(basis, field, axes=([1], [0]))           # (z, x, y)
    return np.ascontiguousarray(field.transpose(0, 2, 1))


def affine_elastic_coordinates(templates: AnatomyTemplates, parameters: dict, grid_size: int,
                               spacing_mm: float, rng_elastic: np.random.Generator) -> np.ndarray:
    """Template index (z, y, x) of each output voxel under the affine and elastic parts of the
    backward map: float32 array of shape (3, n, n, n)."""
    centre = (grid_size - 1) / 2.0
    axis_mm = ((np.arange(grid_size) - centre) * spacing_mm).astype(np.float32)
    rotation = _rotation_zyx(parameters["rotation_deg"])
    scale_zyx = np.asarray(parameters["scale"], dtype=float)[::-1]
    inverse_linear = (np.diag(1.0 / scale_zyx) @ rotation.T).astype(np.float32)
    translation_zyx = np.asarray(parameters["translation_mm"], dtype=np.float32)[::-1]
    control_sd = np.float32(parameters["elastic_amplitude_mm"] / BSPLINE_RMS_PER_CONTROL_SD)
    grids = np.meshgrid(axis_mm, axis_mm, axis_mm, indexing="ij", sparse=True)
    moved = []
    for axis in range(3):
        field = smooth_random_field(rng_elastic, grid_size, spacing_mm,
                                    parameters["elastic_control_spacing_mm"])
        field *= control_sd
        field += grids[axis] - translation_zyx[axis]
        moved.append(field)
    brain_center = np.asarray(templates.brain_center, dtype=np.float32)
    coordinates = np.empty((3, grid_size, grid_size, grid_size), dtype=np.float32)
    for row in range(3):
        np.multiply(moved[0], inverse_linear[row, 0], out=coordinates[row])
        coordinates[row] += inverse_linear[row, 1] * moved[1]
        coordinates[row] += inverse_linear[row, 2] * moved[2]
        coordinates[row] += brain_center[row]
    return coordinates


def _apply_asymmetry(coordinates: np.ndarray, midline_x: float, hemisphere_scale: float) -> None:
    """Scale the hemisphere at larger x by ``1 + hemisphere_scale`` across the midline, in place.

    ``coordinates``: template indices (z, y, x) along the first axis, any shape after it."""
    if hemisphere_scale == 0.0:
        return
    offset = coordinates[2] - midline_x
    step = 0.5 * (1.0 + np.tanh(offset / MIDLINE_STEP_MM))
    coordinates[2] -= (hemisphere_scale / (1.0 + hemisphere_scale)) * offset * step


def _apply_ventricle_enlargement(coordinates: np.ndarray, centre: np.ndarray, enlargement: float) -> None:
    """Pull the sampling towards the ventricles' centre (they look larger), in place."""
    if enlargement == 0.0:
        return
    offsets = [coordinates[a] - centre[a] for a in range(3)]
    weight = enlargement * np.exp(-(offsets[0]**2 + offsets[1]**2 + offsets[2]**2)
                                  / (2.0 * VENTRICLE_RADIUS_MM**2))
    for a in range(3):
        coordinates[a] -= weight * offsets[a]


def _sample(template_map: np.ndarray, points: np.ndarray, inside: np.ndarray, order: int,
            dtype) -> np.ndarray:
    """Template values at ``points`` (3, m) placed at the ``inside`` voxels of an output array."""
    sampled = np.zeros(inside.shape, dtype=dtype)
    sampled[inside] = ndimage.map_coordinates(template_map, points, order=order, mode="constant",
                                              cval=0, output=dtype)
    return sampled


def _thin_cortex(tissue: dict, thinning: float, spacing_mm: float) -> None:
    """Turn grey matter that borders CSF into CSF, in place."""
    if thinning == 0.0:
        return
    near_csf = ndimage.gaussian_filter(tissue["csf"], THINNING_SMOOTHING_MM / spacing_mm)
    moved = tissue["gm"] * np.clip(thinning * near_csf, 0.0, 1.0)
    tissue["gm"] -= moved
    tissue["csf"] += moved


def _most_probable_tissue(tissue: dict) -> np.ndarray:
    """Index into TISSUE_CLASSES of the most probable class per voxel (uint8)."""
    others = tissue["scalp"] + tissue["skull"] + tissue["csf"] + tissue["gm"] + tissue["wm"]
    best = np.clip(1.0 - others, 0.0, None)
    classes = np.zeros(best.shape, dtype=np.uint8)
    for index, name in enumerate(TISSUE_CLASSES[1:], start=1):
        better = tissue[name] > best
        classes[better] = index
        np.maximum(best, tissue[name], out=best)
    return classes


def build_anatomy(templates: AnatomyTemplates, parameters: dict, grid_size: int, spacing_mm: float,
                  rng_elastic: np.random.Generator) -> Anatomy:
    """Warp the templates onto the output grid with the given random choices."""
    coordinates = affine_elastic_coordinates(templates, parameters, grid_size, spacing_mm, rng_elastic)
    # Only voxels that land near the head need the (slow) sampling; the rest is background.
    inside = ndimage.map_coordinates(templates.support, coordinates, order=0, mode="constant",
                                     cval=0, output=np.uint8).astype(bool)
    points = coordinates[:, inside]
    del coordinates
    _apply_asymmetry(points, templates.brain_center[2], parameters["hemisphere_scale"])
    _apply_ventricle_enlargement(points, np.asarray(templates.ventricle_center),
                                 parameters["ventricle_enlargement"])
    tissue = {}
    for name in ("gm", "wm", "csf", "skull", "scalp"):
        tissue[name] = _sample(templates.tissue[name], points, inside, 1, np.float32)
        tissue[name] *= np.float32(1.0 / 255.0)
    codes = _sample(templates.label_codes, points, inside, 0, np.int32)
    structures = _sample(templates.structures, points, inside, 0, np.int16)
    del points
    _thin_cortex(tissue, parameters["cortical_thinning"], spacing_mm)

    classes = _most_probable_tissue(tissue)
    labels = np.zeros(classes.shape, dtype=np.int16)
    labels[classes == TISSUE_CLASSES.index("scalp")] = regions.HEAD_EXTRACEREBRAL
    labels[classes == TISSUE_CLASSES.index("skull")] = regions.SKULL
    outside_skull = (classes == TISSUE_CLASSES.index("scalp")) | (classes == TISSUE_CLASSES.index("skull"))
    in_structure = outside_skull & (structures > head.AIR)
    labels[in_structure] = structures[in_structure]
    labels[outside_skull & (structures == head.AIR)] = regions.BACKGROUND
    labels[classes == TISSUE_CLASSES.index("csf")] = regions.CSF
    is_gm = classes == TISSUE_CLASSES.index("gm")
    is_wm = classes == TISSUE_CLASSES.index("wm")
    labels[is_gm] = codes[is_gm] // LABEL_CODE_BASE
    labels[is_wm] = codes[is_wm] % LABEL_CODE_BASE
    brain_mask = classes >= TISSUE_CLASSES.index("csf")
    return Anatomy(tissue["gm"], tissue["wm"], tissue["csf"], labels, brain_mask,
                   output_geometry(grid_size, spacing_mm))
