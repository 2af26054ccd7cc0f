"""Voxel-wise region-based PVC: RBV, iterative Yang (iY), multi-target correction (MTC) and
Mueller-Gaertner (MG). Notation as in :mod:`.regional`; all images ``[z, y, x]`` in PET units.

- RBV (Thomas 2011): ``T`` from the GTM; ``s = sum_i T_i R_i``; ``f = g s / h*s``.
- iY (Erlandsson 2012): ``f_0 = g``; ``m_i = max(mean of f_k in R_i, 0)``; ``s = sum_i m_i R_i``;
  ``f_{k+1} = g s / h*s``.
- MTC: ``f = sum_j R_j (g - sum_{i != j} T_i h*R_i) / h*R_j`` with ``T`` from the GTM.
- MG (Mueller-Gaertner 1992): inside the GM mask ``GM > gm_threshold``,
  ``f = (g - C_WM h*WM - C_CSF h*CSF) / h*GM``; outside it ``f = g`` (the input PET, unchanged).

``g s / h*s`` is 0 where ``h*s`` is below 1e-6 of its maximum (no activity modelled there).
MTC and MG divide by a blurred region fraction, clamped from below at :data:`MIN_BLURRED_FRACTION`
(limits noise amplification to 1/0.05 = 20x); clamped voxels are counted in a warning. Blurs of
the regions come from :class:`.regions.BlurredRegions` and are shared: ``h*s = sum_i T_i h*R_i``.
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
from scipy import ndimage

from ..errors import PVCInputError
from ..progress import raise_if_cancelled, report, scaled
from .deconvolution import Convergence, intraregional_deconvolution
from .regional import checked_pet, gtm, prepared_regions
from .regions import BlurredRegions, RegionSet, blur_region_set

#: Smallest blurred region fraction MTC and MG divide by (noise amplification at most 20x).
MIN_BLURRED_FRACTION = 0.05
#: ``g s / h*s`` is set to 0 where ``h*s`` is below this fraction of its maximum.
RATIO_FLOOR = 1e-6
#: MG values outside [0, MG_RANGE_FACTOR * C_WM] are counted in a warning (PETPVC zeroes them).
MG_RANGE_FACTOR = 10.0
#: Region numbers of the tissue maps in MG's region set.
GM_ID, WM_ID, CSF_ID = 1, 2, 3
WM_VALUE_SOURCES = ("eroded", "gtm")
#: iY warns when a regional mean still changed by more than this (relative) in its last iteration.
IY_CONVERGENCE_TOLERANCE = 0.01
#: Regional means below this fraction of the largest count their iY change relative to that fraction.
IY_CHANGE_FLOOR = 1e-3
IY_CHANGE = "max over regions of |m_k - m_(k-1)| / max(|m_k|, 1e-3 max|m_k|), m = regional means of f"


def _region_ratio_correction(pet: np.ndarray, synthetic: np.ndarray, blurred_synthetic: np.ndarray) -> np.ndarray:
    """``g s / h*s``, 0 where ``|h*s|`` is negligible."""
    floor = RATIO_FLOOR * float(np.abs(blurred_synthetic).max())
    ratio = np.divide(synthetic, blurred_synthetic, out=np.zeros_like(synthetic),
                      where=np.abs(blurred_synthetic) > floor)
    return pet * ratio


def _ensure_finite(image: np.ndarray, method: str) -> np.ndarray:
    if not np.all(np.isfinite(image)):
        raise PVCInputError(f"{method} produced non-finite values; check the regions and the PSF")
    return image


def _regions_with_gtm_values(pet, *, labels, probabilities, region_ids, fwhm_mm, spacing_mm, kernel,
                             add_background, non_negative, blurred_regions, progress, cancel):
    """The checked PET, its blurred regions and their GTM values: the first steps of RBV and MTC."""
    pet = checked_pet(pet)
    blurred = prepared_regions(pet, labels=labels, probabilities=probabilities, region_ids=region_ids, names=None,
                               fwhm_mm=fwhm_mm, spacing_mm=spacing_mm, kernel=kernel, add_background=add_background,
                               blurred_regions=blurred_regions, progress=progress, cancel=cancel)
    return pet, blurred, gtm(pet, blurred_regions=blurred, non_negative=non_negative, kernel=blurred.kernel).values


def rbv(pet, *, labels=None, probabilities=None, region_ids=None, fwhm_mm=None, spacing_mm=None,
        kernel: str = "gaussian", add_background: bool = True, non_negative: bool = False,
        deconvolution: Optional[str] = None, deconvolution_iterations: int = 10, alpha: float = 1.5,
        tolerance: float = 0.01, blurred_regions: Optional[BlurredRegions] = None,
        return_convergence: bool = False, progress=None, cancel=None):
    """Region-based voxel-wise correction (RBV), optionally followed by intra-regional deconvolution.

    Args:
        pet, labels, probabilities, region_ids, fwhm_mm, spacing_mm, kernel, add_background,
            blurred_regions: as :func:`.regional.gtm`.
        non_negative: constrain the GTM values to be >= 0.
        deconvolution: None, ``"vc"`` or ``"rl"`` (RBV+VC, RBV+RL); deconvolution_iterations,
            alpha, tolerance: its settings (see :mod:`.deconvolution`).
        return_convergence: also return the deconvolution's ``{"vc" or "rl": Convergence}`` (``{}``
            without deconvolution).

    Returns: float32 ``[z, y, x]`` in the PET's units (and the convergence records if asked).
    """
    pet, blurred, values = _regions_with_gtm_values(
        pet, labels=labels, probabilities=probabilities, region_ids=region_ids, fwhm_mm=fwhm_mm,
        spacing_mm=spacing_mm, kernel=kernel, add_background=add_background, non_negative=non_negative,
        blurred_regions=blurred_regions, progress=scaled(progress, 0.0, 0.5), cancel=cancel)
    corrected = _region_ratio_correction(pet, blurred.regions.combine(values), blurred.blurred_combination(values))
    report(progress, 0.6, "RBV done")
    corrected, convergence = intraregional_deconvolution(
        corrected, blurred, deconvolution, iterations=deconvolution_iterations, alpha=alpha, tolerance=tolerance,
        progress=scaled(progress, 0.6, 1.0), cancel=cancel)
    corrected = _ensure_finite(corrected, "RBV")
    return (corrected, convergence) if return_convergence else corrected


def iterative_yang(pet, *, labels=None, probabilities=None, region_ids=None, fwhm_mm=None, spacing_mm=None,
                   iterations: int = 10, kernel: str = "gaussian", add_background: bool = True,
                   deconvolution: Optional[str] = None, deconvolution_iterations: int = 10, alpha: float = 1.5,
                   tolerance: float = 0.01, blurred_regions: Optional[BlurredRegions] = None,
                   return_convergence: bool = False, progress=None, cancel=None):
    """Iterative Yang (iY), optionally followed by intra-regional deconvolution (iY+VC, iY+RL).

    Args as :func:`rbv`; ``iterations``: number of iY updates (10 as PETPVC; always all run).
    Warns when a regional mean of the result still changed by more than
    :data:`IY_CONVERGENCE_TOLERANCE` in the last update (not converged: raise ``iterations``).
    return_convergence: also return ``{"iy": Convergence, ("vc" or "rl": Convergence)}``.

    Returns: float32 ``[z, y, x]`` in the PET's units (and the convergence records if asked).
    """
    if int(iterations) != iterations or iterations < 1:
        raise PVCInputError(f"iterations must be a whole number >= 1, got {iterations}")
    pet = checked_pet(pet)
    blurred = prepared_regions(pet, labels=labels, probabilities=probabilities, region_ids=region_ids, names=None,
                               fwhm_mm=fwhm_mm, spacing_mm=spacing_mm, kernel=kernel, add_background=add_background,
                               blurred_regions=blurred_regions, progress=scaled(progress, 0.0, 0.4), cancel=cancel)
    estimate = pet
    means = np.maximum(blurred.regions.means(estimate), 0.0)
    for k in range(int(iterations)):
        estimate = _region_ratio_correction(pet, blurred.regions.combine(means), blurred.blurred_combination(means))
        previous, means = means, np.maximum(blurred.regions.means(estimate), 0.0)
        report(progress, 0.4 + 0.3 * (k + 1) / iterations, f"iterative Yang {k + 1}/{iterations}")
        raise_if_cancelled(cancel)
    convergence = {"iy": _iy_convergence(blurred, previous, means, int(iterations))}
    estimate, deconvolved = intraregional_deconvolution(
        estimate, blurred, deconvolution, iterations=deconvolution_iterations, alpha=alpha, tolerance=tolerance,
        progress=scaled(progress, 0.7, 1.0), cancel=cancel)
    estimate = _ensure_finite(estimate, "iterative Yang")
    return (estimate, {**convergence, **deconvolved}) if return_convergence else estimate


def _iy_convergence(blurred: BlurredRegions, previous: np.ndarray, means: np.ndarray, iterations: int) -> Convergence:
    """iY's last change of the regional means (see :data:`IY_CHANGE`), with a warning above
    :data:`IY_CONVERGENCE_TOLERANCE` naming the region that moved most."""
    scale = np.maximum(np.abs(means), IY_CHANGE_FLOOR * max(float(np.abs(means).max()), np.finfo(float).tiny))
    changes = np.abs(means - previous) / scale
    worst = int(np.argmax(changes))
    change = float(changes[worst])
    if change > IY_CONVERGENCE_TOLERANCE:
        region = blurred.regions.regions[worst]
        warnings.warn(f"iterative Yang has not converged after {iterations} iterations: the mean of region "
                      f"{region.region_id}" + (f" ({region.name})" if region.name else "") +
                      f" still changed by {100 * change:.2g} % in the last one (more than "
                      f"{100 * IY_CONVERGENCE_TOLERANCE:g} %); raise the iterations (command line: --iterations)",
                      UserWarning, stacklevel=3)
    return Convergence(iterations, iterations, "iterations", change, IY_CONVERGENCE_TOLERANCE, IY_CHANGE)


def _divide_clamped(numerator: np.ndarray, fraction: np.ndarray, members: np.ndarray, counts: list) -> np.ndarray:
    """``numerator / max(fraction, MIN_BLURRED_FRACTION)``; counts clamped ``members`` voxels into ``counts``."""
    clamped = fraction < MIN_BLURRED_FRACTION
    counts.append(int(np.count_nonzero(clamped & members)))
    return numerator / np.maximum(fraction, MIN_BLURRED_FRACTION)


def _warn_clamped(clamped: int, members: int, method: str) -> None:
    if clamped:
        warnings.warn(f"{method}: {clamped} of {members} voxels ({100.0 * clamped / max(members, 1):.2g} %) see less "
                      f"than {MIN_BLURRED_FRACTION:g} of their region after blurring; their division was clamped "
                      f"at {MIN_BLURRED_FRACTION:g} (values there are uncertain)", UserWarning, stacklevel=3)


def multi_target_correction(pet, *, labels=None, probabilities=None, region_ids=None, fwhm_mm=None,
                            spacing_mm=None, kernel: str = "gaussian", add_background: bool = True,
                            non_negative: bool = False, blurred_regions: Optional[BlurredRegions] = None,
                            progress=None, cancel=None) -> np.ndarray:
    """Multi-target correction (MTC): each region corrected for the spill-in of all the others.

    Args as :func:`rbv` (without deconvolution). Voxels in no region are 0 (add_background=False).

    Returns: float32 ``[z, y, x]`` in the PET's units.
    """
    pet, blurred, values = _regions_with_gtm_values(
        pet, labels=labels, probabilities=probabilities, region_ids=region_ids, fwhm_mm=fwhm_mm,
        spacing_mm=spacing_mm, kernel=kernel, add_background=add_background, non_negative=non_negative,
        blurred_regions=blurred_regions, progress=scaled(progress, 0.0, 0.6), cancel=cancel)
    spill = blurred.blurred_combination(values)
    corrected = np.zeros(pet.shape, dtype=np.float32)
    clamped: list[int] = []
    members = 0
    for index, (region, value) in enumerate(zip(blurred.regions.regions, values)):
        own = blurred.blurred_region(index, region.box)
        numerator = pet[region.box] - spill[region.box] + np.float32(value) * own
        inside = region.weights >= 0.5
        members += int(np.count_nonzero(inside))
        corrected[region.box] += region.weights * _divide_clamped(numerator, own, inside, clamped)
        report(progress, 0.6 + 0.4 * (index + 1) / len(values), "MTC")
    _warn_clamped(sum(clamped), members, "MTC")
    return _ensure_finite(corrected, "MTC")


# --- Mueller-Gaertner ----------------------------------------------------------------------------

def erosion_radius_voxels(spacing_mm) -> int:
    """PETPVC's WM erosion radius (voxels) for the mean voxel size: 6 at <= 1 mm, 3 at >= 2.5 mm,
    else round(8 - 2 * size)."""
    size = float(np.mean(spacing_mm))
    if size <= 1.0:
        return 6
    if size >= 2.5:
        return 3
    return int(np.floor(8.0 - 2.0 * size + 0.5))


def eroded_wm_core(wm_mask: np.ndarray, box, shape, radius: int) -> np.ndarray:
    """``wm_mask`` (over ``box`` of a grid of ``shape``, ``[z, y, x]``) eroded by ITK's
    ``BinaryBallStructuringElement`` of ``radius`` voxels, as PETPVC's ``BinaryErodeImageFilter``:
    the ball holds the offsets ``d`` with ``|d| <= radius + 0.5``, and the image border counts as
    foreground (ITK's default). A voxel is kept when no non-WM voxel lies within ``radius + 0.5``,
    found by ITK's exact (Maurer) distance map of the non-WM voxels: 3x faster than the erosion.
    """
    import SimpleITK as sitk

    # Outside the box every voxel is non-WM; beyond the image border ITK assumes foreground, as
    # does the distance map (nothing non-WM there): pad with non-WM only inside the grid.
    padding = [(int(s.start > 0), int(s.stop < n)) for s, n in zip(box, shape)]
    outside = np.pad(~wm_mask, padding, constant_values=True).view(np.uint8)
    inner = tuple(slice(before, before + size) for (before, _), size in zip(padding, wm_mask.shape))
    if not outside.any():
        return np.ones(wm_mask.shape, dtype=bool)
    # Keep the distance image alive while its array view is read (a view of a freed image is garbage).
    distance_image = sitk.SignedMaurerDistanceMap(sitk.GetImageFromArray(outside), insideIsPositive=False,
                                                  squaredDistance=True, useImageSpacing=False)
    squared = sitk.GetArrayViewFromImage(distance_image)
    return squared[inner] > (radius + 0.5) ** 2


def eroded_wm_mean(pet: np.ndarray, wm_region, spacing_mm, wm_threshold: float = 0.5) -> float:
    """Mean PET over the WM mask (``WM > wm_threshold``) eroded as PETPVC does (:func:`eroded_wm_core`
    with :func:`erosion_radius_voxels`)."""
    radius = erosion_radius_voxels(spacing_mm)
    core = eroded_wm_core(wm_region.weights > wm_threshold, wm_region.box, pet.shape, radius)
    if not np.any(core):
        raise PVCInputError(f"MG: the WM mask eroded by {radius} voxels is empty; give wm_value='gtm' "
                            "or a number (the WM activity, PET units)")
    return float(pet[wm_region.box][core].mean(dtype=np.float64))


def blur_tissue_maps(*, gm, wm, csf=None, fwhm_mm, spacing_mm, kernel: str = "gaussian", shape=None,
                     progress=None, cancel=None) -> BlurredRegions:
    """GM/WM(/CSF) probability maps (``[z, y, x]``, in [0, 1]) as blurred regions numbered
    GM 1, WM 2, CSF 3, plus the non-brain background (``1 - sum``, number 0, added silently)."""
    maps = {"GM": gm, "WM": wm} if csf is None else {"GM": gm, "WM": wm, "CSF": csf}
    regions = RegionSet.from_probabilities(maps, region_ids=[GM_ID, WM_ID, CSF_ID][:len(maps)], shape=shape,
                                           warn_background=False)
    return blur_region_set(regions, fwhm_mm=fwhm_mm, spacing_mm=spacing_mm, kernel=kernel,
                           progress=progress, cancel=cancel)


def mg_compartment_values(pet, tissues: BlurredRegions, *, wm_value="eroded", csf_value=None) -> dict:
    """The WM (and CSF) activity MG subtracts, PET units: ``{"wm": float, "csf": float or None}``.

    wm_value: ``"eroded"`` (mean PET over the eroded WM, as PETPVC), ``"gtm"`` (the non-negative
    GTM value of the WM map over GM/WM/CSF/background, PETPVE12's modified MG) or a number.
    csf_value: None (no CSF term), ``"gtm"``, or a number; needs a CSF map.
    """
    pet = checked_pet(pet)
    ids = tissues.regions.region_ids.tolist()
    if csf_value is not None and CSF_ID not in ids:
        raise PVCInputError("MG: a CSF value needs a CSF probability map (csf=...)")
    for name, value, allowed in (("wm_value", wm_value, WM_VALUE_SOURCES), ("csf_value", csf_value, ("gtm",))):
        if isinstance(value, str) and value not in allowed:
            raise PVCInputError(f"MG: {name} must be one of {', '.join(allowed)} or a number, got {value!r}")
    regional = None
    if "gtm" in (wm_value, csf_value):
        regional = gtm(pet, blurred_regions=tissues, non_negative=True, kernel=tissues.kernel)
    if wm_value == "eroded":
        wm = eroded_wm_mean(pet, tissues.regions.regions[tissues.regions.index_of(WM_ID)], tissues.spacing_mm)
    elif wm_value == "gtm":
        wm = regional.value_of(WM_ID)
    else:
        wm = float(wm_value)
    if csf_value is None:
        csf = None
    elif csf_value == "gtm":
        csf = regional.value_of(CSF_ID)
    else:
        csf = float(csf_value)
    if not np.isfinite(wm) or (csf is not None and not np.isfinite(csf)):
        raise PVCInputError(f"MG: WM/CSF values must be finite numbers, got {wm}, {csf}")
    return {"wm": wm, "csf": csf}


def mueller_gaertner(pet, *, gm=None, wm=None, csf=None, fwhm_mm=None, spacing_mm=None, wm_value="eroded",
                     csf_value=None, gm_threshold: float = 0.5, kernel: str = "gaussian",
                     blurred_tissues: Optional[BlurredRegions] = None, progress=None, cancel=None) -> np.ndarray:
    """Mueller-Gaertner GM correction.

    Args:
        pet: observed PET ``[z, y, x]`` (PET units).
        gm, wm, csf: tissue probability maps ``[z, y, x]`` in [0, 1] on the PET grid (csf optional).
        fwhm_mm: PSF FWHM in mm ``(x, y, z)`` or one number; spacing_mm: voxel size ``(x, y, z)`` mm.
        wm_value, csf_value: sources of the WM and CSF activity, see :func:`mg_compartment_values`.
        gm_threshold: the GM mask is ``gm > gm_threshold``.
        kernel: ``"gaussian"`` or ``"itk"``.
        blurred_tissues: the maps already blurred by :func:`blur_tissue_maps` (then gm/wm/csf may
            be left out), to share blurs with other calls.

    Returns: float32 ``[z, y, x]``: inside the GM mask ``(g - C_WM h*WM - C_CSF h*CSF) / h*GM``
    (the blurred GM fraction clamped at :data:`MIN_BLURRED_FRACTION`); everywhere else the input
    PET, unchanged. Values outside [0, 10 C_WM] are kept (PETPVC zeroes them) and counted in a warning.
    """
    pet = checked_pet(pet)
    if not 0.0 <= gm_threshold < 1.0:
        raise PVCInputError(f"MG: gm_threshold must lie in [0, 1), got {gm_threshold}")
    if blurred_tissues is None:
        if gm is None or wm is None:
            raise PVCInputError("MG needs GM and WM probability maps (gm=..., wm=...)")
        if fwhm_mm is None or spacing_mm is None:
            raise PVCInputError("give the PSF FWHM (fwhm_mm) and the voxel size (spacing_mm), both in mm (x, y, z)")
        blurred_tissues = blur_tissue_maps(gm=gm, wm=wm, csf=csf, fwhm_mm=fwhm_mm, spacing_mm=spacing_mm,
                                           kernel=kernel, shape=pet.shape, progress=scaled(progress, 0.0, 0.7),
                                           cancel=cancel)
    tissues = prepared_regions(pet, labels=None, probabilities=None, region_ids=None, names=None,
                               fwhm_mm=fwhm_mm, spacing_mm=spacing_mm, kernel=kernel, add_background=True,
                               blurred_regions=blurred_tissues)
    values = mg_compartment_values(pet, tissues, wm_value=wm_value, csf_value=csf_value)
    gm_index = tissues.regions.index_of(GM_ID)
    gm_region = tissues.regions.regions[gm_index]
    box = gm_region.box
    mask = gm_region.weights > gm_threshold
    if not np.any(mask):
        raise PVCInputError(f"MG: no voxel has GM probability above {gm_threshold}; check the GM map")
    numerator = pet[box] - np.float32(values["wm"]) * tissues.blurred_region(tissues.regions.index_of(WM_ID), box)
    if values["csf"] is not None:
        numerator -= np.float32(values["csf"]) * tissues.blurred_region(tissues.regions.index_of(CSF_ID), box)
    clamped: list[int] = []
    corrected_gm = _divide_clamped(numerator, tissues.blurred_region(gm_index, box), mask, clamped)
    _warn_clamped(clamped[0], int(np.count_nonzero(mask)), "MG")
    corrected = pet.copy()
    corrected[box][mask] = corrected_gm[mask]
    _warn_out_of_range(corrected_gm[mask], values["wm"])
    report(progress, 1.0, "MG done")
    return _ensure_finite(corrected, "MG")


def _warn_out_of_range(gm_values: np.ndarray, wm: float) -> None:
    if wm <= 0:
        return
    outside = int(np.count_nonzero((gm_values < 0) | (gm_values > MG_RANGE_FACTOR * wm)))
    if outside:
        warnings.warn(f"MG: {outside} of {gm_values.size} GM voxels lie outside [0, {MG_RANGE_FACTOR:g} x WM value "
                      f"= {MG_RANGE_FACTOR * wm:.4g}] (PETPVC sets such voxels to 0; kept here): check the "
                      "registration of the tissue maps, the PSF and the WM value", UserWarning, stacklevel=3)
