"""Regional PVC: the geometric transfer matrix (GTM, Rousset 1998) and Labbe's symmetric GTM.

Notation: ``g`` the observed PET, ``h`` the PSF, ``R_i`` the regions (see :mod:`.regions`),
``n_j = sum(R_j)`` (voxels), ``t_j = sum(g R_j) / n_j`` the observed regional mean.

- GTM: ``t = M T`` with ``M[j, i] = sum((h*R_i) R_j) / n_j``, the share of region i's blurred
  activity seen, on average, in region j (row j sums to 1 when the regions cover the image).
  Solved for the true values ``T`` exactly (``np.linalg.solve``) or, with ``non_negative``, by
  non-negative least squares (as SPM's PETPVE12).
- Labbe: ``X = [h*R_1 ... h*R_n]`` (columns); ``T = argmin ||X T - g||^2``, i.e.
  ``(X^T X) T = X^T g`` (FreeSurfer mri_gtmpvc's solve); ``non_negative`` solves it under T >= 0.

For a noiseless image ``g = h*(sum_i T_i R_i)`` both return ``T`` exactly. The condition number
reported is that of the matrix solved: ``M`` (GTM; its rows sum to 1) or ``X^T X`` scaled to a unit
diagonal (Labbe; scaling does not change the solution, so region size alone does not count); above
:data:`CONDITION_NUMBER_WARNING` a warning says that noise in the regional means can be amplified
by up to that factor.
"""

from __future__ import annotations

import csv
from io import StringIO
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import linalg, optimize

from ..errors import PVCInputError
from ..io import write_text_atomic
from ..progress import report, scaled
from .regions import BlurredRegions, blur_regions, intersect_boxes, relative_box

#: Condition numbers above this draw a warning (relative errors in the regional means may grow
#: by up to this factor in the corrected values). For scale: a 101-region brain phantom (3.5 mm
#: cortical ribbon parcels) gives a GTM condition number of 33 at 6 mm FWHM, 74 at 8 mm, 265 at 12 mm.
CONDITION_NUMBER_WARNING = 1000.0
#: Above this the system is treated as singular and refused.
CONDITION_NUMBER_SINGULAR = 1e10
#: A region whose GTM noise amplification (the 1-norm of its row of ``M^-1``) exceeds this is named
#: in a warning as unstable. For scale at 8 mm FWHM and 1 mm voxels, in the benchmark's brain phantom:
#: cortical parcels (3.5 mm ribbon) 10-14, nuclei 3-14, WM parcels 2, a 27-voxel cube 78, an 8-voxel
#: cube 220, a single voxel 1800.
UNSTABLE_REGION_AMPLIFICATION = 50.0

TABLE_COLUMNS = ("label", "name", "voxels", "uncorrected_mean", "corrected_value", "noise_amplification",
                 "merged_labels")


