"""The classical PVC engine on phantoms whose answer is known exactly.

Phantom: piecewise-constant activity on a 64^3 grid of 2 mm voxels (regions: a 2-voxel cortex-like
outer shell, white matter, a thin inner shell, two small spheres, a thin plane, the background),
blurred with the same PSF as the correction uses and no noise: GTM, Labbe, RBV, MTC and MG must
return the true values; iY must converge to them.
"""

import warnings

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from PETPartialVolumeCorrectionLib import classical
from PETPartialVolumeCorrectionLib.classical import psf, regional, voxelwise
from PETPartialVolumeCorrectionLib.classical.voxelwise import erosion_radius_voxels
from PETPartialVolumeCorrectionLib.errors import PVCInputError

SPACING = (2.0, 2.0, 2.0)
FWHM = 6.0
TRUE_VALUES = {0: 0.3, 1: 4.0, 2: 1.0, 3: 2.5, 4: 6.0, 5: 0.5, 6: 3.0}
EXACT = 1e-4


def make_labels(n: int = 64) -> np.ndarray:
    z, y, x = np.mgrid[:n, :n, :n].astype(float) - n / 2 + 0.5
    radius = np.sqrt(x ** 2 + (1.2 * y) ** 2 + (0.9 * z) ** 2)
    labels = np.zeros((n, n, n), np.int32)
    labels[radius < 26] = 1                                     # outer shell, ~2 voxels: cortex-like
    labels[radius < 24] = 2                                     # white matter
    labels[(radius < 21) & (radius > 19)] = 3                   # thin inner shell
    labels[np.sqrt((x - 6) ** 2 + y ** 2 + z ** 2) < 5] = 4     # nucleus
    labels[np.sqrt((x + 8) ** 2 + (y - 3) ** 2 + z ** 2) < 3] = 5  # small nucleus
    labels[(np.abs(x) < 1.5) & (radius < 18)] = 6               # thin plane
    return labels


def activity(labels: np.ndarray, values=TRUE_VALUES) -> np.ndarray:
    table = np.zeros(labels.max() + 1, np.float32)
    for label, value in values.items():
        table[label] = value
    return table[labels]


def relative_error(estimate, truth) -> float:
    return float(np.max(np.abs(np.asarray(estimate) - truth)) / np.max(np.abs(truth)))


def true_region_values(result) -> np.ndarray:
    return np.array([TRUE_VALUES[int(i)] for i in result.region_ids])


@pytest.fixture(scope="module")
def labels():
    return make_labels()


@pytest.fixture(scope="module")
def truth(labels):
    return activity(labels)


@pytest.fixture(scope="module")
def observed(truth):
    return psf.gaussian_blur(truth, FWHM, SPACING)


@pytest.fixture(scope="module")
def noisy(observed):
    rng = np.random.default_rng(3)
    return (observed * (1 + 0.05 * rng.standard_normal(observed.shape))).astype(np.float32)


@pytest.fixture(autouse=True)
def quiet_background_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the regions leave")
        yield


# --- PSF --------------------------------------------------------------------------------------------

def test_itk_kernel_reproduces_simpleitk_discrete_gaussian():
    rng = np.random.default_rng(0)
    volume = rng.random((20, 24, 28)).astype(np.float32)
    spacing, fwhm = (1.5, 2.0, 2.5), (8.0, 6.0, 7.0)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(spacing)
    variance = [(f / psf.FWHM_PER_SIGMA) ** 2 for f in fwhm]
    reference = sitk.GetArrayFromImage(sitk.DiscreteGaussian(image, variance, 32, 0.01, True))
    ours = psf.gaussian_blur(volume, fwhm, spacing, kernel="itk")
    assert np.max(np.abs(ours - reference)) < 1e-5


def test_itk_kernel_is_narrower_than_nominal_as_in_petpvc():
    kernel = psf.kernel_1d(8.0 / psf.FWHM_PER_SIGMA / 1.5, "itk")
    offsets = np.arange(len(kernel)) - len(kernel) // 2
    effective_fwhm = np.sqrt(np.sum(kernel * offsets ** 2)) * psf.FWHM_PER_SIGMA * 1.5
    assert 7.7 < effective_fwhm < 7.85
    assert kernel.sum() == pytest.approx(1.0)


