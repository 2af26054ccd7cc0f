"""Regions for the classical methods, checked, and their PSF-blurred versions (computed once, shared).

A region ``R_i`` is a membership map on the PET grid (``[z, y, x]``): 0/1 from a label image, or a
probability in [0, 1] from probability maps, with ``sum_i R_i <= 1`` in every voxel. Each region
keeps only its bounding box; its blurred version ``h*R_i`` keeps only that box grown by the kernel
half-width, outside which it is exactly 0. Where the regions leave voxels uncovered, a background
region (their complement, ``1 - sum_i R_i``) is added with a warning: without it GTM, iY and MG are
biased (PETPVC issues #106, #13). Its blur is never computed directly: ``h*(1 - sum R_i) =
1 - sum h*R_i`` since the kernel sums to 1 and borders replicate.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from ..errors import PVCInputError
from ..geometry import check_spacing
from ..progress import raise_if_cancelled, report
from . import psf
from .psf import KERNELS, blur, check_fwhm, kernel_radii, psf_kernels

#: Probabilities may stray this far outside [0, 1] (and their sum above 1) from rounding or
#: interpolation; such values are clipped (sums rescaled to 1). Larger deviations are errors.
PROBABILITY_TOLERANCE = 0.01
BACKGROUND_NAME = "background (added)"
SMALL_REGION_POOL_NAME = "small regions (merged)"
#: Label values above this are counted with np.unique instead of a bincount table.
MAX_TABULATED_LABEL = 1_000_000

Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class Region:
    """One region: its number, name, bounding box and membership weights inside that box.

    Attributes:
        region_id: the region's number (label value, or 1..n for probability maps).
        name: a readable name, or None.
        box: bounding box of the voxels with weight > 0 (array slices ``[z, y, x]``).
        weights: float32 membership (0/1 or probability) over ``box``.
        voxel_count: sum of the weights (voxels; fractional for probabilities).
        is_added_background: True for the complement region added by this library.
        merged_labels: labels merged into this region as smaller than the minimum region size.
    """

    region_id: int
    name: Optional[str]
    box: Box
    weights: np.ndarray
    voxel_count: float
    is_added_background: bool = False
    merged_labels: tuple = ()


def _bounding_box(mask: np.ndarray) -> Box:
    """The smallest box holding every True voxel of ``mask`` (which has at least one)."""
    box = []
    for axis in range(mask.ndim):
        rows = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(rows[0]), int(rows[-1]) + 1))
    return tuple(box)


def _grow_box(box: Box, radii, shape) -> Box:
    return tuple(slice(max(s.start - r, 0), min(s.stop + r, n)) for s, r, n in zip(box, radii, shape))


def intersect_boxes(first: Box, second: Box) -> Optional[Box]:
    starts = [max(a.start, b.start) for a, b in zip(first, second)]
    stops = [min(a.stop, b.stop) for a, b in zip(first, second)]
    if any(start >= stop for start, stop in zip(starts, stops)):
        return None
    return tuple(slice(start, stop) for start, stop in zip(starts, stops))


def relative_box(inner: Box, outer: Box) -> Box:
    """``inner`` expressed in the coordinates of ``outer`` (which contains it)."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))


def _background_id(region_ids) -> int:
    return 0 if 0 not in set(region_ids) else int(max(region_ids)) + 1


