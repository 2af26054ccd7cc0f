"""Intensity normalisation: the brain-based crop (format 2 cards), the study's global min-max
(format 1 cards), and their exact inverse."""

import numpy as np
import pytest
from scipy import ndimage

from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.intensity import (BRAIN_CROP_PERCENTILE, NETWORK_CROP_LEVEL,
                                                     IntensityScaling, find_brain_mask)


@pytest.fixture
def pet():
    rng = np.random.default_rng(7)
    return (rng.gamma(2.0, 3000.0, size=(32, 32, 32)) + 50.0).astype(np.float32)  # Bq/mL-like


def ellipsoid(shape, centre, radii):
    z, y, x = np.ogrid[tuple(slice(0, side) for side in shape)]
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 \
        + ((x - centre[2]) / radii[2]) ** 2 <= 1.0


@pytest.fixture(scope="module")
def head():
    """A blurred 96^3 head, 1 mm voxels [z, y, x]: scalp, a brain with a bright white-matter core,
    a neck below it, noise. Returns (pet, brain ellipsoid, brain-free parts: neck slab rows)."""
    shape = (96, 96, 96)
    truth = np.zeros(shape, np.float32)
    truth[ellipsoid(shape, (56, 48, 48), (34, 40, 34))] = 300.0           # scalp and skull
    brain = ellipsoid(shape, (58, 48, 48), (28, 34, 28))
    truth[brain] = 1000.0                                                # grey matter
    truth[ellipsoid(shape, (58, 48, 48), (18, 24, 18))] = 2000.0         # white matter
    neck = np.zeros(shape, bool)
    neck[:24] = ellipsoid(shape, (12, 52, 48), (40, 16, 16))[:24]
    truth[neck] = 400.0
    rng = np.random.default_rng(0)
    pet = ndimage.gaussian_filter(truth, 2.5) * rng.normal(1.0, 0.05, shape).astype(np.float32)
    return pet.astype(np.float32), brain


def test_brain_percentile_crop_maps_the_brain_percentile_to_the_network_level(head):
    pet, brain = head
    scaling = IntensityScaling.fit(pet)
    found = find_brain_mask(pet)
    assert found.converged and scaling.brain_converged
    assert np.mean(brain[found.mask]) > 0.99 and 0.3 < found.mask.sum() / brain.sum() < 1.0
    assert scaling.crop_value == pytest.approx(np.percentile(pet[found.mask], BRAIN_CROP_PERCENTILE), rel=1e-6)
    normalised = scaling.normalise(pet)
    assert normalised.max() == pytest.approx(NETWORK_CROP_LEVEL, rel=1e-6)
    assert scaling.offset == 0.0 and scaling.brain_voxels == found.mask.sum()


def test_hot_spots_outside_the_brain_and_the_neck_do_not_move_the_network_input(head):
    pet, brain = head
    reference = IntensityScaling.fit(pet)
    hot = pet.copy()
    blob = ellipsoid(pet.shape, (14, 30, 48), (5, 5, 5))                    # 1 cm below the brain
    hot += ndimage.gaussian_filter(np.where(blob, 20 * 1000.0, 0.0).astype(np.float32), 2.5)
    no_neck = pet.copy()
    no_neck[:20] = 0.0
    for changed in (hot, no_neck):
        scaling = IntensityScaling.fit(changed)
        assert scaling.crop_value == pytest.approx(reference.crop_value, rel=1e-3)
        np.testing.assert_allclose(scaling.normalise(changed)[brain], reference.normalise(pet)[brain],
                                   rtol=1e-3, atol=1e-6)
    # The study's global min-max is moved by the hot spot: the reason for the brain-based crop.
    assert IntensityScaling.fit(hot, "global_minmax").scale > 5 * IntensityScaling.fit(pet, "global_minmax").scale


@pytest.mark.parametrize("method", ["brain_percentile", "global_minmax"])
def test_restore_inverts_normalise_and_the_target_normalisation_exactly(head, method):
    pet, _ = head
    scaling = IntensityScaling.fit(pet, method)
    np.testing.assert_allclose(scaling.restore(scaling.normalise(pet), pet), pet, rtol=2e-6, atol=0.01)
    target = pet * 1.3 - 20.0
    np.testing.assert_allclose(scaling.restore(scaling.normalise_target(target, pet), pet), target,
                               rtol=2e-6, atol=0.01)


@pytest.mark.parametrize("method", ["brain_percentile", "global_minmax"])
def test_scaling_is_invariant_to_the_global_activity_scale(head, method):
    pet, _ = head
    np.testing.assert_allclose(IntensityScaling.fit(pet, method).normalise(pet),
                               IntensityScaling.fit(pet * 250.0, method).normalise(pet * 250.0), atol=1e-6)


def test_global_minmax_crop_level_is_the_99th_percentile(pet):
    scaling = IntensityScaling.fit(pet, "global_minmax")
    normalised = scaling.normalise(pet)
    expected_crop = (np.percentile(pet, 99) - pet.min()) / (pet.max() - pet.min())
    assert scaling.crop_level == pytest.approx(expected_crop, rel=1e-6)
    assert normalised.min() == pytest.approx(0.0, abs=1e-7)
    assert normalised.max() == pytest.approx(expected_crop, rel=1e-6)
    assert np.mean(normalised >= scaling.crop_level - 1e-7) == pytest.approx(0.01, abs=0.002)


def test_constant_empty_and_unknown_inputs_are_refused():
    with pytest.raises(PVCInputError, match="constant"):
        IntensityScaling.fit(np.full((8, 8, 8), 3.0))
    nearly_empty = np.zeros((10, 10, 10))
    nearly_empty[0, 0, :5] = 1.0
    with pytest.raises(PVCInputError, match="almost empty"):
        IntensityScaling.fit(nearly_empty, "global_minmax")
    with pytest.raises(PVCInputError, match="no brain"):
        IntensityScaling.fit(-np.random.default_rng(0).random((32, 32, 32)))
    with pytest.raises(PVCInputError, match="unknown intensity normalisation"):
        IntensityScaling.fit(np.random.default_rng(0).random((8, 8, 8)), "zscore")