def test_blur_acts_along_the_right_axes():
    volume = np.zeros((41, 41, 41), np.float32)
    volume[20, 20, 20] = 1.0
    fwhm_xyz, spacing_xyz = (3.0, 6.0, 12.0), (1.0, 1.5, 2.0)
    blurred = psf.gaussian_blur(volume, fwhm_xyz, spacing_xyz)
    for axis, (fwhm, spacing) in zip((2, 1, 0), zip(fwhm_xyz, spacing_xyz)):
        profile = blurred.sum(axis=tuple(a for a in range(3) if a != axis))
        offsets_mm = (np.arange(41) - 20) * spacing
        measured = np.sqrt(np.sum(profile * offsets_mm ** 2) / profile.sum()) * psf.FWHM_PER_SIGMA
        assert measured == pytest.approx(fwhm, rel=0.03)


def test_threaded_blur_equals_single_thread_blur():
    rng = np.random.default_rng(1)
    volume = rng.random((130, 128, 128)).astype(np.float32)
    kernels = psf.psf_kernels((4.0, 6.0, 9.0), (1.0, 1.2, 1.5))
    assert np.array_equal(psf.blur(volume, kernels, threads=2), psf.blur(volume, kernels, threads=1))


def test_blur_keeps_constants_and_float64():
    constant = np.full((10, 12, 14), 2.5)
    blurred = psf.gaussian_blur(constant, 8.0, (1.0, 1.0, 1.0), kernel="itk")
    assert blurred.dtype == np.float64
    assert np.allclose(blurred, 2.5)


@pytest.mark.parametrize("fwhm", [0.5, 20.0, (8.0, 8.0, 16.0)])
def test_implausible_psf_warns(fwhm):
    with pytest.warns(UserWarning, match="implausible"):
        psf.check_fwhm(fwhm)


@pytest.mark.parametrize("fwhm", [-1.0, float("nan"), (8.0, 8.0), "eight", 50.0, (8.0, 8.0, 20.5)])
def test_bad_psf_is_refused(fwhm):
    with pytest.raises(PVCInputError, match="FWHM"):
        psf.check_fwhm(fwhm)


# --- exact answers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", ["gaussian", "itk"])
def test_regional_and_rbv_return_true_values(labels, truth, kernel):
    observed = psf.gaussian_blur(truth, FWHM, SPACING, kernel=kernel)
    shared = classical.blur_regions(labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING, kernel=kernel)
    for solve in (classical.gtm, classical.labbe):
        for non_negative in (False, True):
            result = solve(observed, blurred_regions=shared, non_negative=non_negative)
            assert result.kernel == kernel
            assert relative_error(result.values, true_region_values(result)) < EXACT
    assert relative_error(classical.rbv(observed, blurred_regions=shared), truth) < EXACT
    assert relative_error(classical.multi_target_correction(observed, blurred_regions=shared), truth) < EXACT


def test_uncorrected_means_and_counts(labels, observed):
    result = classical.gtm(observed, labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING)
    for label, count, mean in zip(result.region_ids, result.voxel_counts, result.uncorrected_means):
        assert count == np.count_nonzero(labels == label)
        assert mean == pytest.approx(observed[labels == label].mean(dtype=np.float64), rel=1e-6)


def test_probability_maps_give_the_same_values(labels, observed):
    stack = np.stack([(labels == i).astype(np.float32) for i in range(1, 7)])
    result = classical.gtm(observed, probabilities=stack, fwhm_mm=FWHM, spacing_mm=SPACING)
    assert result.region_ids.tolist() == [1, 2, 3, 4, 5, 6, 0]
    assert relative_error(result.values, true_region_values(result)) < EXACT
    named = classical.labbe(observed, probabilities={"cortex": stack[0], "wm": stack[1]}, region_ids=[1, 2],
                            fwhm_mm=FWHM, spacing_mm=SPACING)
    assert named.names == ["cortex", "wm", "background (added)"]


def test_rbv_followed_by_intraregional_deconvolution_keeps_exact_values(labels, truth, observed):
    shared = classical.blur_regions(labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING)
    for deconvolution in ("vc", "rl"):
        assert relative_error(classical.rbv(observed, blurred_regions=shared, deconvolution=deconvolution),
                              truth) < EXACT


