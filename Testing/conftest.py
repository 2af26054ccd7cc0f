"""Shared fixtures: small synthetic PET volumes with oblique, anisotropic geometry."""

import numpy as np
import pytest

from PETPartialVolumeCorrectionLib.geometry import Geometry
from PETPartialVolumeCorrectionLib.model import ModelConfig, build_model, save_model


def rotation_matrix(axis, angle_degrees) -> np.ndarray:
    """Proper rotation about ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    angle = np.deg2rad(angle_degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


@pytest.fixture
def oblique_geometry() -> Geometry:
    """An oblique, anisotropic grid with a flipped axis, as scanners and NIfTI files produce."""
    direction = rotation_matrix((1.0, 2.0, 0.5), 23.0) @ np.diag([1.0, -1.0, 1.0])
    return Geometry((2.0, 1.5, 2.5), (-70.0, 40.0, -55.0), direction)


def blob_volume(shape_zyx, geometry: Geometry, centre_world, sigma_mm=6.0, background=0.1) -> np.ndarray:
    """A Gaussian blob at ``centre_world`` (LPS mm) on ``geometry``'s grid, float32 ``[z, y, x]``."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape_zyx), indexing="ij")
    ijk = np.stack([i, j, k], axis=-1).astype(float)
    matrix = geometry.index_to_world()
    world = ijk @ matrix[:3, :3].T + matrix[:3, 3]
    distance2 = np.sum((world - np.asarray(centre_world)) ** 2, axis=-1)
    return (background + np.exp(-distance2 / (2 * sigma_mm ** 2))).astype(np.float32)


def centroid_world(volume: np.ndarray, geometry: Geometry, threshold: float) -> np.ndarray:
    """Intensity-weighted centroid (LPS mm) of the voxels above ``threshold``."""
    weights = np.where(volume > threshold, volume - threshold, 0.0)
    k, j, i = np.nonzero(weights)
    w = weights[k, j, i]
    ijk = np.stack([i, j, k], axis=-1).astype(float)
    matrix = geometry.index_to_world()
    world = ijk @ matrix[:3, :3].T + matrix[:3, 3]
    return (world * w[:, None]).sum(axis=0) / w.sum()


def save_identity_model(folder, name: str = "tiny-untrained-test-model"):
    """Save a tiny untrained ResUNet as a real model folder: its zero-initialised head makes it the
    identity. Returns ``folder``."""
    config = ModelConfig(depth=1, base_filters=4, max_filters=8, norm_groups=2)
    save_model(build_model(config), folder, {"name": name, "architecture": config.to_dict()})
    return folder
