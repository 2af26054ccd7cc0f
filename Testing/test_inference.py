"""Patch inference: tile positions, Gaussian blending, identity, empty windows, batches, cancel."""

import numpy as np
import pytest

from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.inference import (DEFAULT_PATCH_SIZE, GAUSSIAN_SIGMA_FRACTION,
                                                     gaussian_importance_map, sliding_window_inference,
                                                     tile_positions, tile_starts)
from PETPartialVolumeCorrectionLib.progress import ProcessingCancelled


class RecordingPredictor:
    """Identity (plus ``offset``) window predictor that records the batches it is given."""

    def __init__(self, offset=0.0):
        self.offset = offset
        self.batches = []

    def __call__(self, windows):
        self.batches.append(windows.copy())
        return windows + np.float32(self.offset)

    @property
    def window_count(self):
        return sum(len(batch) for batch in self.batches)


@pytest.mark.parametrize("size, patch, overlap", [
    (256, 128, 0), (256, 144, 32), (256, 128, 32), (300, 144, 32), (145, 144, 32), (97, 32, 8),
    (50, 64, 16), (64, 64, 0)])
def test_tile_starts_cover_the_axis_with_at_least_the_overlap(size, patch, overlap):
    starts = tile_starts(size, patch, overlap)
    assert starts[0] == 0
    assert starts[-1] + patch >= size
    assert starts[-1] == max(size - patch, 0)
    covered = np.zeros(max(size, patch), bool)
    for start in starts:
        covered[start:start + patch] = True
    assert covered[:size].all()
    gaps = np.diff(starts)
    assert np.all(patch - gaps >= overlap)
    if len(starts) > 1:
        assert gaps.max() - gaps.min() <= 1  # evenly spread
    if len(starts) > 2:  # minimal: one window fewer could not keep the overlap
        assert (size - patch) / (len(starts) - 2) > patch - overlap


def test_tile_starts_of_the_two_modes_on_the_standard_grid():
    assert tile_starts(256, 128, 0) == [0, 128]  # the study: 2 x 2 x 2 = 8 tiles of 128^3
    assert tile_starts(256, 144, 32) == [0, 112]  # default: 8 windows of 144^3, 32 voxels overlap
    assert tile_starts(256, 128, 32) == [0, 64, 128]  # 128^3 windows with overlap need 27
    assert len(tile_positions((256, 256, 256), (144,) * 3, (32,) * 3)) == 8


@pytest.mark.parametrize("patch, overlap", [(64, 64), (64, -1), (0, 0)])
def test_tile_starts_rejects_overlap_not_smaller_than_window(patch, overlap):
    with pytest.raises(PVCInputError):
        tile_starts(256, patch, overlap)


def test_tile_positions_cover_every_voxel():
    shape = (70, 45, 33)
    patch = (32, 16, 16)
    count = np.zeros(shape, int)
    for corner in tile_positions(shape, patch, (8, 4, 0)):
        count[tuple(slice(c, c + p) for c, p in zip(corner, patch))] += 1
    assert count.min() >= 1
    assert count.sum() == len(tile_positions(shape, patch, (8, 4, 0))) * np.prod(patch)


def test_gaussian_importance_map_shape_peak_and_width():
    weights = gaussian_importance_map((33, 21, 17))
    assert weights.shape == (33, 21, 17) and weights.dtype == np.float32
    assert weights.max() == pytest.approx(1.0) and weights[16, 10, 8] == pytest.approx(1.0)
    assert weights.min() > 0
    np.testing.assert_allclose(weights, weights[::-1, ::-1, ::-1], rtol=1e-6)
    sigma_z = GAUSSIAN_SIGMA_FRACTION * 33
    offset = int(round(sigma_z))
    expected = np.exp(-0.5 * (offset / sigma_z) ** 2)
    assert weights[16 + offset, 10, 8] == pytest.approx(expected, rel=1e-5)
    assert np.all(np.diff(weights[16:, 10, 8]) < 0)


@pytest.mark.parametrize("mode, expected_windows", [("gaussian", 8), ("study", 8)])
def test_identity_predictor_returns_the_input_on_the_standard_grid(mode, expected_windows):
    rng = np.random.default_rng(0)
    volume = rng.random((256, 256, 256), dtype=np.float32)
    predictor = RecordingPredictor()
    result = sliding_window_inference(volume, predictor, mode=mode, batch_size=3)
    assert predictor.window_count == expected_windows
    assert all(batch.shape[1:] == (DEFAULT_PATCH_SIZE[mode],) * 3 for batch in predictor.batches)
    assert result.dtype == np.float32 and result.shape == volume.shape
    np.testing.assert_allclose(result, volume, rtol=2e-6, atol=0)