class RegionSet:
    """Checked regions on one grid, built by :meth:`from_labels` or :meth:`from_probabilities`.

    Attributes:
        shape: the grid's array shape ``[z, y, x]``.
        regions: the regions, the added background (if any) last.
    """

    def __init__(self, shape, regions: list[Region]):
        self.shape = tuple(int(n) for n in shape)
        self.regions = regions

    @property
    def region_ids(self) -> np.ndarray:
        return np.array([r.region_id for r in self.regions], dtype=np.int64)

    @property
    def names(self) -> list[Optional[str]]:
        return [r.name for r in self.regions]

    @property
    def voxel_counts(self) -> np.ndarray:
        return np.array([r.voxel_count for r in self.regions], dtype=np.float64)

    @property
    def background_index(self) -> Optional[int]:
        """Index of the added background region, or None."""
        return next((n for n, r in enumerate(self.regions) if r.is_added_background), None)

    def __len__(self) -> int:
        return len(self.regions)

    def index_of(self, region_id: int) -> int:
        matches = [n for n, r in enumerate(self.regions) if r.region_id == region_id]
        if not matches:
            raise PVCInputError(f"no region {region_id}; regions are {self.region_ids.tolist()}")
        return matches[0]

    def combine(self, coefficients) -> np.ndarray:
        """``sum_i c_i R_i`` as a float32 volume: e.g. the piecewise-constant image of values ``c``."""
        volume = np.zeros(self.shape, dtype=np.float32)
        for region, coefficient in zip(self.regions, coefficients):
            volume[region.box] += np.float32(coefficient) * region.weights
        return volume

    def means(self, image: np.ndarray) -> np.ndarray:
        """Weighted mean of ``image`` over each region, ``sum(image R_i) / sum(R_i)`` (float64)."""
        return np.array([np.multiply(image[r.box], r.weights).sum(dtype=np.float64) / r.voxel_count
                         for r in self.regions])

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def from_inputs(cls, *, labels=None, probabilities=None, region_ids=None, names=None,
                    add_background: bool = True, shape=None, min_region_voxels: int = 0,
                    small_region_pool: Optional[int] = None) -> "RegionSet":
        """Regions from exactly one of ``labels`` (3D integer image) or ``probabilities``
        (4D ``[region, z, y, x]``, a sequence of 3D maps, or a mapping name -> 3D map); the
        minimum region size applies to labels only."""
        if (labels is None) == (probabilities is None):
            raise PVCInputError("give the regions either as a label image or as probability maps (exactly one)")
        if labels is not None:
            return cls.from_labels(labels, region_ids=region_ids, names=names, add_background=add_background,
                                   shape=shape, min_region_voxels=min_region_voxels,
                                   small_region_pool=small_region_pool)
        return cls.from_probabilities(probabilities, region_ids=region_ids, names=names,
                                      add_background=add_background, shape=shape)

    @classmethod
    def from_labels(cls, labels, *, region_ids=None, names=None, add_background: bool = True,
                    shape=None, min_region_voxels: int = 0, small_region_pool: Optional[int] = None) -> "RegionSet":
        """Regions from a 3D label image ``[z, y, x]`` of non-negative whole numbers.

        Args:
            labels: the label image (any integer or float dtype holding whole numbers).
            region_ids: labels to use as regions (default: every label present except 0); voxels
                with other labels are uncovered.
            names: optional mapping label -> name.
            add_background: add the complement of the regions as a region (with a warning) when
                some voxels are uncovered.
            shape: the PET grid's shape, checked against the label image's.
            min_region_voxels: regions with fewer voxels are merged (with a warning) into their
                largest neighbour (the touching region with the most voxels; label 0, i.e. the
                uncovered voxels, when no region touches them), or into ``small_region_pool``.
            small_region_pool: a label to merge every small region into (added, named
                :data:`SMALL_REGION_POOL_NAME`, when absent); None: each into its largest neighbour.
        """
        labels = checked_label_array(labels, shape)
        counts, present = label_counts(labels)
        if region_ids is None:
            ids = [int(v) for v in present if v != 0]
            if not ids:
                raise PVCInputError("label image holds no region (every voxel is 0); give a segmentation")
        else:
            ids = _checked_ids(region_ids)
        empty = [i for i in ids if counts.get(i, 0) == 0]
        if empty:
            raise PVCInputError(f"region(s) {empty} are empty (no voxel has that label); "
                                "remove them from the region list or fix the segmentation")
        names = dict(names or {})
        merged_into: dict[int, int] = {}
        if min_region_voxels > 0:
            labels, merged_into = merge_small_regions(labels, ids, counts, int(min_region_voxels), small_region_pool)
            if merged_into:
                _warn_merged(merged_into, counts, names, min_region_voxels)
                if small_region_pool is not None and small_region_pool not in ids:
                    ids.append(int(small_region_pool))
                    names.setdefault(int(small_region_pool), SMALL_REGION_POOL_NAME)
                ids = [i for i in ids if i not in merged_into]
                counts, _ = label_counts(labels)
        boxes = ndimage.find_objects(labels) if labels.max() <= MAX_TABULATED_LABEL else None
        regions = []
        for region_id in ids:
            if region_id == 0 or boxes is None:
                box = _bounding_box(labels == region_id)
            else:
                box = boxes[region_id - 1]
            weights = (labels[box] == region_id).astype(np.float32)
            merged = tuple(sorted(small for small, into in merged_into.items() if into == region_id))
            regions.append(Region(region_id, names.get(region_id), box, weights, float(counts[region_id]),
                                  merged_labels=merged))
        covered = sum(counts[i] for i in ids)
        if covered < labels.size and add_background:
            assigned = np.zeros(labels.shape, dtype=bool)
            for region in regions:
                assigned[region.box] |= region.weights > 0
            uncovered = ~assigned
            box = _bounding_box(uncovered)
            background_id = _background_id(ids)
            merged = tuple(sorted(small for small, into in merged_into.items() if into not in ids))
            regions.append(Region(background_id, BACKGROUND_NAME, box, uncovered[box].astype(np.float32),
                                  float(labels.size - covered), is_added_background=True, merged_labels=merged))
            _warn_background_added(labels.size - covered, background_id,
                                   "label 0" if region_ids is None else "labels not in the region list")
        return cls(labels.shape, regions)

    @classmethod
    def from_probabilities(cls, probabilities, *, region_ids=None, names=None, add_background: bool = True,
                           shape=None, warn_background: bool = True) -> "RegionSet":
        """Regions from probability maps in [0, 1] whose sum is at most 1 in every voxel.

        Args:
            probabilities: 4D array ``[region, z, y, x]``, a sequence of 3D maps, or a mapping
                name -> 3D map (the names are kept).
            region_ids: numbers for the maps (default 1..n).
            names: optional mapping number -> name (overrides mapping keys).
            add_background: add ``1 - sum`` as a region when it exceeds :data:`PROBABILITY_TOLERANCE`.
            shape: the PET grid's shape, checked against the maps'.
            warn_background: warn when the background is added (off for tissue maps, which
                never include one).
        """
        maps, map_names = _probability_list(probabilities)
        ids = _checked_ids(region_ids) if region_ids is not None else list(range(1, len(maps) + 1))
        if len(ids) != len(maps):
            raise PVCInputError(f"{len(ids)} region numbers given for {len(maps)} probability maps")
        names = {**dict(zip(ids, map_names)), **dict(names or {})}
        grid_shape = tuple(shape) if shape is not None else maps[0].shape
        total = np.zeros(grid_shape, dtype=np.float32)
        checked = []
        for region_id, probability in zip(ids, maps):
            label = names.get(region_id) or f"region {region_id}"
            probability = _checked_probability(probability, grid_shape, label)
            total += probability
            checked.append(probability)
        _rescale_overfull(checked, total)
        regions = []
        for region_id, probability in zip(ids, checked):
            support = probability > 0
            if not support.any():
                raise PVCInputError(f"probability map of {names.get(region_id) or f'region {region_id}'} "
                                    "is empty (all 0); remove it or fix the map")
            box = _bounding_box(support)
            weights = np.ascontiguousarray(probability[box])
            regions.append(Region(region_id, names.get(region_id), box, weights,
                                  float(weights.sum(dtype=np.float64))))
        residual = np.subtract(1.0, total, out=total)  # in [0, 1]: total is in [0, 1] after the rescale
        np.maximum(residual, 0.0, out=residual)
        if add_background and float(residual.max()) > PROBABILITY_TOLERANCE:
            box = _bounding_box(residual > 0)
            background_id = _background_id(ids)
            weights = np.ascontiguousarray(residual[box])
            uncovered = float(weights.sum(dtype=np.float64))
            regions.append(Region(background_id, BACKGROUND_NAME, box, weights, uncovered,
                                  is_added_background=True))
            if warn_background:
                _warn_background_added(uncovered, background_id, "1 - sum of the probabilities")
        return cls(grid_shape, regions)


