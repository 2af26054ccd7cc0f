"""PET-only spatial normalisation: register a PET scan to the amyloid PET templates (MNI space).

SimpleITK, Mattes mutual information inside the template's dilated brain mask, multi-resolution:
1. the PET is smoothed and resampled to voxels of at least 2 mm (the template's), values scaled by
   their 99th percentile; the start aligns the centres of mass (image moments);
2. a similarity transform (rotation, one scale, translation) at 8 and 4 mm, then a full affine at
   4 mm, against the mean of the negative and positive templates;
3. the adaptive template (the idea of CapAIBL, Bourgeat et al. 2018, NeuroImage 183:73): the PET,
   resampled into MNI space, is fitted as a x negative + b x positive inside the brain (non-negative
   least squares), and the affine is refined at 2 mm against that mix;
4. optionally a smooth deformable stage: a cubic B-spline (control points about 45 mm apart) at 4 mm,
   LBFGSB.

The quality figure is the correlation (Pearson, inside the brain mask) of the normalised PET with
the fitted template. Also checked: the affine's scale (cube root of its determinant, the head's
size relative to the MNI brain) and how much of the whole cerebellum (the reference region) lies
inside the PET's field of view. Below :data:`REFUSE_CORRELATION`, a scale outside
:data:`REFUSE_SCALE` or a cerebellum cut by the field of view the normalisation is refused
(:class:`PVCInputError`); below :data:`WARN_CORRELATION` or outside :data:`PLAUSIBLE_SCALE` it is
kept with a warning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, optimize

from ..errors import PVCInputError
from ..geometry import Geometry
from ..io import to_sitk_image
from .template import MNI_2MM_GEOMETRY, MNI_2MM_SHAPE, AmyloidTemplate

#: Correlation with the fitted template (inside the brain) below which the normalisation is refused
#: / kept with a warning. Simulated scans score 0.81-0.95, median 0.88 (docs/quantification.md);
#: a smooth blob 0.3, noise 0.
REFUSE_CORRELATION = 0.7
WARN_CORRELATION = 0.85
#: Head size relative to the MNI brain (cube root of the affine's determinant): refused outside
#: REFUSE_SCALE, a warning outside PLAUSIBLE_SCALE (adult heads are about 0.85-1.05 of the MNI brain).
REFUSE_SCALE = (0.65, 1.5)
PLAUSIBLE_SCALE = (0.78, 1.2)
#: Fraction of the whole-cerebellum VOI that must lie inside the PET's field of view.
MIN_REFERENCE_COVERAGE = 0.95
#: Width the brain mask is dilated by for the metric (the brain's edge against the skull), mm.
METRIC_MASK_MARGIN_MM = 10.0
#: Mattes mutual information settings.
HISTOGRAM_BINS = 32
SAMPLING_FRACTION = 0.1
SAMPLING_SEED = 11
#: B-spline mesh (intervals per axis over the template grid, about 45 mm each).
BSPLINE_MESH = (4, 4, 4)
BSPLINE_ITERATIONS = 20


@dataclass
class Normalisation:
    """The result of :func:`normalise_pet`.

    Attributes:
        transform: SimpleITK transform mapping template (MNI, LPS mm) points to PET points.
        positive_fraction: b / (a + b) of the fitted template mix (0 negative, 1 positive).
        fitted_template: the fitted mix on the template grid, in the PET's (scaled) units.
        correlation: the quality figure (see the module docstring).
        scale: cube root of the affine's determinant.
        reference_coverage: fraction of the whole cerebellum inside the PET's field of view.
        deformable: whether the B-spline stage ran.
        warnings: why the result is doubtful, one line each (empty when it is not).
    """

    transform: object
    positive_fraction: float
    fitted_template: np.ndarray
    correlation: float
    scale: float
    reference_coverage: float
    deformable: bool
    warnings: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready record (the transform as its parameters)."""
        affine = self.affine_transform()
        return {"method": "PET-only: affine" + (" + B-spline" if self.deformable else "")
                          + " registration to the project's simulated amyloid PET templates (MNI152, 2 mm), "
                          "Mattes mutual information",
                "quality_correlation": self.correlation, "refuse_below": REFUSE_CORRELATION,
                "warn_below": WARN_CORRELATION, "scale": self.scale,
                "reference_coverage": self.reference_coverage, "template_positive_fraction": self.positive_fraction,
                "status": "warning" if self.warnings else "ok", "warnings": list(self.warnings),
                "affine_matrix_mni_to_pet": np.asarray(affine.GetMatrix()).reshape(3, 3).tolist(),
                "affine_translation_mm": list(affine.GetTranslation()),
                "affine_center_mm": list(affine.GetCenter()), "timings": self.timings}

    def affine_transform(self):
        """The affine part of :attr:`transform`."""
        import SimpleITK as sitk

        if self.deformable:
            return sitk.AffineTransform(sitk.CompositeTransform(self.transform).GetNthTransform(0))
        return sitk.AffineTransform(self.transform)