def test_iterative_yang_converges_to_true_values(labels, truth, observed):
    shared = classical.blur_regions(labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="iterative Yang has not converged")
        errors = [relative_error(classical.iterative_yang(observed, blurred_regions=shared, iterations=n), truth)
                  for n in (1, 3, 10, 30)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:]))
    assert errors[-1] < EXACT


def test_iterative_yang_reports_its_convergence_and_warns_when_not_converged(labels, observed):
    shared = classical.blur_regions(labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING)
    with pytest.warns(UserWarning, match="iterative Yang has not converged after 3 iterations: the mean of region"):
        _, early = classical.iterative_yang(observed, blurred_regions=shared, iterations=3, return_convergence=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, late = classical.iterative_yang(observed, blurred_regions=shared, iterations=30, return_convergence=True)
    assert early["iy"].iterations_run == 3 and early["iy"].stopped_by == "iterations"
    assert early["iy"].last_relative_change > voxelwise.IY_CONVERGENCE_TOLERANCE > late["iy"].last_relative_change


def test_deconvolution_reports_iterations_run_and_why_it_stopped(observed):
    _, vc = classical.van_cittert(observed, fwhm_mm=FWHM, spacing_mm=SPACING, iterations=50, tolerance=0.01,
                                  return_convergence=True)
    assert vc["vc"].stopped_by == "tolerance" and 1 < vc["vc"].iterations_run < 50
    assert vc["vc"].last_relative_change < 0.01
    _, vc_all = classical.van_cittert(observed, fwhm_mm=FWHM, spacing_mm=SPACING, iterations=2, tolerance=0.0,
                                      return_convergence=True)
    assert (vc_all["vc"].iterations_run, vc_all["vc"].stopped_by) == (2, "iterations")
    _, rl = classical.richardson_lucy(observed, fwhm_mm=FWHM, spacing_mm=SPACING, iterations=4, return_convergence=True)
    assert (rl["rl"].iterations_run, rl["rl"].stopped_by) == (4, "iterations") and rl["rl"].last_relative_change > 0


def tissue_phantom(labels, smooth: bool):
    """GM (shells), WM (uniform), CSF (nuclei and plane) maps; activity GM 4, WM 1, CSF 0.5, else 0."""
    masks = {"gm": np.isin(labels, [1, 3]), "wm": labels == 2, "csf": np.isin(labels, [4, 5, 6])}
    maps = {k: m.astype(np.float32) for k, m in masks.items()}
    if smooth:  # partial-volume maps that still sum to <= 1
        maps = {k: psf.gaussian_blur(m, 2.5, SPACING) for k, m in maps.items()}
    truth = 4.0 * maps["gm"] + 1.0 * maps["wm"] + 0.5 * maps["csf"]
    return maps, truth, psf.gaussian_blur(truth, FWHM, SPACING)


@pytest.mark.parametrize("smooth", [False, True])
def test_mueller_gaertner_returns_true_gm_value(labels, smooth):
    maps, _, observed = tissue_phantom(labels, smooth)
    gm_mask = maps["gm"] > 0.5
    for wm_value, csf_value in (("gtm", "gtm"), (1.0, 0.5)):
        corrected = classical.mueller_gaertner(observed, **maps, fwhm_mm=FWHM, spacing_mm=SPACING,
                                               wm_value=wm_value, csf_value=csf_value)
        assert np.max(np.abs(corrected[gm_mask] - 4.0)) < 4.0 * EXACT
        assert np.array_equal(corrected[~gm_mask], observed[~gm_mask])


def test_mueller_gaertner_eroded_wm_value(labels):
    maps, _, _ = tissue_phantom(labels, smooth=False)
    truth = 4.0 * maps["gm"] + 1.0 * maps["wm"]
    observed = psf.gaussian_blur(truth, 1.5, SPACING)  # PSF well inside the 4-voxel erosion
    tissues = classical.blur_tissue_maps(gm=maps["gm"], wm=maps["wm"], fwhm_mm=1.5, spacing_mm=SPACING)
    assert classical.mg_compartment_values(observed, tissues, wm_value="eroded")["wm"] == pytest.approx(1.0, rel=1e-6)
    corrected = classical.mueller_gaertner(observed, blurred_tissues=tissues, wm_value="eroded")
    assert np.max(np.abs(corrected[maps["gm"] > 0.5] - 4.0)) < 4.0 * EXACT


@pytest.mark.parametrize("touches_border", [False, True])
def test_wm_erosion_keeps_the_voxels_itk_binary_ball_keeps(touches_border):
    """PETPVC erodes WM with ITK's BinaryErode and a BinaryBall of radius 6 (at <= 1 mm voxels)."""
    n = 48
    z, y, x = np.mgrid[:n, :n, :n] - n / 2 + 0.5
    wm = np.sqrt(x ** 2 + (1.1 * y) ** 2 + (0.8 * z) ** 2) < 19
    wm[(np.abs(x) < 2) & (y > 0)] = False                     # a cleft: the ball must not fit across it
    if touches_border:
        wm[:, :, :4] = True
    reference = sitk.GetArrayFromImage(sitk.BinaryErode(sitk.GetImageFromArray(wm.astype(np.uint8)),
                                                        [6, 6, 6], sitk.sitkBall, 0, 1)).astype(bool)
    box = ndimage.find_objects(wm.astype(np.uint8))[0]
    core = voxelwise.eroded_wm_core(wm[box], box, wm.shape, erosion_radius_voxels((1.0, 1.0, 1.0)))
    assert 500 < reference.sum() < wm.sum() / 3
    assert np.array_equal(core, reference[box]) and reference[box].sum() == reference.sum()


def test_erosion_radius_follows_petpvc():
    assert [erosion_radius_voxels((s,) * 3) for s in (0.8, 1.0, 1.5, 2.0, 2.5, 4.0)] == [6, 6, 5, 4, 3, 3]


# --- PSF near zero, linearity, axes ------------------------------------------------------------------

def test_psf_near_zero_returns_the_input(labels, truth):
    fwhm = 0.01
    with pytest.warns(UserWarning, match="implausible"):
        shared = classical.blur_regions(labels=labels, fwhm_mm=fwhm, spacing_mm=SPACING)
    result = classical.gtm(truth, blurred_regions=shared)
    assert np.allclose(result.values, result.uncorrected_means, rtol=1e-6)
    for method in (classical.rbv, classical.iterative_yang, classical.multi_target_correction):
        assert np.allclose(method(truth, blurred_regions=shared), truth, rtol=1e-6)
    with pytest.warns(UserWarning, match="implausible"):
        assert np.allclose(classical.van_cittert(truth, fwhm_mm=fwhm, spacing_mm=SPACING), truth, rtol=1e-6)
        assert np.allclose(classical.richardson_lucy(truth, fwhm_mm=fwhm, spacing_mm=SPACING), truth, rtol=1e-6)
        maps, tissue_truth, _ = tissue_phantom(labels, smooth=False)
        corrected = classical.mueller_gaertner(tissue_truth, **maps, fwhm_mm=fwhm, spacing_mm=SPACING,
                                               wm_value="gtm", csf_value="gtm")
        assert np.allclose(corrected, tissue_truth, rtol=1e-6)


def every_method(pet, labels, maps):
    shared = classical.blur_regions(labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING)
    psf_args = {"fwhm_mm": FWHM, "spacing_mm": SPACING}
    return {
        "gtm": classical.gtm(pet, blurred_regions=shared).values,
        "labbe": classical.labbe(pet, blurred_regions=shared).values,
        "rbv": classical.rbv(pet, blurred_regions=shared),
        "iy": classical.iterative_yang(pet, blurred_regions=shared),
        "mtc": classical.multi_target_correction(pet, blurred_regions=shared),
        "rbv+vc": classical.rbv(pet, blurred_regions=shared, deconvolution="vc"),
        "mg": classical.mueller_gaertner(pet, **maps, **psf_args, wm_value="eroded"),
        "vc": classical.van_cittert(pet, **psf_args),
        "rl": classical.richardson_lucy(pet, **psf_args),
    }


def test_every_method_is_linear_in_the_activity_scale(labels, noisy):
    maps, _, _ = tissue_phantom(labels, smooth=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = every_method(noisy, labels, maps)
        scaled = every_method(np.float32(3.7) * noisy, labels, maps)
    for name in plain:
        assert np.max(np.abs(scaled[name] - 3.7 * plain[name])) <= 1e-4 * np.max(np.abs(3.7 * plain[name])), name
        assert np.all(np.isfinite(plain[name])), name


def test_anisotropic_psf_is_applied_along_the_right_axes(labels, truth):
    fwhm_xyz = (3.0, 6.0, 12.0)
    observed = psf.gaussian_blur(truth, fwhm_xyz, SPACING)
    right = classical.gtm(observed, labels=labels, fwhm_mm=fwhm_xyz, spacing_mm=SPACING)
    swapped = classical.gtm(observed, labels=labels, fwhm_mm=fwhm_xyz[::-1], spacing_mm=SPACING)
    assert relative_error(right.values, true_region_values(right)) < EXACT
    assert relative_error(swapped.values, true_region_values(swapped)) > 0.01
    assert relative_error(classical.rbv(observed, labels=labels, fwhm_mm=fwhm_xyz, spacing_mm=SPACING), truth) < EXACT


def test_anisotropic_spacing_is_applied_along_the_right_axes(labels, truth):
    spacing_xyz = (1.0, 2.0, 3.0)
    observed = psf.gaussian_blur(truth, FWHM, spacing_xyz)
    right = classical.gtm(observed, labels=labels, fwhm_mm=FWHM, spacing_mm=spacing_xyz)
    swapped = classical.gtm(observed, labels=labels, fwhm_mm=FWHM, spacing_mm=spacing_xyz[::-1])
    assert relative_error(right.values, true_region_values(right)) < EXACT
    assert relative_error(swapped.values, true_region_values(swapped)) > 0.01


# --- regions, background, shared blurs ---------------------------------------------------------------

def test_background_is_added_with_a_warning(labels, observed):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="background"):
            classical.gtm(observed, labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING)


def test_no_background_when_regions_cover_the_image(labels, observed):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = classical.gtm(observed, labels=labels, region_ids=range(7), fwhm_mm=FWHM, spacing_mm=SPACING)
    assert result.region_ids.tolist() == list(range(7))
    assert relative_error(result.values, true_region_values(result)) < EXACT


def test_without_background_the_uncovered_voxels_are_not_modelled(labels, observed):
    result = classical.gtm(observed, labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING, add_background=False)
    assert 0 not in result.region_ids
    assert relative_error(result.values, true_region_values(result)) > 1e-3  # biased, as documented


def test_background_gets_a_free_number_when_0_is_a_region(labels, observed):
    result = classical.gtm(observed, labels=labels, region_ids=[0, 1, 2, 3, 4, 5], fwhm_mm=FWHM, spacing_mm=SPACING)
    assert result.region_ids.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert result.names[-1] == "background (added)"


def test_shared_blurs_give_the_same_images(labels, noisy):
    shared = classical.blur_regions(labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING)
    alone = classical.rbv(noisy, labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING)
    assert np.array_equal(alone, classical.rbv(noisy, blurred_regions=shared))


def test_shared_blurs_with_another_psf_are_refused(labels, observed):
    shared = classical.blur_regions(labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING)
    with pytest.raises(PVCInputError, match="differ"):
        classical.gtm(observed, blurred_regions=shared, fwhm_mm=8.0, spacing_mm=SPACING)
    with pytest.raises(PVCInputError, match="differ"):
        classical.gtm(observed, blurred_regions=shared, fwhm_mm=FWHM, spacing_mm=SPACING, kernel="itk")


def test_zero_regional_activity_gives_no_nan(labels):
    truth = activity(labels, {**TRUE_VALUES, 4: 0.0, 0: 0.0})
    observed = psf.gaussian_blur(truth, FWHM, SPACING)
    for method, tolerance in ((classical.rbv, EXACT), (classical.multi_target_correction, EXACT),
                              (classical.iterative_yang, 0.01)):  # iY nears a zero region slowly (and says so)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="iterative Yang has not converged")
            corrected = method(observed, labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING)
        assert np.all(np.isfinite(corrected))
        assert relative_error(corrected, truth) < tolerance


# --- bad input ---------------------------------------------------------------------------------------

def gtm_with(pet, **regions):
    return classical.gtm(pet, fwhm_mm=FWHM, spacing_mm=SPACING, **regions)


def test_non_integer_labels_are_refused(labels, observed):
    with pytest.raises(PVCInputError, match="non-integer"):
        gtm_with(observed, labels=labels + 0.5)


def test_float_labels_holding_whole_numbers_are_accepted(labels, observed):
    result = gtm_with(observed, labels=labels.astype(np.float32))
    assert relative_error(result.values, true_region_values(result)) < EXACT


def test_negative_labels_are_refused(labels, observed):
    with pytest.raises(PVCInputError, match="negative"):
        gtm_with(observed, labels=labels - 1)


def test_mismatched_grid_is_refused(labels, observed):
    with pytest.raises(PVCInputError, match="resample"):
        gtm_with(observed, labels=labels[:, :, :-1])


def test_4d_labels_are_refused(labels, observed):
    with pytest.raises(PVCInputError, match="3D"):
        gtm_with(observed, labels=labels[None])


def test_empty_region_is_refused(labels, observed):
    with pytest.raises(PVCInputError, match=r"\[9\] are empty"):
        gtm_with(observed, labels=labels, region_ids=[1, 2, 9])


def test_region_outside_the_field_of_view_is_refused(labels, observed):
    cut = observed.copy()
    cut[labels == 5] = 0.0
    with pytest.raises(PVCInputError, match="outside the PET field of view"):
        gtm_with(cut, labels=labels)


def test_probabilities_outside_0_1_are_refused(labels, observed):
    stack = np.stack([(labels == i).astype(np.float32) for i in (1, 2)])
    stack[0, 10, 10, 10] = 1.2
    with pytest.raises(PVCInputError, match="outside"):
        gtm_with(observed, probabilities=stack)
    stack[0, 10, 10, 10] = -0.2
    with pytest.raises(PVCInputError, match="outside"):
        gtm_with(observed, probabilities=stack)


def test_probabilities_summing_above_1_are_refused(labels, observed):
    overlapping = {"a": (labels >= 1).astype(np.float32), "b": (labels == 2).astype(np.float32)}
    with pytest.raises(PVCInputError, match="sum to"):
        gtm_with(observed, probabilities=overlapping)


def test_probabilities_slightly_above_1_are_rescaled(labels, observed):
    stack = np.stack([(labels == i).astype(np.float32) for i in range(7)])
    stack[:, labels == 2] *= 1.004
    result = gtm_with(observed, probabilities=stack, region_ids=range(7))
    assert relative_error(result.values, true_region_values(result)) < EXACT


def test_regions_must_be_given_exactly_once(labels, observed):
    with pytest.raises(PVCInputError, match="exactly one"):
        gtm_with(observed)
    with pytest.raises(PVCInputError, match="exactly one"):
        gtm_with(observed, labels=labels, probabilities=[(labels == 1).astype(np.float32)])


def test_non_finite_pet_is_refused(labels, observed):
    broken = observed.copy()
    broken[1, 2, 3] = np.nan
    for method in (classical.gtm, classical.rbv, classical.iterative_yang):
        with pytest.raises(PVCInputError, match="NaN"):
            method(broken, labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING)
    with pytest.raises(PVCInputError, match="NaN"):
        classical.van_cittert(broken, fwhm_mm=FWHM, spacing_mm=SPACING)


def test_indistinguishable_regions_are_refused(labels, observed):
    half = (labels == 2).astype(np.float32) * 0.5
    with pytest.raises(PVCInputError, match="singular"):
        gtm_with(observed, probabilities=[half, half, (labels == 1).astype(np.float32)])


def test_ill_conditioned_matrix_warns(labels, observed, monkeypatch):
    monkeypatch.setattr(regional, "CONDITION_NUMBER_WARNING", 2.0)
    with pytest.warns(UserWarning, match="ill-conditioned"):
        result = gtm_with(observed, labels=labels)
    assert result.condition_number > 2.0


def test_mueller_gaertner_bad_inputs(labels, observed):
    maps, _, _ = tissue_phantom(labels, smooth=False)
    psf_args = {"fwhm_mm": FWHM, "spacing_mm": SPACING}
    with pytest.raises(PVCInputError, match="CSF"):
        classical.mueller_gaertner(observed, gm=maps["gm"], wm=maps["wm"], csf_value="gtm", **psf_args)
    with pytest.raises(PVCInputError, match="wm_value"):
        classical.mueller_gaertner(observed, gm=maps["gm"], wm=maps["wm"], wm_value="mean", **psf_args)
    with pytest.raises(PVCInputError, match="gm_threshold"):
        classical.mueller_gaertner(observed, gm=maps["gm"], wm=maps["wm"], gm_threshold=1.5, **psf_args)
    with pytest.raises(PVCInputError, match="GM and WM"):
        classical.mueller_gaertner(observed, gm=maps["gm"], **psf_args)
    thin_wm = (labels == 6).astype(np.float32)
    with pytest.raises(PVCInputError, match="eroded"):
        classical.mueller_gaertner(observed, gm=maps["gm"], wm=thin_wm, **psf_args)


def test_mueller_gaertner_flags_clamped_and_out_of_range_voxels(labels):
    maps, _, observed = tissue_phantom(labels, smooth=False)
    lonely_gm = maps["gm"].copy()
    lonely_gm[4, 4, 4] = 1.0  # an isolated GM voxel: at 6 mm FWHM it keeps < 5 % of its own activity
    with pytest.warns(UserWarning, match="clamped"):
        classical.mueller_gaertner(observed, gm=lonely_gm, wm=maps["wm"], fwhm_mm=FWHM, spacing_mm=SPACING,
                                   wm_value=1.0)
    with pytest.warns(UserWarning, match="outside"):
        corrected = classical.mueller_gaertner(observed, **maps, fwhm_mm=FWHM, spacing_mm=SPACING, wm_value=0.1)
    assert np.any(corrected[maps["gm"] > 0.5] > 10 * 0.1)  # kept, not zeroed as PETPVC does


def test_deconvolution_bad_settings(observed):
    with pytest.raises(PVCInputError, match="iterations"):
        classical.van_cittert(observed, fwhm_mm=FWHM, spacing_mm=SPACING, iterations=0)
    with pytest.raises(PVCInputError, match="alpha"):
        classical.van_cittert(observed, fwhm_mm=FWHM, spacing_mm=SPACING, alpha=-1.0)
    with pytest.raises(PVCInputError, match="kernel"):
        classical.richardson_lucy(observed, fwhm_mm=FWHM, spacing_mm=SPACING, kernel="box")


# --- deconvolution and results -----------------------------------------------------------------------

def test_deconvolution_moves_a_blurred_image_towards_the_truth(truth, observed):
    before = np.abs(observed - truth).mean()
    for method in (classical.van_cittert, classical.richardson_lucy):
        restored = method(observed, fwhm_mm=FWHM, spacing_mm=SPACING)
        assert restored.min() >= 0.0
        assert np.abs(restored - truth).mean() < 0.8 * before


def test_regional_table_files(labels, observed, tmp_path):
    names = {1: "cortex", 2: "white matter"}
    result = classical.gtm(observed, labels=labels, names=names, fwhm_mm=FWHM, spacing_mm=SPACING)
    rows = result.to_table()
    assert rows[0] == {"label": 1, "name": "cortex", "voxels": int(np.count_nonzero(labels == 1)),
                       "uncorrected_mean": pytest.approx(result.uncorrected_means[0]),
                       "corrected_value": pytest.approx(4.0, rel=EXACT),
                       "noise_amplification": pytest.approx(np.abs(np.linalg.inv(result.matrix)[0]).sum()),
                       "merged_labels": []}
    csv_path = result.write_csv(tmp_path / "gtm.csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "label,name,voxels,uncorrected_mean,corrected_value,noise_amplification,merged_labels"
    assert lines[2].startswith("2,white matter,")
    assert float(lines[2].split(",")[4]) == pytest.approx(1.0, rel=EXACT)
    import json
    record = json.loads(result.write_json(tmp_path / "gtm.json").read_text())
    assert record["kernel"] == "gaussian" and record["condition_number"] == pytest.approx(result.condition_number)
    assert [row["label"] for row in record["regions"]] == result.region_ids.tolist()
    with pytest.raises(PVCInputError, match="exists"):
        result.write_csv(csv_path)
    result.write_csv(csv_path, force=True)
