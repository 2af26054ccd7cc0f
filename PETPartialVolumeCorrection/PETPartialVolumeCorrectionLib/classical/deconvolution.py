"""Deconvolution PVC (no regions needed): reblurred Van Cittert and Richardson-Lucy; and their
intra-regional forms, which follow RBV or iY (PETPVC's RBV+VC, IY+RL, ...).

- Van Cittert, reblurred: ``f_0 = g``; ``f_{k+1} = max(0, f_k + alpha h*(g - h*f_k))``; stops when
  ``||f_{k+1} - f_k|| / ||g|| < tolerance`` or after ``iterations``.
- Richardson-Lucy: ``f_0 = g+``; ``f_{k+1} = f_k h*(g+ / h*f_k)``, ``g+ = max(g, 0)``; the ratio is
  0 where ``h*f_k`` is below 1e-6 of ``max(g+)``.

Each iterative method can report a :class:`Convergence` (``return_convergence=True``): iterations
run, why it stopped, and the last relative change ``||f_k - f_{k-1}|| / ||g||``.

The intra-regional forms replace ``h*`` by ``H_R f = sum_j R_j h*(R_j f) / h*R_j`` (the blur kept
within each region, see :meth:`.regions.BlurredRegions.intraregional_blur`), so they sharpen detail
inside regions without moving activity across region borders that RBV/iY already corrected.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional

import numpy as np

from ..errors import PVCInputError
from ..geometry import check_spacing
from ..progress import raise_if_cancelled, report
from .psf import KERNELS, blur, check_fwhm, psf_kernels
from .regional import checked_pet
from .regions import BlurredRegions

DECONVOLUTIONS = ("vc", "rl")
#: Richardson-Lucy's ratio is 0 where the reblurred estimate is below this fraction of max(g+).
RL_RATIO_FLOOR = 1e-6

BlurOperator = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Convergence:
    """How an iterative method ended.

    Attributes:
        iterations_run: iterations done; max_iterations: the limit asked for.
        stopped_by: ``"tolerance"`` (the change fell below ``tolerance``) or ``"iterations"`` (the
            limit was reached).
        last_relative_change: the change of the last iteration (see the method for its definition).
        tolerance: the stopping (or, for iY, the convergence-warning) threshold; None when none applies.
        change_measure: what ``last_relative_change`` measures, in words.
    """

    iterations_run: int
    max_iterations: int
    stopped_by: str
    last_relative_change: float
    tolerance: Optional[float]
    change_measure: str

    def to_dict(self) -> dict:
        return asdict(self)


IMAGE_CHANGE = "||f_k - f_(k-1)|| / ||g||"
POSITIVE_IMAGE_CHANGE = "||f_k - f_(k-1)|| / ||g+||"


def relative_change(following: np.ndarray, current: np.ndarray, norm: float) -> float:
    """``||following - current|| / norm`` (0 when ``norm`` is 0)."""
    return float(np.linalg.norm(following - current)) / norm if norm > 0 else 0.0


def _checked_iterations(iterations: int) -> int:
    if int(iterations) != iterations or iterations < 1:
        raise PVCInputError(f"iterations must be a whole number >= 1, got {iterations}")
    return int(iterations)


def van_cittert_iterations(observed: np.ndarray, apply_blur: BlurOperator, *, alpha: float = 1.5,
                           iterations: int = 10, tolerance: float = 0.01, progress=None,
                           cancel=None) -> tuple[np.ndarray, Convergence]:
    """Reblurred Van Cittert with the blur operator ``apply_blur`` (see the module docstring)."""
    iterations = _checked_iterations(iterations)
    if not np.isfinite(alpha) or alpha <= 0:
        raise PVCInputError(f"Van Cittert step alpha must be > 0, got {alpha}")
    norm = float(np.linalg.norm(observed))
    estimate = observed.copy()
    stopped_by, change, done = "iterations", 0.0, 0
    for done in range(1, iterations + 1):
        update = np.float32(alpha) * apply_blur(observed - apply_blur(estimate))
        following = np.maximum(estimate + update, 0.0)
        change = relative_change(following, estimate, norm)
        estimate = following
        report(progress, done / iterations, f"Van Cittert iteration {done}/{iterations}")
        raise_if_cancelled(cancel)
        if change < tolerance:
            stopped_by = "tolerance"
            break
    return estimate, Convergence(done, iterations, stopped_by, change, float(tolerance), IMAGE_CHANGE)


def richardson_lucy_iterations(observed: np.ndarray, apply_blur: BlurOperator, *, iterations: int = 10,
                               progress=None, cancel=None) -> tuple[np.ndarray, Convergence]:
    """Richardson-Lucy with the blur operator ``apply_blur`` (see the module docstring); it always
    runs ``iterations`` (no tolerance, as PETPVC)."""
    iterations = _checked_iterations(iterations)
    positive = np.maximum(observed, 0.0)
    floor = RL_RATIO_FLOOR * float(positive.max())
    norm = float(np.linalg.norm(positive))
    estimate = positive.copy()
    change = 0.0
    for k in range(iterations):
        reblurred = apply_blur(estimate)
        ratio = np.divide(positive, reblurred, out=np.zeros_like(positive), where=reblurred > floor)
        following = estimate * apply_blur(ratio)
        change = relative_change(following, estimate, norm)
        estimate = following
        report(progress, (k + 1) / iterations, f"Richardson-Lucy iteration {k + 1}/{iterations}")
        raise_if_cancelled(cancel)
    return estimate, Convergence(iterations, iterations, "iterations", change, None, POSITIVE_IMAGE_CHANGE)


def _psf_operator(fwhm_mm, spacing_mm, kernel: str) -> BlurOperator:
    if kernel not in KERNELS:
        raise PVCInputError(f"unknown PSF kernel {kernel!r}; use one of {', '.join(KERNELS)}")
    if spacing_mm is None or fwhm_mm is None:
        raise PVCInputError("give the PSF FWHM (fwhm_mm) and the voxel size (spacing_mm), both in mm (x, y, z)")
    check_spacing(spacing_mm)
    kernels = psf_kernels(check_fwhm(fwhm_mm), spacing_mm, kernel)
    return lambda volume: blur(volume, kernels)


def van_cittert(pet, *, fwhm_mm, spacing_mm, alpha: float = 1.5, iterations: int = 10, tolerance: float = 0.01,
                kernel: str = "gaussian", return_convergence: bool = False, progress=None, cancel=None):
    """Reblurred Van Cittert deconvolution of ``pet`` (``[z, y, x]``, any units).

    Args:
        fwhm_mm: PSF FWHM in mm ``(x, y, z)`` or one number; spacing_mm: voxel size ``(x, y, z)`` mm.
        alpha: step size; iterations: at most this many; tolerance: stop when the relative change
            ``||f_{k+1} - f_k|| / ||g||`` falls below it.
        kernel: ``"gaussian"`` or ``"itk"``.
        return_convergence: also return ``{"vc": Convergence}``.

    Returns: float32 ``[z, y, x]`` in the PET's units, >= 0 (and the convergence record if asked).
    """
    pet = checked_pet(pet)
    image, convergence = van_cittert_iterations(pet, _psf_operator(fwhm_mm, spacing_mm, kernel), alpha=alpha,
                                                iterations=iterations, tolerance=tolerance, progress=progress,
                                                cancel=cancel)
    return (image, {"vc": convergence}) if return_convergence else image


def richardson_lucy(pet, *, fwhm_mm, spacing_mm, iterations: int = 10, kernel: str = "gaussian",
                    return_convergence: bool = False, progress=None, cancel=None):
    """Richardson-Lucy deconvolution of ``pet`` (``[z, y, x]``, any units; negatives count as 0).

    Args as :func:`van_cittert` (``{"rl": Convergence}``). Returns float32 ``[z, y, x]`` in the
    PET's units, >= 0.
    """
    pet = checked_pet(pet)
    image, convergence = richardson_lucy_iterations(pet, _psf_operator(fwhm_mm, spacing_mm, kernel),
                                                    iterations=iterations, progress=progress, cancel=cancel)
    return (image, {"rl": convergence}) if return_convergence else image


def intraregional_deconvolution(image: np.ndarray, blurred: BlurredRegions, deconvolution: Optional[str], *,
                                iterations: int = 10, alpha: float = 1.5, tolerance: float = 0.01,
                                progress=None, cancel=None) -> tuple[np.ndarray, dict]:
    """Van Cittert (``"vc"``) or Richardson-Lucy (``"rl"``) with the intra-regional blur, applied to
    an RBV or iY image, and ``{name: Convergence}``; ``None`` returns ``image`` unchanged and ``{}``."""
    if deconvolution is None:
        return image, {}
    if deconvolution not in DECONVOLUTIONS:
        raise PVCInputError(f"unknown deconvolution {deconvolution!r}; use one of {', '.join(DECONVOLUTIONS)} or None")
    if deconvolution == "vc":
        image, convergence = van_cittert_iterations(image, blurred.intraregional_blur, alpha=alpha,
                                                    iterations=iterations, tolerance=tolerance, progress=progress,
                                                    cancel=cancel)
    else:
        image, convergence = richardson_lucy_iterations(image, blurred.intraregional_blur, iterations=iterations,
                                                        progress=progress, cancel=cancel)
    return image, {deconvolution: convergence}