@dataclass
class GTMResult:
    """Regional values from :func:`gtm` or :func:`labbe`.

    Attributes:
        method: ``"gtm"`` or ``"labbe"``.
        region_ids: region numbers (the added background included, last).
        names: region names (None where unknown), or None when no region has a name.
        voxel_counts: ``sum(R_i)`` per region, voxels.
        uncorrected_means: observed regional means ``t_i`` (PET units, e.g. Bq/mL).
        values: corrected regional values ``T_i`` (PET units).
        condition_number: of ``M`` (GTM) or of ``X^T X`` scaled to a unit diagonal (Labbe); see
            the module docstring.
        kernel: ``"gaussian"`` or ``"itk"``.
        fwhm_mm: PSF FWHM in mm ``(x, y, z)``.
        matrix: the solved system's matrix (``M`` for GTM, ``X^T X`` for Labbe).
        non_negative: whether values were constrained to be >= 0.
        noise_amplification: per region, the 1-norm of its row of ``M^-1`` (GTM; None for Labbe):
            an error of e in every regional mean moves its value by at most that many times e.
        merged_labels: per region, the labels merged into it as too small (see
            :meth:`.regions.RegionSet.from_labels`), empty tuples when none.
    """

    method: str
    region_ids: np.ndarray
    names: Optional[list]
    voxel_counts: np.ndarray
    uncorrected_means: np.ndarray
    values: np.ndarray
    condition_number: float
    kernel: str
    fwhm_mm: tuple
    matrix: np.ndarray = field(repr=False)
    non_negative: bool = False
    noise_amplification: Optional[np.ndarray] = None
    merged_labels: tuple = ()

    def value_of(self, region_id: int) -> float:
        """The corrected value of region ``region_id``."""
        matches = np.flatnonzero(self.region_ids == region_id)
        if matches.size == 0:
            raise PVCInputError(f"no region {region_id}; regions are {self.region_ids.tolist()}")
        return float(self.values[matches[0]])

    def to_table(self) -> list[dict]:
        """One row per region: label, name (or None), voxels, uncorrected_mean, corrected_value,
        noise_amplification (None for Labbe), merged_labels (a list)."""
        count = len(self.region_ids)
        names = self.names or [None] * count
        amplification = self.noise_amplification if self.noise_amplification is not None else [None] * count
        merged = self.merged_labels or [()] * count
        return [{"label": int(label), "name": name, "voxels": _plain_number(voxels),
                 "uncorrected_mean": float(mean), "corrected_value": float(value),
                 "noise_amplification": None if gain is None else float(gain), "merged_labels": list(labels)}
                for label, name, voxels, mean, value, gain, labels in zip(
                    self.region_ids, names, self.voxel_counts, self.uncorrected_means, self.values, amplification,
                    merged)]

    def to_dict(self) -> dict:
        return {"method": self.method, "kernel": self.kernel, "fwhm_mm": list(self.fwhm_mm),
                "non_negative": self.non_negative, "condition_number": float(self.condition_number),
                "condition_number_warning_above": CONDITION_NUMBER_WARNING,
                "unstable_region_amplification_above": UNSTABLE_REGION_AMPLIFICATION, "regions": self.to_table()}

    def write_csv(self, path, force: bool = False) -> Path:
        """Write :meth:`to_table` as CSV (atomic; refuses an existing file unless ``force``)."""
        buffer = StringIO()
        writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.to_table():
            gain = row["noise_amplification"]
            writer.writerow({**row, "name": row["name"] or "",
                             "uncorrected_mean": f"{row['uncorrected_mean']:.9g}",
                             "corrected_value": f"{row['corrected_value']:.9g}",
                             "noise_amplification": "" if gain is None else f"{gain:.4g}",
                             "merged_labels": " ".join(map(str, row["merged_labels"]))})
        return write_text_atomic(path, buffer.getvalue(), force)

    def write_json(self, path, force: bool = False) -> Path:
        """Write :meth:`to_dict` as JSON (atomic; refuses an existing file unless ``force``)."""
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n", force)


def _plain_number(value: float):
    return int(value) if float(value).is_integer() else float(value)


# --- shared input handling ----------------------------------------------------------------------

def checked_pet(pet) -> np.ndarray:
    """The PET as a float32 3D array; :class:`PVCInputError` if it is not 3D or not finite."""
    pet = np.asarray(pet)
    if pet.ndim != 3 or min(pet.shape) < 2:
        raise PVCInputError(f"PET must be a 3D volume [z, y, x], got shape {pet.shape}")
    pet = pet.astype(np.float32, copy=False)
    if not np.all(np.isfinite(pet)):
        raise PVCInputError(f"PET has {int(np.size(pet) - np.isfinite(pet).sum())} NaN or infinite voxels; "
                            "fix or mask them before PVC")
    return pet