def _moving_image(volume: np.ndarray, geometry: Geometry):
    """The PET as a SimpleITK image at voxels of at least 2 mm, values / their 99th percentile."""
    import SimpleITK as sitk

    image = to_sitk_image(np.clip(volume, 0, None).astype(np.float32), geometry)
    spacing = np.maximum(np.asarray(geometry.spacing), MNI_2MM_GEOMETRY.spacing[0])
    sigma = np.sqrt(np.maximum(spacing**2 - np.asarray(geometry.spacing) ** 2, 0.0)) / 2.3548
    if np.any(sigma > 0):
        image = sitk.SmoothingRecursiveGaussian(image, [max(float(s), 1e-3) for s in sigma])
    size = [int(np.ceil(n * s / t)) for n, s, t in zip(image.GetSize(), geometry.spacing, spacing)]
    image = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), tuple(spacing),
                          image.GetDirection(), 0.0, sitk.sitkFloat32)
    values = sitk.GetArrayViewFromImage(image)
    scale = float(np.percentile(values[values > 0], 99)) if np.any(values > 0) else 1.0
    return sitk.Cast(image / scale, sitk.sitkFloat32)


def _registration(fixed_mask, shrink, smoothing_mm, iterations: int):
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(HISTOGRAM_BINS)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(SAMPLING_FRACTION, SAMPLING_SEED)
    method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel(list(shrink))
    method.SetSmoothingSigmasPerLevel(list(smoothing_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=iterations,
                                                    relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    return method


def _affine_stages(fixed, moving, fixed_mask):
    """Similarity (8, 4 mm), then affine (4 mm): an AffineTransform, template -> PET."""
    import SimpleITK as sitk

    similarity = sitk.CenteredTransformInitializer(fixed, moving, sitk.Similarity3DTransform(),
                                                   sitk.CenteredTransformInitializerFilter.MOMENTS)
    method = _registration(fixed_mask, (4, 2), (4.0, 2.0), 60)
    method.SetInitialTransform(similarity, inPlace=True)
    method.Execute(fixed, moving)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(similarity.GetCenter())
    affine.SetMatrix(similarity.GetMatrix())
    affine.SetTranslation(similarity.GetTranslation())
    return _refine_affine(fixed, moving, fixed_mask, affine, (2,), (2.0,), 60)


def _refine_affine(fixed, moving, fixed_mask, affine, shrink, smoothing_mm, iterations):
    method = _registration(fixed_mask, shrink, smoothing_mm, iterations)
    method.SetInitialTransform(affine, inPlace=True)
    method.Execute(fixed, moving)
    return affine


def _bspline_stage(fixed, moving, fixed_mask, affine):
    """A cubic B-spline on top of ``affine``, at 4 mm (one level): a CompositeTransform."""
    import SimpleITK as sitk

    bspline = sitk.BSplineTransformInitializer(fixed, list(BSPLINE_MESH))
    method = _registration(fixed_mask, (2,), (2.0,), BSPLINE_ITERATIONS)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=BSPLINE_ITERATIONS)
    method.SetMovingInitialTransform(affine)
    method.SetInitialTransform(bspline, inPlace=True)
    method.Execute(fixed, moving)
    return sitk.CompositeTransform([affine, bspline])


def resample_to_template(volume: np.ndarray, geometry: Geometry, transform) -> np.ndarray:
    """``volume`` (on ``geometry``) resampled (linear) onto the MNI 2 mm grid through ``transform``
    (template -> PET points): float32 ``[z, y, x]``, 0 outside the PET's field of view."""
    import SimpleITK as sitk

    reference = to_sitk_image(np.zeros(MNI_2MM_SHAPE, np.float32), MNI_2MM_GEOMETRY)
    moved = sitk.Resample(to_sitk_image(volume.astype(np.float32, copy=False), geometry), reference, transform,
                          sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(moved)


def _fit_mix(pet_mni: np.ndarray, template: AmyloidTemplate) -> tuple[np.ndarray, float]:
    mask = template.brain_mask
    basis = np.stack([template.negative[mask], template.positive[mask]], axis=1).astype(np.float64)
    weights, _ = optimize.nnls(basis, pet_mni[mask].astype(np.float64))
    if weights.sum() <= 0:
        raise PVCInputError("the PET does not resemble an amyloid PET after registration (no positive fit of "
                            "the templates); check the image and its orientation")
    fitted = (weights[0] * template.negative + weights[1] * template.positive).astype(np.float32)
    return fitted, float(weights[1] / weights.sum())


def _correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _check(correlation: float, scale: float, coverage: float) -> list:
    """Refuse (raise) or return warning lines for the quality figures."""
    if coverage < MIN_REFERENCE_COVERAGE:
        raise PVCInputError(f"spatial normalisation refused: only {100 * coverage:.0f} % of the whole cerebellum "
                            f"(the reference region) lies inside the PET's field of view (need "
                            f"{100 * MIN_REFERENCE_COVERAGE:.0f} %)")
    if correlation < REFUSE_CORRELATION:
        raise PVCInputError(f"spatial normalisation refused: the PET correlates {correlation:.2f} with the template "
                            f"inside the brain after registration (need >= {REFUSE_CORRELATION}); not a brain "
                            "amyloid PET, a wrong orientation in the header, or a failed registration")
    if not REFUSE_SCALE[0] <= scale <= REFUSE_SCALE[1]:
        raise PVCInputError(f"spatial normalisation refused: the registration scales the MNI brain by {scale:.2f} "
                            f"(plausible heads: {REFUSE_SCALE[0]}-{REFUSE_SCALE[1]}); check the voxel size in the "
                            "header")
    warnings = []
    if correlation < WARN_CORRELATION:
        warnings.append(f"registration quality is low: correlation {correlation:.2f} with the template inside the "
                        f"brain (below {WARN_CORRELATION}); check the QC figure")
    if not PLAUSIBLE_SCALE[0] <= scale <= PLAUSIBLE_SCALE[1]:
        warnings.append(f"unusual head size: {scale:.2f} x the MNI brain (usual {PLAUSIBLE_SCALE[0]}-"
                        f"{PLAUSIBLE_SCALE[1]}); check the QC figure and the voxel size")
    return warnings


def normalise_pet(volume: np.ndarray, geometry: Geometry, template: AmyloidTemplate, reference_mask: np.ndarray,
                  deformable: bool = False) -> Normalisation:
    """Register the PET ``volume`` ([z, y, x] on ``geometry``) to ``template``; see the module docstring.

    Args:
        reference_mask: the whole-cerebellum VOI on the template grid (for the coverage check).
        deformable: add the B-spline stage after the affine.
    """
    import SimpleITK as sitk

    start = time.perf_counter()
    moving = _moving_image(volume, geometry)
    mean_template = 0.5 * (template.negative + template.positive)
    fixed = to_sitk_image(mean_template.astype(np.float32), MNI_2MM_GEOMETRY)
    margin = int(round(METRIC_MASK_MARGIN_MM / MNI_2MM_GEOMETRY.spacing[0]))
    metric_mask = ndimage.binary_dilation(template.brain_mask, iterations=margin).astype(np.uint8)
    fixed_mask = to_sitk_image(metric_mask, MNI_2MM_GEOMETRY)
    affine = _affine_stages(fixed, moving, fixed_mask)
    timings = {"affine_s": time.perf_counter() - start}

    step = time.perf_counter()
    moving_array, moving_geometry = sitk.GetArrayFromImage(moving), _geometry_of(moving)
    fitted, positive_fraction = _fit_mix(resample_to_template(moving_array, moving_geometry, affine), template)
    fixed = to_sitk_image(fitted, MNI_2MM_GEOMETRY)
    affine = _refine_affine(fixed, moving, fixed_mask, affine, (1,), (0.0,), 40)
    transform = affine
    if deformable:
        transform = _bspline_stage(fixed, moving, fixed_mask, affine)
    timings["adaptive_template_and_refinement_s"] = time.perf_counter() - step

    pet_mni = resample_to_template(moving_array, moving_geometry, transform)
    fitted, positive_fraction = _fit_mix(pet_mni, template)
    correlation = _correlation(pet_mni, fitted, template.brain_mask)
    scale = float(abs(np.linalg.det(np.asarray(affine.GetMatrix()).reshape(3, 3))) ** (1.0 / 3.0))
    in_view = resample_to_template(np.ones(volume.shape, np.float32), geometry, transform) > 0.5
    coverage = float(np.count_nonzero(in_view & reference_mask) / max(np.count_nonzero(reference_mask), 1))
    warnings = _check(correlation, scale, coverage)
    timings["total_s"] = time.perf_counter() - start
    return Normalisation(transform, positive_fraction, fitted, correlation, scale, coverage, deformable,
                         warnings, timings)


def _geometry_of(image) -> Geometry:
    return Geometry(image.GetSpacing(), image.GetOrigin(), np.asarray(image.GetDirection()).reshape(3, 3))
