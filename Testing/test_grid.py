"""The standard 1 mm 256^3 grid and the way back: checked in world coordinates."""

import numpy as np
import pytest

from conftest import blob_volume, centroid_world
from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.geometry import Geometry
from PETPartialVolumeCorrectionLib.grid import (resample_to_native_grid, resample_to_standard_grid,
                                                standard_grid_geometry)

SHAPE = (48, 64, 56)  # [z, y, x]
BLOB_CENTRE = (-20.0, 25.0, -10.0)  # LPS mm, inside the oblique field of view


def test_standard_grid_is_1mm_256_ras_ordered_and_centred(oblique_geometry):
    standard = standard_grid_geometry(SHAPE, oblique_geometry)
    assert standard.spacing == (1.0, 1.0, 1.0)
    # Arrays run left->right, posterior->anterior, inferior->superior (RAS), as the simulator's grid.
    np.testing.assert_allclose(standard.direction, np.diag([-1.0, -1.0, 1.0]))
    np.testing.assert_allclose(standard.world_center((256, 256, 256)), oblique_geometry.world_center(SHAPE),
                               atol=1e-9)


def test_blob_keeps_its_world_position_through_the_round_trip(oblique_geometry):
    volume = blob_volume(SHAPE, oblique_geometry, BLOB_CENTRE)
    assert np.linalg.norm(centroid_world(volume, oblique_geometry, 0.5) - BLOB_CENTRE) < 0.3

    standard, standard_geometry = resample_to_standard_grid(volume, oblique_geometry)
    assert standard.shape == (256, 256, 256) and standard.dtype == np.float32
    assert np.linalg.norm(centroid_world(standard, standard_geometry, 0.5) - BLOB_CENTRE) < 0.3

    back = resample_to_native_grid(standard, standard_geometry, SHAPE, oblique_geometry)
    assert back.shape == SHAPE
    assert np.linalg.norm(centroid_world(back, oblique_geometry, 0.5) - BLOB_CENTRE) < 0.3
    # Away from the border, values come back within the error of two linear interpolations
    # (about h^2 / 8 * |f''| each: 0.014 of the peak for h = 2 mm, sigma = 6 mm).
    interior = (slice(4, -4),) * 3
    assert np.max(np.abs(back[interior] - volume[interior])) < 0.05


def test_voxel_values_match_at_the_same_world_point(oblique_geometry):
    volume = blob_volume(SHAPE, oblique_geometry, BLOB_CENTRE, sigma_mm=12.0)
    standard, standard_geometry = resample_to_standard_grid(volume, oblique_geometry)
    # The blob's peak voxel in the standard grid sits at the world point of the peak.
    peak_index = np.unravel_index(np.argmax(standard), standard.shape)
    peak_world = standard_geometry.index_to_world() @ np.array([*peak_index[::-1], 1.0])
    assert np.linalg.norm(peak_world[:3] - BLOB_CENTRE) <= np.sqrt(3) * 0.5 + 1e-6


def test_field_of_view_wider_than_256_mm_is_refused_with_what_would_be_cut():
    geometry = Geometry((2.0, 2.0, 2.0))
    volume = np.ones((60, 150, 150), dtype=np.float32)  # 300 x 300 x 120 mm
    with pytest.raises(PVCInputError, match=r"x \(R-L\): 300 mm, 22 mm cut on each side.*27\.[0-9]% of the activity"):
        resample_to_standard_grid(volume, geometry)
    cropped, _ = resample_to_standard_grid(volume, geometry, crop_fov=True)
    assert cropped.shape == (256, 256, 256)


def test_wide_field_of_view_with_only_air_outside_is_accepted():
    geometry = Geometry((2.0, 2.0, 2.0))
    volume = np.zeros((60, 150, 150), dtype=np.float32)  # 300 mm wide, activity in the central 200 mm
    volume[10:50, 25:125, 25:125] = 1.0
    standard, _ = resample_to_standard_grid(volume, geometry)
    assert standard.sum() == pytest.approx(volume.sum() * 8.0, rel=0.01)  # 2 mm -> 1 mm voxels: x8


def test_noise_in_the_air_of_a_wide_field_of_view_is_not_counted_as_activity():
    """A head in the central 200 mm of a 300 mm field of view, with reconstruction noise in the air
    (1 % of the head's uptake per voxel, positive): the noise at the edges adds up to several % of
    all positive values, but none of it is above the noise floor, so nothing is refused."""
    rng = np.random.default_rng(5)
    geometry = Geometry((2.0, 2.0, 2.0))
    volume = np.abs(rng.normal(0.0, 0.01, (60, 150, 150))).astype(np.float32)
    volume[10:50, 25:125, 25:125] = 1.0
    edges = np.ones(volume.shape, bool)
    edges[:, 22:128, 22:128] = False
    assert volume[edges].sum() / volume.sum() > 0.005  # what the check counted before the floor
    standard, _ = resample_to_standard_grid(volume, geometry)
    assert standard.shape == (256, 256, 256)
    volume[20:40, 0:12, 30:120] = 0.5  # real activity (a shoulder) beyond the grid is still refused
    with pytest.raises(PVCInputError, match="of the activity lies there"):
        resample_to_standard_grid(volume, geometry)


@pytest.mark.parametrize("direction", [np.diag([-1.0, -1.0, 1.0]), np.eye(3), np.diag([1.0, -1.0, -1.0])])
def test_numpy_linear_path_for_axis_aligned_grids_gives_simpletks_values(direction):
    """Axis-aligned grids (every simulated scanner grid) are resampled in numpy: the same values as
    SimpleITK's linear interpolation, edges (clamped neighbours, 0 outside) included."""
    import SimpleITK as sitk

    from PETPartialVolumeCorrectionLib.grid import _resample_axis_aligned_linear
    from PETPartialVolumeCorrectionLib.io import to_sitk_image

    volume = np.random.default_rng(0).random((30, 40, 36)).astype(np.float32)
    geometry = Geometry((2.06, 2.0, 2.43), (3.3, -1.7, -30.2), direction)
    target = Geometry((1.0, 1.0, 1.0), (40.5, 50.5, -55.5), np.diag([-1.0, -1.0, 1.0]))
    shape = (96, 100, 90)
    ours = _resample_axis_aligned_linear(volume, geometry, shape, target)
    reference = sitk.Image(list(shape[::-1]), sitk.sitkFloat32)
    reference.SetSpacing(target.spacing)
    reference.SetOrigin(target.origin)
    reference.SetDirection(tuple(target.direction.ravel()))
    expected = sitk.GetArrayFromImage(sitk.Resample(to_sitk_image(volume, geometry), reference, sitk.Transform(),
                                                    sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    assert np.count_nonzero(expected == 0) > 0.2 * expected.size  # the target reaches past the source
    np.testing.assert_allclose(ours, expected, atol=1e-6)