def prepared_regions(pet: np.ndarray, *, labels, probabilities, region_ids, names, fwhm_mm, spacing_mm,
                     kernel, add_background, blurred_regions, progress=None, cancel=None) -> BlurredRegions:
    """``blurred_regions`` checked against the other arguments, or newly built from them; then
    the check that every region lies (at least partly) inside the PET's field of view."""
    if blurred_regions is not None:
        if labels is not None or probabilities is not None or region_ids is not None:
            raise PVCInputError("give the regions either as blurred_regions or as labels/probabilities, not both")
        if (fwhm_mm is not None or spacing_mm is not None) and not blurred_regions.matches(
                fwhm_mm if fwhm_mm is not None else blurred_regions.fwhm_mm,
                spacing_mm if spacing_mm is not None else blurred_regions.spacing_mm, kernel):
            raise PVCInputError(f"blurred_regions were made with PSF {blurred_regions.fwhm_mm} mm, spacing "
                                f"{blurred_regions.spacing_mm} mm, kernel {blurred_regions.kernel!r}; "
                                "they differ from the PSF, spacing or kernel asked for")
        if blurred_regions.shape != pet.shape:
            raise PVCInputError(f"regions are on a grid of shape {blurred_regions.shape}, the PET {pet.shape}")
        regions = blurred_regions
    else:
        if fwhm_mm is None or spacing_mm is None:
            raise PVCInputError("give the PSF FWHM (fwhm_mm) and the voxel size (spacing_mm), both in mm (x, y, z)")
        regions = blur_regions(labels=labels, probabilities=probabilities, region_ids=region_ids, names=names,
                               fwhm_mm=fwhm_mm, spacing_mm=spacing_mm, kernel=kernel,
                               add_background=add_background, shape=pet.shape, progress=progress, cancel=cancel)
    check_field_of_view(pet, regions)
    return regions


def check_field_of_view(pet: np.ndarray, blurred: BlurredRegions) -> None:
    """Refuse a region whose PET voxels are all exactly 0: it lies outside the scanner's field of
    view (or the PET was masked there), so no value can be recovered for it."""
    outside = [region for region in blurred.regions.regions if not region.is_added_background
               and not np.any(pet[region.box][region.weights > 0])]
    if outside:
        listed = ", ".join(f"{r.region_id}" + (f" ({r.name})" if r.name else "") for r in outside[:10])
        raise PVCInputError(f"region(s) {listed} lie outside the PET field of view (PET is 0 in all their "
                            "voxels); remove them from the regions or check the registration")


def check_condition(condition: float, method: str) -> None:
    """Refuse a singular region matrix; warn above :data:`CONDITION_NUMBER_WARNING`."""
    if not np.isfinite(condition) or condition > CONDITION_NUMBER_SINGULAR:
        raise PVCInputError(f"{method}: the region matrix is singular (condition number {condition:.3g}): "
                            "some regions cannot be told apart at this PSF; merge tiny or duplicate regions")
    if condition > CONDITION_NUMBER_WARNING:
        warnings.warn(f"{method}: region matrix is ill-conditioned (condition number {condition:.3g} > "
                      f"{CONDITION_NUMBER_WARNING:g}): noise in the regional means can be amplified up to that "
                      "factor; merge small or thin regions, or check the PSF", UserWarning, stacklevel=3)


def region_noise_amplification(matrix: np.ndarray) -> np.ndarray:
    """Per region, the 1-norm of its row of ``matrix^-1``: the most an error of 1 in every regional
    mean can move its corrected value (1 for a region that sees no other and keeps all its activity)."""
    return np.abs(np.linalg.inv(matrix)).sum(axis=1)


def warn_unstable_regions(amplification: np.ndarray, regions, method: str) -> None:
    """Name the regions whose noise amplification exceeds :data:`UNSTABLE_REGION_AMPLIFICATION`."""
    unstable = np.flatnonzero(amplification > UNSTABLE_REGION_AMPLIFICATION)
    if unstable.size == 0:
        return
    unstable = unstable[np.argsort(-amplification[unstable])]
    listed = ", ".join(f"{regions[n].region_id}" + (f" {regions[n].name}" if regions[n].name else "")
                       + f" ({regions[n].voxel_count:.0f} voxels, x{amplification[n]:.3g})" for n in unstable[:10])
    more = f" and {unstable.size - 10} more" if unstable.size > 10 else ""
    warnings.warn(f"{method}: {unstable.size} region(s) are unstable (noise in the regional means is amplified more "
                  f"than {UNSTABLE_REGION_AMPLIFICATION:g}x in their values): {listed}{more}; their values and the "
                  "voxels they drive are unreliable: merge them (min_region_voxels; command line: "
                  "--min-region-voxels)", UserWarning, stacklevel=3)


def _solve(matrix: np.ndarray, rhs: np.ndarray, non_negative: bool) -> np.ndarray:
    if not non_negative:
        return np.linalg.solve(matrix, rhs)
    return optimize.nnls(matrix, rhs, maxiter=50 * matrix.shape[1])[0]