def merge_small_regions(labels: np.ndarray, ids, counts: dict, min_region_voxels: int,
                        pool: Optional[int]) -> tuple[np.ndarray, dict[int, int]]:
    """A copy of ``labels`` with the regions of ``ids`` smaller than ``min_region_voxels`` relabelled,
    smallest first, into ``pool`` or their largest touching region of ``ids`` (6-connected; one that
    is itself small only when nothing else touches; label 0, uncovered, when no region touches), and
    ``{small label: label merged into}``."""
    small = sorted((i for i in ids if counts[i] < min_region_voxels), key=lambda i: (counts[i], i))
    if not small:
        return labels, {}
    if pool is not None and (pool < 0 or pool in small):
        raise PVCInputError(f"the pool for small regions must be a label >= 0 that is not itself small, got {pool}")
    if pool is None and len(small) == len(ids):
        raise PVCInputError(f"every region has fewer than {min_region_voxels} voxels; lower the minimum region size")
    labels = labels.copy()
    counts = dict(counts)
    regions = set(ids)
    merged_into: dict[int, int] = {}
    structure = ndimage.generate_binary_structure(3, 1)
    for label in small:
        box = _grow_box(_bounding_box(labels == label), (1, 1, 1), labels.shape)
        mask = labels[box] == label
        shell = ndimage.binary_dilation(mask, structure) & ~mask
        touching = [int(v) for v in np.unique(labels[box][shell]) if v in regions]
        large = [v for v in touching if v not in small or v in merged_into]
        target = pool if pool is not None else max(large or touching or [0], key=lambda v: (counts.get(v, 0), -v))
        labels[box][mask] = target
        counts[target] = counts.get(target, 0) + counts.pop(label)
        merged_into[label] = target
    # A small region merged into one merged later follows it to its final label.
    for label, target in merged_into.items():
        while target in merged_into:
            target = merged_into[target]
        merged_into[label] = target
    return labels, merged_into


