"""SSIM / RMSE as the study reports them, and the sharpen baseline."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from PETPartialVolumeCorrectionLib.baseline import sharpen
from PETPartialVolumeCorrectionLib.classical.psf import gaussian_blur
from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.metrics import rmse, ssim


@pytest.fixture
def phantom():
    volume = np.full((40, 40, 40), 1000.0, np.float32)
    volume[10:30, 10:30, 10:30] = 4000.0
    volume[18:22, 18:22, 18:22] = 8000.0
    return volume


def test_rmse_in_physical_units_and_within_a_mask(phantom):
    shifted = phantom + 30.0
    assert rmse(shifted, phantom) == pytest.approx(30.0)
    mask = np.zeros(phantom.shape, bool)
    mask[:5] = True
    shifted[:5] += 40.0
    assert rmse(shifted, phantom, mask) == pytest.approx(70.0)


def test_ssim_is_one_for_identical_volumes_and_independent_of_units(phantom):
    assert ssim(phantom, phantom) == pytest.approx(1.0)
    blurred = gaussian_blur(phantom, 6.0, (1.0, 1.0, 1.0))
    score = ssim(blurred, phantom)
    assert 0.5 < score < 0.999
    assert ssim(blurred * 37.0, phantom * 37.0) == pytest.approx(score, abs=1e-6)


def test_ssim_uses_scikit_image_on_reference_scaled_volumes(phantom):
    blurred = gaussian_blur(phantom, 6.0, (1.0, 1.0, 1.0))
    low, high = phantom.min(), phantom.max()
    expected = structural_similarity((blurred - low) / (high - low), (phantom - low) / (high - low), data_range=1.0)
    assert ssim(blurred, phantom) == pytest.approx(expected, rel=1e-5)


def test_masked_ssim_scores_only_the_mask(phantom):
    damaged = phantom.copy()
    damaged[:8] = 0.0  # damage far from the mask
    mask = np.zeros(phantom.shape, bool)
    mask[20:35] = True
    assert ssim(damaged, phantom, mask) == pytest.approx(1.0, abs=1e-6)
    assert ssim(damaged, phantom) < 0.9


def test_metrics_refuse_mismatched_shapes(phantom):
    with pytest.raises(PVCInputError, match="differ in shape"):
        rmse(phantom[:-1], phantom)


def test_sharpen_brightens_borders_and_keeps_flat_regions(phantom):
    sharpened = sharpen(phantom)
    assert sharpened.dtype == np.float32 and sharpened.shape == phantom.shape
    # Deep inside a flat region the filter changes nothing.
    assert sharpened[3, 3, 3] == pytest.approx(1000.0, rel=1e-3)
    # Across the edge of the bright cube, unsharp masking overshoots inside and undershoots outside.
    profile = sharpened[20, 20, 4:20]
    assert profile.max() > 4000.0 * 1.1
    assert profile.min() < 1000.0 * 0.8
    # Spacing is honoured: with 2 mm voxels the same mm sigmas act over half as many voxels.
    assert not np.allclose(sharpen(phantom, (2.0, 2.0, 2.0)), sharpened)