# --- matrices ------------------------------------------------------------------------------------

def _overlapping_pairs(first_boxes, second_boxes):
    """Index pairs (i, j) whose boxes intersect, with the intersection."""
    lows_a = np.array([[s.start for s in b] for b in first_boxes])
    highs_a = np.array([[s.stop for s in b] for b in first_boxes])
    lows_b = np.array([[s.start for s in b] for b in second_boxes])
    highs_b = np.array([[s.stop for s in b] for b in second_boxes])
    overlap = np.all((lows_a[:, None, :] < highs_b[None, :, :]) & (lows_b[None, :, :] < highs_a[:, None, :]), axis=2)
    for i, j in zip(*np.nonzero(overlap)):
        yield int(i), int(j), intersect_boxes(first_boxes[i], second_boxes[j])


def _dot(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.multiply(first, second).sum(dtype=np.float64))


def transfer_matrix(blurred: BlurredRegions) -> np.ndarray:
    """The GTM ``M[j, i] = sum((h*R_i) R_j) / n_j`` (float64, regions in ``blurred.regions`` order)."""
    regions = blurred.regions.regions
    count = len(regions)
    background = blurred.regions.background_index
    explicit = [n for n in range(count) if n != background]
    numerator = np.zeros((count, count))
    tight_boxes = [regions[n].box for n in explicit]
    grown_boxes = [blurred.grown_boxes[n] for n in explicit]
    for a, b, overlap in _overlapping_pairs(grown_boxes, tight_boxes):
        i, j = explicit[a], explicit[b]
        numerator[j, i] = _dot(blurred.blurred[i][relative_box(overlap, blurred.grown_boxes[i])],
                               regions[j].weights[relative_box(overlap, regions[j].box)])
    if background is not None:
        # Background row: its weights are 1 - sum R_k; column: its blur is 1 - sum h*R_k.
        for i in explicit:
            numerator[background, i] = float(blurred.blurred[i].sum(dtype=np.float64)) - numerator[explicit, i].sum()
        counts = blurred.regions.voxel_counts
        numerator[:, background] = counts - numerator[:, explicit].sum(axis=1)
    return numerator / blurred.regions.voxel_counts[:, None]


def labbe_system(pet: np.ndarray, blurred: BlurredRegions) -> tuple[np.ndarray, np.ndarray]:
    """``(X^T X, X^T g)`` with ``X = [h*R_1 ... h*R_n]`` (float64)."""
    count = len(blurred.regions)
    background = blurred.regions.background_index
    explicit = [n for n in range(count) if n != background]
    gram = np.zeros((count, count))
    projection = np.zeros(count)
    boxes = [blurred.grown_boxes[n] for n in explicit]
    for a, b, overlap in _overlapping_pairs(boxes, boxes):
        if b < a:
            continue
        i, k = explicit[a], explicit[b]
        gram[i, k] = gram[k, i] = _dot(blurred.blurred[i][relative_box(overlap, boxes[a])],
                                       blurred.blurred[k][relative_box(overlap, boxes[b])])
    for i in explicit:
        projection[i] = _dot(blurred.blurred[i], pet[blurred.grown_boxes[i]])
    if background is not None:
        complement = 1.0 - blurred.blurred_sum()
        for i in explicit:
            gram[i, background] = gram[background, i] = (
                float(blurred.blurred[i].sum(dtype=np.float64)) - gram[i, explicit].sum())
        gram[background, background] = _dot(complement, complement)
        projection[background] = _dot(complement, pet)
    return gram, projection


def equilibrated_condition(gram: np.ndarray) -> float:
    """Condition number of ``D G D`` with ``D = diag(G)^-1/2`` (``G = X^T X`` scaled to a unit diagonal)."""
    diagonal = np.sqrt(np.clip(np.diag(gram), np.finfo(float).tiny, None))
    return float(np.linalg.cond(gram / np.outer(diagonal, diagonal)))


# --- methods -------------------------------------------------------------------------------------