def _warn_merged(merged_into: dict, counts: dict, names: dict, min_region_voxels: int) -> None:
    def described(label):
        return f"{label}" + (f" {names[label]}" if names.get(label) else "")

    listed = ", ".join(f"{described(small)} ({counts[small]} voxels) -> {described(into) if into else 'uncovered (0)'}"
                       for small, into in list(merged_into.items())[:10])
    more = f" and {len(merged_into) - 10} more" if len(merged_into) > 10 else ""
    warnings.warn(f"merged {len(merged_into)} region(s) smaller than {min_region_voxels} voxels: {listed}{more} "
                  "(listed in the table's merged_labels)", UserWarning, stacklevel=4)


def _warn_background_added(voxels: float, background_id: int, source: str) -> None:
    warnings.warn(f"the regions leave {voxels:.0f} voxels uncovered: added a background region "
                  f"(number {background_id}, {source}) so that they are modelled; give a background "
                  "region yourself, or pass add_background=False (command line: --no-background) to leave them "
                  "out (biased values)",
                  UserWarning, stacklevel=4)


def _checked_ids(region_ids) -> list[int]:
    ids = np.asarray(region_ids).ravel()
    if ids.size == 0:
        raise PVCInputError("the region list is empty")
    if not np.all(np.isfinite(ids.astype(float))) or not np.array_equal(ids, np.round(ids)) or np.any(ids < 0):
        raise PVCInputError(f"region numbers must be non-negative whole numbers, got {ids.tolist()}")
    ids = [int(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise PVCInputError(f"region numbers repeat: {ids}")
    return ids


def checked_label_array(labels, shape) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise PVCInputError(f"label image must be 3D [z, y, x], got {labels.ndim}D; a 4D mask holds "
                            "probabilities: pass it as probability maps")
    if shape is not None and labels.shape != tuple(shape):
        raise PVCInputError(f"label image shape {labels.shape} differs from the PET's {tuple(shape)}; "
                            "resample the labels onto the PET grid (command line: --resample-labels)")
    if labels.dtype == bool:
        return labels.astype(np.int32)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or not np.array_equal(labels, np.round(labels)):
            raise PVCInputError("label image has non-integer values; give region numbers (a label map), "
                                "or pass probability maps as probabilities")
    if labels.min() < 0:
        raise PVCInputError(f"label image has negative values (min {labels.min()}); "
                            "region numbers must be >= 0")
    if labels.max() > np.iinfo(np.int32).max:
        raise PVCInputError(f"label value {labels.max()} is too large (max {np.iinfo(np.int32).max})")
    return labels.astype(np.int32, copy=False)


def label_counts(labels: np.ndarray) -> tuple[dict, np.ndarray]:
    """Voxel count per label value, and the values present (sorted)."""
    if labels.max() <= MAX_TABULATED_LABEL:
        table = np.bincount(labels.ravel())
        present = np.flatnonzero(table)
        return {int(v): int(table[v]) for v in present}, present
    present, counts = np.unique(labels, return_counts=True)
    return {int(v): int(c) for v, c in zip(present, counts)}, present


def _probability_list(probabilities) -> tuple[list[np.ndarray], list[Optional[str]]]:
    if isinstance(probabilities, Mapping):
        return [np.asarray(p) for p in probabilities.values()], [str(k) for k in probabilities.keys()]
    if isinstance(probabilities, np.ndarray):
        if probabilities.ndim == 3:
            return [probabilities], [None]
        if probabilities.ndim != 4:
            raise PVCInputError(f"probability maps must be 4D [region, z, y, x], got {probabilities.ndim}D")
        return list(probabilities), [None] * probabilities.shape[0]
    maps = [np.asarray(p) for p in probabilities]
    if not maps:
        raise PVCInputError("no probability maps given")
    return maps, [None] * len(maps)


def _checked_probability(probability: np.ndarray, shape, label: str) -> np.ndarray:
    if probability.ndim != 3:
        raise PVCInputError(f"probability map of {label} must be 3D [z, y, x], got shape {probability.shape}")
    if probability.shape != tuple(shape):
        raise PVCInputError(f"probability map of {label} has shape {probability.shape}, the PET "
                            f"{tuple(shape)}; resample the maps onto the PET grid")
    probability = np.asarray(probability, dtype=np.float32)
    low, high = float(probability.min()), float(probability.max())  # NaN or inf anywhere shows here
    if not (np.isfinite(low) and np.isfinite(high)):
        raise PVCInputError(f"probability map of {label} has NaN or infinite values")
    if low < -PROBABILITY_TOLERANCE or high > 1.0 + PROBABILITY_TOLERANCE:
        raise PVCInputError(f"probability map of {label} has values in [{low:g}, {high:g}], outside [0, 1]; "
                            "give probabilities (a label image goes through the labels option)")
    return probability if 0.0 <= low and high <= 1.0 else np.clip(probability, 0.0, 1.0)


def _rescale_overfull(maps: list[np.ndarray], total: np.ndarray) -> None:
    """Raise when the maps sum above 1 + tolerance; rescale voxels summing slightly above 1 to 1
    (in copies: the caller's arrays are never changed)."""
    peak = float(total.max())
    if peak > 1.0 + PROBABILITY_TOLERANCE:
        where = np.unravel_index(int(np.argmax(total)), total.shape)
        raise PVCInputError(f"probability maps sum to {peak:.3g} at voxel [z, y, x] = {list(map(int, where))}; "
                            "they must sum to at most 1 (normalise the maps or drop an overlapping one)")
    overfull = total > 1.0
    if np.any(overfull):
        scale = 1.0 / total[overfull]
        for index, probability in enumerate(maps):
            maps[index] = probability.copy()
            maps[index][overfull] *= scale
        total[overfull] = 1.0


class BlurredRegions:
    """Regions with their PSF-blurred versions ``h*R_i``: compute once, share between methods.

    Build with :func:`blur_regions`. ``blurred[i]`` holds ``h*R_i`` over ``grown_boxes[i]`` (the
    region's box grown by the kernel half-width; zero outside), None for the added background,
    whose blur is ``1 - sum of the others``.

    Attributes:
        regions: the :class:`RegionSet`.
        fwhm_mm: PSF FWHM in mm ``(x, y, z)``; spacing_mm: voxel size in mm ``(x, y, z)``.
        kernel: ``"gaussian"`` or ``"itk"``; kernels: the three 1D kernels ``[z, y, x]``.
    """

    def __init__(self, regions: RegionSet, fwhm_mm, spacing_mm, kernel: str, blurred, grown_boxes):
        self.regions = regions
        self.fwhm_mm = tuple(float(v) for v in fwhm_mm)
        self.spacing_mm = tuple(float(v) for v in spacing_mm)
        self.kernel = kernel
        self.kernels = psf_kernels(self.fwhm_mm, self.spacing_mm, kernel)
        self.blurred = blurred
        self.grown_boxes = grown_boxes
        self._blurred_sum = None

    @property
    def shape(self):
        return self.regions.shape

    def matches(self, fwhm_mm, spacing_mm, kernel: str) -> bool:
        return (np.allclose(np.broadcast_to(np.asarray(fwhm_mm, float), (3,)), self.fwhm_mm)
                and np.allclose(spacing_mm, self.spacing_mm) and kernel == self.kernel)

    def blurred_sum(self) -> np.ndarray:
        """``S = sum_i h*R_i`` over the explicitly blurred regions (float32 volume, cached)."""
        if self._blurred_sum is None:
            total = np.zeros(self.shape, dtype=np.float32)
            for blurred, box in zip(self.blurred, self.grown_boxes):
                if blurred is not None:
                    total[box] += blurred
            self._blurred_sum = total
        return self._blurred_sum

    def blurred_region(self, index: int, box: Box) -> np.ndarray:
        """``h*R_index`` over ``box`` (any box of the grid), float32."""
        grown = self.grown_boxes[index]
        if self.blurred[index] is None:
            return 1.0 - self.blurred_sum()[box]
        out = np.zeros(tuple(s.stop - s.start for s in box), dtype=np.float32)
        overlap = intersect_boxes(box, grown)
        if overlap is not None:
            out[relative_box(overlap, box)] = self.blurred[index][relative_box(overlap, grown)]
        return out

    def blurred_combination(self, coefficients) -> np.ndarray:
        """``h*(sum_i c_i R_i) = sum_i c_i h*R_i`` as a float32 volume, from the stored blurs."""
        coefficients = np.asarray(coefficients, dtype=np.float64)
        background = self.regions.background_index
        offset = 0.0 if background is None else coefficients[background]
        volume = np.full(self.shape, offset, dtype=np.float32)
        for coefficient, blurred, box in zip(coefficients, self.blurred, self.grown_boxes):
            if blurred is not None:
                volume[box] += np.float32(coefficient - offset) * blurred
        return volume


    def intraregional_blur(self, image: np.ndarray) -> np.ndarray:
        """``sum_j R_j h*(R_j f) / h*R_j``: the PSF applied within each region only and renormalised
        (PETPVC's intra-regional blur); a constant inside a label region stays that constant."""
        regions = self.regions.regions
        if self.regions.background_index is not None:
            self.blurred_sum()

        def blur_within(index: int) -> np.ndarray:
            region, grown = regions[index], self.grown_boxes[index]
            inner = relative_box(region.box, grown)
            padded = np.zeros(tuple(s.stop - s.start for s in grown), dtype=np.float32)
            padded[inner] = region.weights * image[region.box]
            numerator = blur(padded, self.kernels, threads=1)[inner]
            denominator = self.blurred_region(index, region.box)
            ratio = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
            return region.weights * ratio

        out = np.zeros(self.shape, dtype=np.float32)
        with ThreadPoolExecutor(psf.BLUR_THREADS) as pool:
            for region, contribution in zip(regions, pool.map(blur_within, range(len(regions)))):
                out[region.box] += contribution
        return out


def blur_regions(*, labels=None, probabilities=None, region_ids=None, names=None, fwhm_mm, spacing_mm,
                 kernel: str = "gaussian", add_background: bool = True, shape=None, min_region_voxels: int = 0,
                 small_region_pool: Optional[int] = None, progress=None, cancel=None) -> BlurredRegions:
    """Check the regions and blur each one inside its grown bounding box (threads over regions).

    Args:
        labels / probabilities / region_ids / names / add_background / min_region_voxels /
            small_region_pool: see :meth:`RegionSet.from_inputs` and :meth:`RegionSet.from_labels`.
        fwhm_mm: PSF FWHM in mm, a number or ``(x, y, z)``; spacing_mm: voxel size ``(x, y, z)`` mm.
        kernel: ``"gaussian"`` (sampled) or ``"itk"`` (PETPVC's discrete kernel).
        shape: the PET grid's shape ``[z, y, x]``, checked against the regions'.
        progress, cancel: see :mod:`..progress`.
    """
    regions = RegionSet.from_inputs(labels=labels, probabilities=probabilities, region_ids=region_ids,
                                    names=names, add_background=add_background, shape=shape,
                                    min_region_voxels=min_region_voxels, small_region_pool=small_region_pool)
    return blur_region_set(regions, fwhm_mm=fwhm_mm, spacing_mm=spacing_mm, kernel=kernel,
                           progress=progress, cancel=cancel)


def blur_region_set(regions: RegionSet, *, fwhm_mm, spacing_mm, kernel: str = "gaussian",
                    progress=None, cancel=None) -> BlurredRegions:
    """Blur an already checked :class:`RegionSet` (see :func:`blur_regions`)."""
    if kernel not in KERNELS:
        raise PVCInputError(f"unknown PSF kernel {kernel!r}; use one of {', '.join(KERNELS)}")
    fwhm = check_fwhm(fwhm_mm)
    check_spacing(spacing_mm)
    kernels = psf_kernels(fwhm, spacing_mm, kernel)
    radii = kernel_radii(kernels)
    grown_boxes = [_grow_box(r.box, radii, regions.shape) for r in regions.regions]
    blurred: list[Optional[np.ndarray]] = [None] * len(regions)

    def blur_one(index: int) -> None:
        region, grown = regions.regions[index], grown_boxes[index]
        padded = np.zeros(tuple(s.stop - s.start for s in grown), dtype=np.float32)
        padded[relative_box(region.box, grown)] = region.weights
        blurred[index] = blur(padded, kernels, threads=1)

    todo = [n for n, r in enumerate(regions.regions) if not r.is_added_background]
    with ThreadPoolExecutor(psf.BLUR_THREADS) as pool:
        futures = [pool.submit(blur_one, n) for n in todo]
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                future.result()
                report(progress, done / max(len(todo), 1), f"blurring regions ({done}/{len(todo)})")
                raise_if_cancelled(cancel)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return BlurredRegions(regions, fwhm, spacing_mm, kernel, blurred, grown_boxes)