def test_study_mode_places_each_tile_once_without_blending():
    volume = np.full((256, 256, 256), 0.5, np.float32)
    calls = []

    def tile_index(windows):  # every tile returns its call number
        calls.append(len(calls))
        return np.full_like(windows, float(len(calls)))

    result = sliding_window_inference(volume, tile_index, mode="study")
    assert len(calls) == 8
    for number, corner in enumerate(tile_positions(volume.shape, (128,) * 3, (0,) * 3), start=1):
        tile = result[tuple(slice(c, c + 128) for c in corner)]
        assert np.all(tile == number)


def test_gaussian_mode_blends_overlapping_windows_by_their_weights():
    volume = np.full((48, 16, 16), 0.5, np.float32)
    calls = []

    def window_value(windows):
        calls.append(1)
        return np.full_like(windows, 10.0 * len(calls))  # first window 10, second 20

    result = sliding_window_inference(volume, window_value, patch_size=(32, 16, 16), overlap=(16, 0, 0))
    assert tile_starts(48, 32, 16) == [0, 16]
    weights = gaussian_importance_map((32, 16, 16))
    z = 20  # inside both windows: index 20 of the first, 4 of the second
    expected = (10 * weights[20, 5, 7] + 20 * weights[4, 5, 7]) / (weights[20, 5, 7] + weights[4, 5, 7])
    assert result[z, 5, 7] == pytest.approx(expected, rel=1e-5)
    assert np.all(result[:16] == pytest.approx(10.0)) and np.all(result[32:] == pytest.approx(20.0))
    assert np.all(np.diff(result[:, 8, 8]) > -1e-5)  # a monotone ramp, no seam


def test_empty_windows_are_skipped_and_left_unchanged():
    volume = np.zeros((256, 256, 256), np.float32)
    volume[10:40, 20:60, 30:70] = 0.8  # only the first study tile holds activity
    predictor = RecordingPredictor(offset=1.0)
    result = sliding_window_inference(volume, predictor, mode="study")
    assert predictor.window_count == 1
    np.testing.assert_array_equal(result[:128, :128, :128], volume[:128, :128, :128] + 1.0)
    assert not result[128:].any() and not result[:, 128:].any() and not result[:, :, 128:].any()

    everything = RecordingPredictor(offset=1.0)
    sliding_window_inference(volume, everything, mode="study", skip_empty=False)
    assert everything.window_count == 8


def test_windows_below_the_empty_threshold_count_as_empty():
    volume = np.full((64, 64, 64), 5e-4, np.float32)
    predictor = RecordingPredictor()
    result = sliding_window_inference(volume, predictor, patch_size=32, overlap=8)
    assert predictor.window_count == 0
    np.testing.assert_allclose(result, volume, rtol=2e-6)
    sliding_window_inference(volume, predictor, patch_size=32, overlap=8, empty_threshold=1e-4)
    assert predictor.window_count == len(tile_positions(volume.shape, (32,) * 3, (8,) * 3))


def test_batches_hold_at_most_batch_size_windows():
    volume = np.random.default_rng(1).random((80, 48, 48), dtype=np.float32)
    predictor = RecordingPredictor()
    sliding_window_inference(volume, predictor, patch_size=32, overlap=8, batch_size=4)
    total = len(tile_positions(volume.shape, (32,) * 3, (8,) * 3))
    assert predictor.window_count == total
    assert [len(b) for b in predictor.batches] == [4] * (total // 4) + ([total % 4] if total % 4 else [])


def test_volume_smaller_than_the_window_is_padded_and_cropped_back():
    volume = np.random.default_rng(2).random((20, 30, 40), dtype=np.float32) + 0.1
    predictor = RecordingPredictor()
    result = sliding_window_inference(volume, predictor, patch_size=32, overlap=8)
    assert [batch.shape for batch in predictor.batches] == [(1, 32, 32, 32)] * 2  # x: 40 -> 2 windows
    assert result.shape == volume.shape
    np.testing.assert_allclose(result, volume, rtol=2e-6)


def test_progress_rises_to_one_and_cancel_stops_between_batches():
    volume = np.random.default_rng(3).random((64, 64, 64), dtype=np.float32)
    fractions = []
    sliding_window_inference(volume, RecordingPredictor(), patch_size=32, overlap=8,
                             progress=lambda fraction, message: fractions.append(fraction))
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert np.all(np.diff(fractions) >= 0)

    predictor = RecordingPredictor()
    with pytest.raises(ProcessingCancelled):
        sliding_window_inference(volume, predictor, patch_size=32, overlap=8,
                                 cancel=lambda: len(predictor.batches) >= 2)
    assert len(predictor.batches) == 2


@pytest.mark.parametrize("options", [{"mode": "tiles"}, {"batch_size": 0}, {"patch_size": (32, 32)},
                                     {"overlap": 40, "patch_size": 32}])
def test_invalid_options_are_input_errors(options):
    with pytest.raises(PVCInputError):
        sliding_window_inference(np.zeros((64, 64, 64), np.float32), RecordingPredictor(), **options)


def test_non_3d_volume_is_an_input_error():
    with pytest.raises(PVCInputError, match="3D"):
        sliding_window_inference(np.zeros((64, 64), np.float32), RecordingPredictor())