def gtm(pet, *, labels=None, probabilities=None, region_ids=None, names=None, fwhm_mm=None, spacing_mm=None,
        non_negative: bool = False, kernel: str = "gaussian", add_background: bool = True,
        blurred_regions: Optional[BlurredRegions] = None, progress=None, cancel=None) -> GTMResult:
    """Regional values by the geometric transfer matrix (Rousset 1998).

    Args:
        pet: observed PET ``[z, y, x]`` (any units, e.g. Bq/mL).
        labels: 3D label image ``[z, y, x]`` on the PET grid; or
        probabilities: 4D ``[region, z, y, x]``, a sequence of 3D maps or a mapping name -> map.
        region_ids: labels to use (default: all but 0), or numbers for the maps (default 1..n).
        names: optional mapping region number -> name, for the table.
        fwhm_mm: PSF FWHM in mm ``(x, y, z)`` (or one number); spacing_mm: voxel size ``(x, y, z)``.
        non_negative: solve by non-negative least squares (PETPVE12) instead of exactly.
        kernel: ``"gaussian"`` (sampled PSF) or ``"itk"`` (PETPVC's discrete kernel).
        add_background: add the uncovered voxels as a region, with a warning (see :mod:`.regions`).
        blurred_regions: regions already blurred by :func:`.regions.blur_regions`, to share the
            blurs between methods (then leave labels/probabilities/region_ids out).
        progress, cancel: see :mod:`..progress`.
    """
    pet = checked_pet(pet)
    blurred = prepared_regions(pet, labels=labels, probabilities=probabilities, region_ids=region_ids, names=names,
                               fwhm_mm=fwhm_mm, spacing_mm=spacing_mm, kernel=kernel, add_background=add_background,
                               blurred_regions=blurred_regions, progress=scaled(progress, 0.0, 0.9), cancel=cancel)
    matrix = transfer_matrix(blurred)
    means = blurred.regions.means(pet)
    condition = float(np.linalg.cond(matrix))
    check_condition(condition, "GTM")
    amplification = region_noise_amplification(matrix)
    warn_unstable_regions(amplification, blurred.regions.regions, "GTM")
    values = _solve(matrix, means, non_negative)
    report(progress, 1.0, "GTM solved")
    return _result("gtm", blurred, means, values, condition, matrix, non_negative, amplification)


def labbe(pet, *, labels=None, probabilities=None, region_ids=None, names=None, fwhm_mm=None, spacing_mm=None,
          non_negative: bool = False, kernel: str = "gaussian", add_background: bool = True,
          blurred_regions: Optional[BlurredRegions] = None, progress=None, cancel=None) -> GTMResult:
    """Regional values by Labbe's symmetric GTM, least squares on the blurred regions.

    Arguments as :func:`gtm`. With ``non_negative`` the least-squares problem ``||X T - g||`` is
    solved under ``T >= 0`` (through the Cholesky factor of ``X^T X``).
    """
    pet = checked_pet(pet)
    blurred = prepared_regions(pet, labels=labels, probabilities=probabilities, region_ids=region_ids, names=names,
                               fwhm_mm=fwhm_mm, spacing_mm=spacing_mm, kernel=kernel, add_background=add_background,
                               blurred_regions=blurred_regions, progress=scaled(progress, 0.0, 0.8), cancel=cancel)
    gram, projection = labbe_system(pet, blurred)
    condition = equilibrated_condition(gram)
    check_condition(condition, "Labbe")
    if non_negative:
        factor = linalg.cholesky(gram, lower=True)
        values = _solve(factor.T, linalg.solve_triangular(factor, projection, lower=True), True)
    else:
        values = _solve(gram, projection, False)
    report(progress, 1.0, "Labbe solved")
    return _result("labbe", blurred, blurred.regions.means(pet), values, condition, gram, non_negative)


def _result(method, blurred, means, values, condition, matrix, non_negative, amplification=None) -> GTMResult:
    names = blurred.regions.names
    return GTMResult(method=method, region_ids=blurred.regions.region_ids,
                     names=names if any(n is not None for n in names) else None,
                     voxel_counts=blurred.regions.voxel_counts, uncorrected_means=means,
                     values=np.asarray(values, dtype=np.float64), condition_number=condition,
                     kernel=blurred.kernel, fwhm_mm=blurred.fwhm_mm, matrix=matrix, non_negative=non_negative,
                     noise_amplification=amplification,
                     merged_labels=tuple(region.merged_labels for region in blurred.regions.regions))
