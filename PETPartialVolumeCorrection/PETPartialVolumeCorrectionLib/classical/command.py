"""``pet-pvc classical``: classical PVC of one PET image with a segmentation (or tissue maps).

:func:`run_methods` runs one or several methods on arrays, sharing the region blurs; the command
line (:func:`run_classical`) and the Slicer module (:func:`correct_classical`, in process) both use it.
The command writes into the output folder (names from :func:`output_names`), in the PET's own format
(NIfTI for a DICOM series): ``<stem>_<method>.<ext>`` per method (``rbv+vc`` -> ``_rbv_vc``; for
GTM and Labbe the image of each region filled with its corrected value), ``<stem>_<method>.csv``
and ``.json`` per regional method (GTM, Labbe), and ``<stem>_classical.json`` with the settings
(methods, PSF, kernel, regions, WM/CSF values, condition numbers, timings, warnings).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import PVCInputError
from ..progress import PROGRESS_STYLES, progress_reporter, raise_if_cancelled, report, scaled
from .psf import KERNELS

REGIONAL_METHODS = ("gtm", "labbe")
REGION_METHODS = ("rbv", "iy", "mtc", "rbv+vc", "rbv+rl", "iy+vc", "iy+rl")
MG_METHOD = "mg"
DECONVOLUTION_METHODS = ("vc", "rl")
METHODS = REGIONAL_METHODS + REGION_METHODS + (MG_METHOD,) + DECONVOLUTION_METHODS
#: Label values of GM, WM and CSF of a tissue label image (as the Slicer module's phantom labels).
DEFAULT_TISSUE_LABELS = (1, 2, 3)
#: ``--label-names`` value for FreeSurfer's built-in names and tissue types.
FREESURFER_TABLE = "freesurfer"


@dataclass
class ClassicalOptions:
    """Settings of a classical run (see docs/classical.md); per-axis values in ``(x, y, z)`` order.

    Attributes:
        fwhm_mm: PSF FWHM in mm ``(x, y, z)``; kernel: ``"gaussian"`` or ``"itk"``.
        region_ids, names, add_background, non_negative: the regions' options (:func:`.gtm`).
        min_region_voxels, small_region_pool: merging of small label regions
            (:meth:`.regions.RegionSet.from_labels`; 0: off).
        iterations: iY updates; deconvolution_iterations, alpha, tolerance: VC/RL settings.
        wm_value, csf_value, gm_threshold: MG's settings (:func:`.mueller_gaertner`).
        tissue_labels: GM, WM (, CSF) label values when MG takes its tissues from a label image.
        tissue_classes: ``{label: "gm" | "wm" | "csf" | None}`` (a colour table's tissue column).
            With neither, MG's tissues come from the names (FreeSurfer's, or GM/WM/CSF), else labels
            1,2,3 when the image holds no other, else FreeSurfer's label numbers (with a warning);
            see :func:`tissue_maps_from_labels`.
    """

    fwhm_mm: tuple
    kernel: str = "gaussian"
    region_ids: Optional[list] = None
    names: Optional[dict] = None
    add_background: bool = True
    non_negative: bool = False
    iterations: int = 10
    deconvolution_iterations: int = 10
    alpha: float = 1.5
    tolerance: float = 0.01
    wm_value: Union[str, float] = "eroded"
    csf_value: Union[str, float, None] = None
    gm_threshold: float = 0.5
    tissue_labels: Optional[tuple] = None
    tissue_classes: Optional[dict] = None
    min_region_voxels: int = 0
    small_region_pool: Optional[int] = None

    def __post_init__(self):
        self.fwhm_mm = tuple(float(f) for f in np.broadcast_to(np.asarray(self.fwhm_mm, dtype=float), (3,)))
        if int(self.min_region_voxels) != self.min_region_voxels or self.min_region_voxels < 0:
            raise PVCInputError(f"the minimum region size (--min-region-voxels) must be a whole number >= 0, "
                                f"got {self.min_region_voxels}")
        if self.tissue_labels is not None and len(self.tissue_labels) not in (2, 3):
            raise PVCInputError(f"tissue labels (--tissue-labels) are the GM, WM (and CSF) label values, "
                                f"got {self.tissue_labels}")


@dataclass
class ClassicalRun:
    """What :func:`run_methods` made: an image per method (``[z, y, x]`` float32, PET units), the
    GTM/Labbe tables, and a JSON-ready record of settings, condition numbers and timings."""

    images: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)


def parse_methods(text: str) -> list[str]:
    """Comma-separated method names, checked, in the order given, without repeats."""
    methods = [m.strip().lower() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise PVCInputError(f"unknown method(s) {unknown or [text]}; choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(methods))


def output_names(input_path, method: str) -> dict:
    """File names ``method`` writes for ``input_path``, by role: ``corrected`` (image), ``settings``
    (JSON of the run), and for GTM/Labbe ``table`` (CSV) and ``table_json``."""
    from ..io import image_stem, output_suffix

    stem, suffix = image_stem(input_path), output_suffix(input_path)
    base = f"{stem}_{method.replace('+', '_')}"
    names = {"corrected": base + suffix, "settings": f"{stem}_classical.json"}
    if method in REGIONAL_METHODS:
        names.update({"table": base + ".csv", "table_json": base + ".json"})
    return names


def tissue_maps_from_labels(labels: np.ndarray, options: ClassicalOptions, shape=None) -> tuple:
    """MG's GM, WM and CSF 0/1 maps (CSF None when absent) from a label image (checked against the
    PET grid's ``shape``), and a record of
    where the tissue classes came from. In order: ``options.tissue_classes``; ``options.tissue_labels``;
    the region names, when they name GM and WM (FreeSurfer's names, or GM/WM/CSF); labels 1, 2, 3
    when the image holds no other label; else FreeSurfer's label numbers, with a warning."""
    from .regions import checked_label_array, label_counts
    from .segmentation import (MG_CLASSES, freesurfer_color_table, tissue_classes_from_names, tissue_labels_by_class,
                               tissue_maps)

    labels = checked_label_array(labels, shape)
    present = label_counts(labels)[1]
    by_names = tissue_classes_from_names({label: name for label, name in (options.names or {}).items()
                                          if label in set(present.tolist())})
    if options.tissue_classes and any(v is not None for v in options.tissue_classes.values()):
        classes, source = options.tissue_classes, "colour table tissue column"
    elif options.tissue_labels is not None:
        classes, source = dict(zip(options.tissue_labels, MG_CLASSES)), "tissue labels"
    elif {"gm", "wm"} <= set(by_names.values()):
        classes, source = by_names, "region names"
    elif set(present.tolist()) <= {0, *DEFAULT_TISSUE_LABELS}:
        classes, source = dict(zip(DEFAULT_TISSUE_LABELS, MG_CLASSES)), "tissue labels (default 1,2,3)"
    else:
        classes, source = freesurfer_color_table(present).tissue_classes, "FreeSurfer label numbers"
    chosen = tissue_labels_by_class(classes, present)
    if source == "tissue labels":
        for tissue, value in zip(("GM", "WM"), options.tissue_labels):
            if value not in present:
                raise PVCInputError(f"the label image has no {tissue} voxels (label {value}); give the tissue label "
                                    "values (command line: --tissue-labels GM,WM,CSF)")
    gm, wm, csf = tissue_maps(labels, classes)
    if source == "FreeSurfer label numbers":
        warnings.warn("MG: tissue classes taken from FreeSurfer's label numbers (GM labels "
                      f"{_abbreviated(chosen['gm'])}, WM {_abbreviated(chosen['wm'])}, CSF "
                      f"{_abbreviated(chosen['csf'])}); if the segmentation is not FreeSurfer's, give its colour table "
                      "with a tissue column (--label-names) or --tissue-labels", UserWarning, stacklevel=3)
    return (gm, wm, csf), {"source": source, "labels": chosen}


def _abbreviated(values, count: int = 8) -> str:
    return str(values[:count])[:-1] + (f", ... {len(values)} in all]" if len(values) > count else "]")


def _check_inputs(methods, labels, probabilities, tissue_maps) -> None:
    needs_regions = [m for m in methods if m in REGIONAL_METHODS + REGION_METHODS]
    if needs_regions and labels is None and probabilities is None and tissue_maps is None:
        raise PVCInputError(f"method(s) {', '.join(needs_regions)} need regions: a label image (--labels), "
                            "probability maps (--probabilities) or tissue maps (--gm, --wm, --csf)")
    if labels is not None and probabilities is not None:
        raise PVCInputError("give the regions either as a label image or as probability maps, not both")
    if MG_METHOD in methods and tissue_maps is None and labels is None:
        raise PVCInputError("method mg needs GM and WM maps (--gm, --wm; --csf optional) or a label image "
                            "(--labels; its tissue classes from --label-names or --tissue-labels)")


def _parse_number_or(value, choices):
    if value is None or value in choices or isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except ValueError:
        raise PVCInputError(f"expected one of {', '.join(choices)} or a number, got {value!r}") from None


def run_methods(pet: np.ndarray, spacing_mm, methods, options: ClassicalOptions, *, labels=None,
                probabilities=None, tissue_maps=None, progress=None, cancel=None) -> ClassicalRun:
    """Run classical methods on one PET ``[z, y, x]``, blurring the regions (and tissue maps) once.

    Args:
        pet: the PET, PET units; spacing_mm: its voxel size ``(x, y, z)``.
        methods: names from :data:`METHODS`.
        labels / probabilities: the regions on the PET grid (region methods; labels also feed MG
            when ``tissue_maps`` is None, see :func:`tissue_maps_from_labels`).
        tissue_maps: ``(gm, wm, csf or None)`` probability maps on the PET grid (MG; also the
            region methods' regions, GM 1, WM 2, CSF 3, when neither labels nor probabilities are given).
    """
    from . import (blur_regions, blur_tissue_maps, gtm, iterative_yang, labbe, mg_compartment_values,
                   mueller_gaertner, multi_target_correction, rbv, richardson_lucy, van_cittert)

    methods = parse_methods(",".join(methods))
    _check_inputs(methods, labels, probabilities, tissue_maps)
    wm_value = _parse_number_or(options.wm_value, ("eroded", "gtm"))
    csf_value = _parse_number_or(options.csf_value, ("gtm",))
    psf_args = {"fwhm_mm": options.fwhm_mm, "spacing_mm": tuple(spacing_mm), "kernel": options.kernel}
    run = ClassicalRun(record={"methods": list(methods), "psf_fwhm_mm": dict(zip("xyz", options.fwhm_mm)),
                               "kernel": options.kernel, "spacing_mm": list(psf_args["spacing_mm"]),
                               "options": {k: v for k, v in asdict(options).items()
                                           if k not in ("fwhm_mm", "kernel", "names", "tissue_classes")}})
    timings = run.record["timings_s"] = {}
    conditions = run.record["condition_numbers"] = {}
    convergence = {}
    regions = tissues = None
    if any(m in REGIONAL_METHODS + REGION_METHODS for m in methods):
        start = time.perf_counter()
        region_names, region_ids, source = options.names, options.region_ids, "labels"
        if labels is None and probabilities is None:
            probabilities = {name: tissue for name, tissue in zip(("GM", "WM", "CSF"), tissue_maps) if tissue is not None}
            region_names, region_ids, source = None, None, "tissue maps (GM 1, WM 2, CSF 3)"
        elif labels is None:
            source = "probability maps"
        regions = blur_regions(labels=labels, probabilities=probabilities, region_ids=region_ids,
                               names=region_names, add_background=options.add_background, shape=pet.shape,
                               min_region_voxels=options.min_region_voxels,
                               small_region_pool=options.small_region_pool,
                               progress=scaled(progress, 0.0, 0.3), cancel=cancel, **psf_args)
        timings["blur_regions"] = round(time.perf_counter() - start, 3)
        background = regions.regions.background_index
        run.record["regions"] = {"source": source, "ids": regions.regions.region_ids.tolist(), "added_background_id": (
            None if background is None else int(regions.regions.region_ids[background])),
            "merged": {str(small): int(region.region_id) for region in regions.regions.regions
                       for small in region.merged_labels}}
    if MG_METHOD in methods:
        start = time.perf_counter()
        if tissue_maps is not None:
            (gm, wm, csf), tissue_record = tissue_maps, {"source": "tissue maps"}
        else:
            (gm, wm, csf), tissue_record = tissue_maps_from_labels(labels, options, pet.shape)
        tissues = blur_tissue_maps(gm=gm, wm=wm, csf=csf, shape=pet.shape, progress=scaled(progress, 0.3, 0.4),
                                   cancel=cancel, **psf_args)
        timings["blur_tissue_maps"] = round(time.perf_counter() - start, 3)

    deconvolution = {"deconvolution_iterations": options.deconvolution_iterations, "alpha": options.alpha,
                     "tolerance": options.tolerance}
    for number, method in enumerate(methods):
        step = scaled(progress, 0.4 + 0.6 * number / len(methods), 0.4 + 0.6 * (number + 1) / len(methods))
        report(step, 0.0, method)
        raise_if_cancelled(cancel)
        start = time.perf_counter()
        if method in REGIONAL_METHODS:
            table = (gtm if method == "gtm" else labbe)(pet, blurred_regions=regions,
                                                        non_negative=options.non_negative)
            conditions[method] = table.condition_number
            run.tables[method] = table
            run.images[method] = regions.regions.combine(table.values)
        elif method == "mtc":
            conditions.setdefault("gtm", gtm(pet, blurred_regions=regions,
                                             non_negative=options.non_negative).condition_number)
            run.images[method] = multi_target_correction(pet, blurred_regions=regions,
                                                         non_negative=options.non_negative)
        elif method.startswith("rbv"):
            conditions.setdefault("gtm", gtm(pet, blurred_regions=regions,
                                             non_negative=options.non_negative).condition_number)
            run.images[method], convergence[method] = rbv(
                pet, blurred_regions=regions, non_negative=options.non_negative, deconvolution=method[4:] or None,
                return_convergence=True, progress=step, cancel=cancel, **deconvolution)
        elif method.startswith("iy"):
            run.images[method], convergence[method] = iterative_yang(
                pet, blurred_regions=regions, iterations=options.iterations, deconvolution=method[3:] or None,
                return_convergence=True, progress=step, cancel=cancel, **deconvolution)
        elif method == MG_METHOD:
            values = mg_compartment_values(pet, tissues, wm_value=wm_value, csf_value=csf_value)
            run.record["mg"] = {"tissues": tissue_record, "wm_source": options.wm_value, "wm_value": values["wm"],
                                "csf_source": options.csf_value, "csf_value": values["csf"],
                                "gm_threshold": options.gm_threshold, "outside_gm_mask": "input PET, unchanged"}
            run.images[method] = mueller_gaertner(pet, blurred_tissues=tissues, wm_value=values["wm"],
                                                  csf_value=values["csf"], gm_threshold=options.gm_threshold)
        elif method == "vc":
            run.images[method], convergence[method] = van_cittert(
                pet, alpha=options.alpha, iterations=options.deconvolution_iterations, tolerance=options.tolerance,
                return_convergence=True, progress=step, cancel=cancel, **psf_args)
        else:
            run.images[method], convergence[method] = richardson_lucy(
                pet, iterations=options.deconvolution_iterations, return_convergence=True, progress=step,
                cancel=cancel, **psf_args)
        timings[method] = round(time.perf_counter() - start, 3)
    run.record["convergence"] = {method: {step: record.to_dict() for step, record in steps.items()}
                                 for method, steps in convergence.items() if steps}
    report(progress, 1.0, "done")
    return run


def user_warning_messages(caught) -> list[str]:
    """The distinct messages of the user-facing warnings (UserWarning, RuntimeWarning) in ``caught``."""
    return list(dict.fromkeys(str(w.message) for w in caught
                              if issubclass(w.category, (UserWarning, RuntimeWarning))))


def correct_classical(volume: np.ndarray, geometry, method: str, *, labels=None, probabilities=None,
                      tissue_maps=None, fwhm_mm, progress=None, cancel=None, **options) -> tuple[np.ndarray, dict]:
    """One classical method on an in-memory PET (the Slicer module's in-process run).

    Args:
        volume: PET ``[z, y, x]``; geometry: its :class:`~..geometry.Geometry`.
        method: a name from :data:`METHODS`.
        labels, probabilities, tissue_maps: see :func:`run_methods` (on the PET grid).
        fwhm_mm: PSF FWHM in mm ``(x, y, z)``; options: fields of :class:`ClassicalOptions`.

    Returns: the corrected image (GTM/Labbe: the regions filled with their corrected values) and
    the run's record, its warnings included (also under ``"regional_table"`` for GTM/Labbe).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = run_methods(volume, geometry.spacing, parse_methods(method),
                          ClassicalOptions(fwhm_mm=fwhm_mm, **options), labels=labels, probabilities=probabilities,
                          tissue_maps=tissue_maps, progress=progress, cancel=cancel)
    run.record["warnings"] = user_warning_messages(caught)
    if method in run.tables:
        run.record["regional_table"] = run.tables[method].to_dict()
    return run.images[method], run.record


# --- the command line ----------------------------------------------------------------------------

def parse_numbers(text: str, option: str) -> list[int]:
    """Comma-separated whole numbers given to ``option``."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise PVCInputError(f"{option} takes comma-separated whole numbers, got {text!r}") from None


def _on_pet_grid(volume, geometry, pet_shape, pet_geometry, path, resample: bool, interpolation: str):
    """``volume`` on the PET grid: as it is when the grids match, resampled when asked, else refused."""
    from ..grid import resample_to_native_grid

    if volume.shape == pet_shape and geometry.matches(pet_geometry):
        return volume
    if not resample:
        raise PVCInputError(f"{path} is not on the PET grid (shape {volume.shape[::-1]} vs {pet_shape[::-1]} (x, y, z), "
                            f"spacing {geometry.spacing} vs {pet_geometry.spacing} mm, or origin/direction differ); "
                            "resample it onto the PET, or pass --resample-labels (nearest neighbour for labels, "
                            "linear for probability maps)")
    return resample_to_native_grid(volume, geometry, pet_shape, pet_geometry, interpolation=interpolation)


def _check_resampled_labels(before: np.ndarray, before_geometry, after: np.ndarray, after_geometry, path) -> None:
    """Refuse labels that fall entirely outside the PET field of view; warn for those cut by half or more."""
    voxel_ratio = np.prod(after_geometry.spacing) / np.prod(before_geometry.spacing)
    ids_before, counts_before = np.unique(before[before > 0], return_counts=True)
    counts_after = dict(zip(*np.unique(after[after > 0], return_counts=True)))
    lost = [int(i) for i in ids_before if i not in counts_after]
    if lost:
        raise PVCInputError(f"{path}: region(s) {lost[:20]} lie outside the PET field of view after resampling; "
                            "check the registration, or leave them out with --region-ids")
    cut = [int(i) for i, n in zip(ids_before, counts_before) if counts_after[i] * voxel_ratio < 0.5 * n]
    if cut:
        warnings.warn(f"{path}: region(s) {cut[:20]} lie more than half outside the PET field of view",
                      UserWarning, stacklevel=2)


def _check_resampled_map(before: np.ndarray, before_geometry, after: np.ndarray, after_geometry, path) -> None:
    mass_before = float(before.sum(dtype=np.float64)) * np.prod(before_geometry.spacing)
    mass_after = float(np.clip(after, 0, None).sum(dtype=np.float64)) * np.prod(after_geometry.spacing)
    if mass_after <= 0:
        raise PVCInputError(f"{path}: the map lies outside the PET field of view after resampling")
    if mass_after < 0.5 * mass_before:
        warnings.warn(f"{path}: more than half of the map lies outside the PET field of view", UserWarning,
                      stacklevel=2)


def _read_labels(path, pet_shape, pet_geometry, resample: bool) -> np.ndarray:
    from ..io import read_label_image

    labels, geometry = read_label_image(path)
    if labels.shape == pet_shape and geometry.matches(pet_geometry):
        return labels
    resampled = _on_pet_grid(labels, geometry, pet_shape, pet_geometry, path, resample, "nearest")
    resampled = np.rint(resampled).astype(np.int32)
    _check_resampled_labels(labels, geometry, resampled, pet_geometry, path)
    return resampled


def _read_probability_maps(paths, pet_shape, pet_geometry, resample: bool) -> list[np.ndarray]:
    """3D probability maps, or the frames of one 4D file (PETPVC's mask format), on the PET grid."""
    from ..io import read_probability_maps

    sources = []
    for path in paths:
        frames, geometry = read_probability_maps(path)
        sources += [(frame, geometry, f"{path} frame {n}" if len(frames) > 1 else path)
                    for n, frame in enumerate(frames)]
    maps = []
    for volume, geometry, name in sources:
        on_grid = _on_pet_grid(volume, geometry, pet_shape, pet_geometry, name, resample, "linear")
        if on_grid is not volume:
            _check_resampled_map(volume, geometry, on_grid, pet_geometry, name)
        maps.append(on_grid)
    return maps


def _options_from_arguments(args) -> ClassicalOptions:
    from .segmentation import read_color_table

    table = read_color_table(args.label_names) if args.label_names and args.label_names != FREESURFER_TABLE else None
    return ClassicalOptions(
        fwhm_mm=tuple(args.psf), kernel=args.kernel,
        region_ids=parse_numbers(args.region_ids, "--region-ids") if args.region_ids else None,
        names=table.names if table else None, tissue_classes=table.tissue_classes if table else None,
        add_background=not args.no_background, non_negative=args.non_negative, iterations=args.iterations,
        deconvolution_iterations=args.deconvolution_iterations, alpha=args.alpha, tolerance=args.tolerance,
        wm_value=_parse_number_or(args.wm_value, ("eroded", "gtm")),
        csf_value=_parse_number_or(args.csf_value, ("gtm",)), gm_threshold=args.gm_threshold,
        tissue_labels=tuple(parse_numbers(args.tissue_labels, "--tissue-labels")) if args.tissue_labels else None,
        min_region_voxels=args.min_region_voxels,
        small_region_pool=args.small_region_pool)


def _read_inputs(args, methods):
    """The PET, its geometry, the regions and tissue maps on its grid, and every input path."""
    from ..io import read_image

    if (args.gm or args.wm) and not (args.gm and args.wm):
        raise PVCInputError("give both tissue maps --gm and --wm (--csf optional)")
    pet, geometry = read_image(args.input)
    inputs, labels, probabilities, tissue_maps = [args.input], None, None, None
    if args.labels:
        labels = _read_labels(args.labels, pet.shape, geometry, args.resample_labels)
        inputs.append(args.labels)
    if args.label_names:
        inputs.append(args.label_names)
    if args.probabilities:
        probabilities = _read_probability_maps(args.probabilities, pet.shape, geometry, args.resample_labels)
        inputs.extend(args.probabilities)
    if args.gm:
        paths = [args.gm, args.wm] + ([args.csf] if args.csf else [])
        maps = _read_probability_maps(paths, pet.shape, geometry, args.resample_labels)
        tissue_maps = (maps[0], maps[1], maps[2] if args.csf else None)
        inputs.extend(paths)
    return pet, geometry, labels, probabilities, tissue_maps, inputs


def run_classical(args) -> int:
    from .. import __version__
    from ..io import staged_outputs, write_staged_image, write_text_atomic

    methods = parse_methods(args.method)
    options = _options_from_arguments(args)
    _check_inputs(methods, args.labels, args.probabilities, (args.gm, args.wm) if args.gm else None)
    if args.label_names == FREESURFER_TABLE and not args.labels:
        raise PVCInputError("--label-names freesurfer names the labels of a FreeSurfer segmentation: give it (--labels)")
    progress = progress_reporter(args.progress)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            start = time.perf_counter()
            pet, geometry, labels, probabilities, tissue_maps, inputs = _read_inputs(args, methods)
            if args.label_names == FREESURFER_TABLE:
                from .segmentation import freesurfer_color_table

                table = freesurfer_color_table(np.unique(labels))
                options.names, options.tissue_classes = table.names, table.tissue_classes
            read_time = time.perf_counter() - start
            run = run_methods(pet, geometry.spacing, methods, options, labels=labels, probabilities=probabilities,
                              tissue_maps=tissue_maps, progress=progress)
        finally:
            messages = user_warning_messages(caught)
            for message in messages:
                print(f"pet-pvc classical: warning: {message}", file=sys.stderr)
    record = {"version": __version__, "input": str(args.input), **run.record, "warnings": messages}
    record["timings_s"] = {"read_inputs": round(read_time, 3), **record["timings_s"]}

    files = {}
    for method in methods:
        names = output_names(args.input, method)
        files.update({method if role == "corrected" else f"{method} {role}": name
                      for role, name in names.items() if role != "settings"})
        files["settings"] = names["settings"]
    record["outputs"] = dict(files)
    with staged_outputs(args.output_dir, list(files.values()), force=args.force, protected=inputs) as staging:
        for method, image in run.images.items():
            write_staged_image(image, geometry, staging, files[method])
        for method, table in run.tables.items():
            table.write_csv(staging / files[f"{method} table"])
            table.write_json(staging / files[f"{method} table_json"])
        write_text_atomic(staging / files["settings"], json.dumps(record, indent=2) + "\n")
    for role, name in files.items():
        print(f"{role}: {Path(args.output_dir) / name}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "classical", help="classical PVC with a segmentation: GTM, Labbe, RBV, iY, MTC, MG, VC, RL",
        description="Classical partial volume correction of one PET image. Region methods need --labels (or "
                    "--probabilities, or --gm/--wm/--csf tissue maps); MG needs --gm/--wm (--csf), or --labels "
                    "(a FreeSurfer gtmseg/aparc+aseg, or GM/WM/CSF labels); VC and RL need only the PSF. "
                    "See docs/classical.md.")
    parser.add_argument("input", help="PET image: .nii/.nii.gz/.nrrd/.mha/.mhd file or DICOM series folder")
    parser.add_argument("-o", "--output-dir", required=True, help="folder for the results")
    parser.add_argument("--method", required=True,
                        help=f"one method or several, comma-separated (they share the region blurs): "
                             f"{', '.join(METHODS)}")
    parser.add_argument("--psf", type=float, nargs=3, required=True, metavar=("FWHM_X", "FWHM_Y", "FWHM_Z"),
                        help="PSF full width at half maximum in mm along the image's x, y, z axes")
    parser.add_argument("--labels", help="label image (region numbers; 0 = no region) on the PET grid")
    parser.add_argument("--probabilities", action="append",
                        help="a region's probability map (repeat the option per region), or one 4D file with a "
                             "frame per region (PETPVC's mask format)")
    parser.add_argument("--region-ids", help="comma-separated labels to use as regions (default: all but 0)")
    parser.add_argument("--label-names",
                        help="region names (and tissue types, for mg): FreeSurfer LUT or ctab (gtmseg.ctab's tissue "
                             "column), Slicer color table, CSV label,name[,tissue]; or 'freesurfer' for FreeSurfer's "
                             "built-in names and tissue types")
    parser.add_argument("--min-region-voxels", type=int, default=0,
                        help="merge label regions with fewer voxels into their largest neighbour (default 0: off)")
    parser.add_argument("--small-region-pool", type=int,
                        help="with --min-region-voxels: merge every small region into this label instead")
    parser.add_argument("--gm", help="GM probability map, e.g. SPM/CAT12 c1 (mg; without --labels, also the regions)")
    parser.add_argument("--wm", help="WM probability map, e.g. c2")
    parser.add_argument("--csf", help="CSF probability map, e.g. c3 (optional)")
    parser.add_argument("--tissue-labels",
                        help="label values of GM,WM[,CSF] when mg takes its tissues from --labels (default: from "
                             "--label-names' tissue column or names, else 1,2,3 when only those are present, else "
                             "FreeSurfer's label numbers)")
    parser.add_argument("--wm-value", default="eroded",
                        help="MG's WM activity: eroded (mean over eroded WM, as PETPVC; default), gtm (from a "
                             "GTM of the tissue maps, as PETPVE12), or a number in PET units")
    parser.add_argument("--csf-value", help="MG's CSF activity: gtm or a number (default: no CSF term)")
    parser.add_argument("--gm-threshold", type=float, default=0.5, help="MG corrects voxels with GM above this")
    parser.add_argument("--kernel", choices=KERNELS, default="gaussian",
                        help="PSF kernel: gaussian (sampled, default) or itk (PETPVC's discrete kernel)")
    parser.add_argument("--resample-labels", action="store_true",
                        help="resample labels (nearest neighbour) and maps (linear) onto the PET grid when needed")
    parser.add_argument("--no-background", action="store_true",
                        help="do not add a background region for voxels outside every region")
    parser.add_argument("--non-negative", action="store_true", help="constrain GTM/Labbe values to be >= 0")
    parser.add_argument("--iterations", type=int, default=10, help="iY iterations (default 10)")
    parser.add_argument("--deconvolution-iterations", type=int, default=10,
                        help="VC/RL iterations, also after RBV/iY (default 10)")
    parser.add_argument("--alpha", type=float, default=1.5, help="Van Cittert step (default 1.5)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="Van Cittert stopping criterion (default 0.01)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--progress", choices=PROGRESS_STYLES, default="bar",
                        help="progress display: a bar on stderr, machine-readable lines on stdout, none")
    parser.set_defaults(handler=run_classical)
