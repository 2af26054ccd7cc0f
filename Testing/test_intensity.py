"""The study's normalisation (min-max, then 99th-percentile crop) and its inverse."""

import numpy as np
import pytest

from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.intensity import IntensityScaling


@pytest.fixture
def pet():
    rng = np.random.default_rng(7)
    return (rng.gamma(2.0, 3000.0, size=(32, 32, 32)) + 50.0).astype(np.float32)  # Bq/mL-like


def test_normalised_range_and_crop_level_is_the_99th_percentile(pet):
    scaling = IntensityScaling.fit(pet)
    normalised = scaling.normalise(pet)
    expected_crop = (np.percentile(pet, 99) - pet.min()) / (pet.max() - pet.min())
    assert scaling.crop_level == pytest.approx(expected_crop, rel=1e-6)
    assert normalised.min() == pytest.approx(0.0, abs=1e-7)
    assert normalised.max() == pytest.approx(expected_crop, rel=1e-6)
    assert np.mean(normalised >= scaling.crop_level - 1e-7) == pytest.approx(0.01, abs=0.002)


def test_restore_inverts_normalise_exactly_including_cropped_voxels(pet):
    scaling = IntensityScaling.fit(pet)
    np.testing.assert_allclose(scaling.restore(scaling.normalise(pet), pet), pet, rtol=2e-6, atol=0.05)


def test_target_normalisation_round_trips(pet):
    scaling = IntensityScaling.fit(pet)
    target = pet * 1.3 - 20.0
    np.testing.assert_allclose(scaling.restore(scaling.normalise_target(target, pet), pet), target,
                               rtol=2e-6, atol=0.05)


def test_scaling_is_invariant_to_the_global_activity_scale(pet):
    assert np.allclose(IntensityScaling.fit(pet).normalise(pet),
                       IntensityScaling.fit(pet * 250.0).normalise(pet * 250.0), atol=1e-6)


def test_constant_and_nearly_empty_images_are_refused():
    with pytest.raises(PVCInputError, match="constant"):
        IntensityScaling.fit(np.full((8, 8, 8), 3.0))
    nearly_empty = np.zeros((10, 10, 10))
    nearly_empty[0, 0, :5] = 1.0
    with pytest.raises(PVCInputError, match="almost empty"):
        IntensityScaling.fit(nearly_empty)
