"""Patch-wise inference of a whole normalised volume ``[z, y, x]`` with a window predictor.

Two tilings share :func:`tile_starts`:
- ``"gaussian"`` (default): overlapping windows blended with a Gaussian importance map, so no seams
  (the scheme of MONAI's ``sliding_window_inference``). Default windows of 144^3 overlapping by
  32 voxels cover a 256^3 volume with 8 windows (128^3 windows would need 27 for any overlap).
- ``"study"``: the founding study's tiling, non-overlapping 128^3 tiles (eight for 256^3).

Windows whose voxels are all ~0 (``max |v| <= empty_threshold``) are not sent to the network;
their output is their input. Windows go to the predictor in batches; progress is reported and the
cancel check is polled between batches.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .errors import PVCInputError
from .progress import CancelCheck, ProgressCallback, raise_if_cancelled, report

MODES = ("gaussian", "study")

#: Window side (voxels) and overlap of each mode.
DEFAULT_PATCH_SIZE = {"gaussian": 144, "study": 128}
DEFAULT_OVERLAP = {"gaussian": 32, "study": 0}

#: Gaussian importance map sigma as a fraction of the window side (MONAI's default).
GAUSSIAN_SIGMA_FRACTION = 0.125

#: A window is empty when every |voxel| is at most this (normalised intensity, [0, 1] scale).
DEFAULT_EMPTY_THRESHOLD = 1e-3

PredictBatch = Callable[[np.ndarray], np.ndarray]


def tile_starts(size: int, patch: int, overlap: int) -> list[int]:
    """Start indices of windows of ``patch`` voxels covering ``[0, size)`` along one axis.

    Neighbouring windows overlap by at least ``overlap`` voxels; the starts are spread evenly, the
    first at 0 and the last at ``size - patch``. A ``size`` up to ``patch`` gives one window at 0.
    """
    if patch < 1 or not 0 <= overlap < patch:
        raise PVCInputError(f"window size {patch} and overlap {overlap} voxels are invalid; "
                            "the overlap must be at least 0 and smaller than the window")
    if size <= patch:
        return [0]
    count = math.ceil((size - patch) / (patch - overlap)) + 1
    return [int(round(i * (size - patch) / (count - 1))) for i in range(count)]


def tile_positions(shape: Sequence[int], patch_size: Sequence[int], overlap: Sequence[int]) -> list[tuple]:
    """Start corners ``(z, y, x)`` of all windows covering an array of ``shape`` ``[z, y, x]``."""
    per_axis = [tile_starts(s, p, o) for s, p, o in zip(shape, patch_size, overlap)]
    return list(itertools.product(*per_axis))


def gaussian_importance_map(patch_size: Sequence[int],
                            sigma_fraction: float = GAUSSIAN_SIGMA_FRACTION) -> np.ndarray:
    """Blending weights ``[z, y, x]`` float32: a Gaussian centred on the window, peak 1, all > 0."""
    profiles = []
    for side in patch_size:
        offset = np.arange(side, dtype=np.float64) - (side - 1) / 2.0
        profiles.append(np.exp(-0.5 * (offset / (sigma_fraction * side)) ** 2))
    weights = profiles[0][:, None, None] * profiles[1][None, :, None] * profiles[2][None, None, :]
    return (weights / weights.max()).astype(np.float32)


def _triple(value: Union[int, Sequence[int]], what: str) -> tuple[int, int, int]:
    values = (value,) * 3 if np.isscalar(value) else tuple(value)
    if len(values) != 3 or any(int(v) != v for v in values):
        raise PVCInputError(f"{what} must be one integer or three (z, y, x), not {value!r}")
    return tuple(int(v) for v in values)


def sliding_window_inference(volume: np.ndarray, predict_batch: PredictBatch, *, mode: str = "gaussian",
                             patch_size=None, overlap=None, batch_size: int = 1,
                             skip_empty: bool = True, empty_threshold: float = DEFAULT_EMPTY_THRESHOLD,
                             progress: Optional[ProgressCallback] = None,
                             cancel: Optional[CancelCheck] = None) -> np.ndarray:
    """Apply ``predict_batch`` to a whole volume window by window and blend the windows.

    Args:
        volume: normalised volume ``[z, y, x]`` (float32, ~[0, 1]).
        predict_batch: maps windows ``[n, z, y, x]`` float32 to corrected windows, same shape.
        mode: "gaussian" (overlapping windows, Gaussian blending) or "study" (uniform blending; with
            the defaults, non-overlapping 128^3 tiles).
        patch_size: window side(s) in voxels, one or ``(z, y, x)``; default per mode (144 / 128).
            Axes shorter than the window are zero-padded at the end, then cropped back.
        overlap: least overlap of neighbouring windows in voxels; default per mode (32 / 0).
        batch_size: windows per ``predict_batch`` call.
        skip_empty: leave windows with every ``|voxel| <= empty_threshold`` unchanged.
        progress, cancel: see :mod:`.progress`; cancel raises ``ProcessingCancelled``.

    Returns:
        The corrected volume, float32, shaped like ``volume``.
    """
    if mode not in MODES:
        raise PVCInputError(f"unknown inference mode {mode!r}; use one of {', '.join(MODES)}")
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise PVCInputError(f"inference needs a 3D volume [z, y, x], not shape {volume.shape}")
    if batch_size < 1:
        raise PVCInputError(f"batch size must be at least 1, not {batch_size}")
    patch = _triple(DEFAULT_PATCH_SIZE[mode] if patch_size is None else patch_size, "patch size")
    overlaps = _triple(DEFAULT_OVERLAP[mode] if overlap is None else overlap, "overlap")

    padded_shape = tuple(max(s, p) for s, p in zip(volume.shape, patch))
    padded = volume
    if padded_shape != volume.shape:
        padded = np.zeros(padded_shape, np.float32)
        padded[tuple(slice(0, s) for s in volume.shape)] = volume
    weights = gaussian_importance_map(patch) if mode == "gaussian" else np.ones(patch, np.float32)

    corners = tile_positions(padded_shape, patch, overlaps)
    windows = [tuple(slice(c, c + p) for c, p in zip(corner, patch)) for corner in corners]
    weighted_sum = np.zeros(padded_shape, np.float32)
    weight_sum = np.zeros(padded_shape, np.float32)

    def accumulate(window, corrected):
        weighted_sum[window] += corrected * weights
        weight_sum[window] += weights

    to_predict = []
    for window in windows:
        if skip_empty and np.abs(padded[window]).max() <= empty_threshold:
            accumulate(window, padded[window])
        else:
            to_predict.append(window)

    report(progress, 0.0, f"correcting {len(to_predict)} of {len(windows)} windows")
    for first in range(0, len(to_predict), batch_size):
        raise_if_cancelled(cancel)
        batch = to_predict[first:first + batch_size]
        corrected = np.asarray(predict_batch(np.stack([padded[w] for w in batch])), dtype=np.float32)
        if corrected.shape != (len(batch), *patch):
            raise ValueError(f"predict_batch returned shape {corrected.shape}, "
                             f"expected {(len(batch), *patch)}")
        for window, window_output in zip(batch, corrected):
            accumulate(window, window_output)
        done = first + len(batch)
        report(progress, done / len(to_predict), f"corrected window {done} of {len(to_predict)}")
    if not to_predict:
        report(progress, 1.0, "every window is empty; nothing to correct")

    result = np.divide(weighted_sum, weight_sum, out=weighted_sum)
    return np.ascontiguousarray(result[tuple(slice(0, s) for s in volume.shape)])
