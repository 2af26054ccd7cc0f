"""``pet-pvc classical``: classical PVC of one PET image with a segmentation (or tissue maps).

Writes into the output folder (names from :func:`output_names`), in the PET's own format (NIfTI for
a DICOM series): ``<stem>_<method>.<ext>`` per method (``rbv+vc`` -> ``_rbv_vc``; for GTM and Labbe
the image of each region filled with its corrected value), ``<stem>_<method>.csv`` and ``.json``
per regional method (GTM, Labbe), and ``<stem>_classical.json`` with the settings (methods, PSF,
kernel, regions, WM/CSF values, condition numbers, timings, warnings).
"""

from __future__ import annotations

import csv
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import PVCInputError
from ..progress import PROGRESS_STYLES, progress_reporter, report, scaled
from .psf import KERNELS

REGIONAL_METHODS = ("gtm", "labbe")
REGION_METHODS = ("rbv", "iy", "mtc", "rbv+vc", "rbv+rl", "iy+vc", "iy+rl")
MG_METHOD = "mg"
DECONVOLUTION_METHODS = ("vc", "rl")
METHODS = REGIONAL_METHODS + REGION_METHODS + (MG_METHOD,) + DECONVOLUTION_METHODS
#: Default label values of GM, WM and CSF when MG takes its tissues from a label image (as Slicer's).
DEFAULT_TISSUE_LABELS = "1,2,3"


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


def parse_methods(text: str) -> list[str]:
    """Comma-separated method names, checked, in the order given, without repeats."""
    methods = [m.strip().lower() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise PVCInputError(f"unknown method(s) {unknown or [text]}; choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(methods))


def read_region_names(path) -> dict[int, str]:
    """Region names from a text table: one region a line, number then name, separated by a comma,
    a tab or spaces (CSV with a header, FreeSurfer LUT, Slicer color table); '#' starts a comment."""
    names = {}
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise PVCInputError(f"{path}: cannot read the region names ({error.strerror})") from None
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "," in line:
            fields = [f.strip() for f in next(csv.reader([line]))]
        else:
            fields = [f.strip() for f in line.split("\t" if "\t" in line else None)]
        if len(fields) >= 2 and fields[0].lstrip("-").isdigit() and fields[1]:
            names[int(fields[0])] = fields[1]
    if not names:
        raise PVCInputError(f"{path}: no 'number name' lines found; give a CSV (label,name), a FreeSurfer LUT "
                            "or a Slicer color table")
    return names


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
    from ..io import read_image

    if len(paths) == 1 and _is_4d(paths[0]):
        frames, geometry = _read_4d_frames(paths[0])
        sources = [(frame, geometry, f"{paths[0]} frame {n}") for n, frame in enumerate(frames)]
    else:
        sources = [(*read_image(path), path) for path in paths]
    maps = []
    for volume, geometry, name in sources:
        on_grid = _on_pet_grid(volume, geometry, pet_shape, pet_geometry, name, resample, "linear")
        if on_grid is not volume:
            _check_resampled_map(volume, geometry, on_grid, pet_geometry, name)
        maps.append(on_grid)
    return maps


def _is_4d(path) -> bool:
    import SimpleITK as sitk

    if Path(path).is_dir():
        return False
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return False
    return reader.GetDimension() == 4 and reader.GetSize()[3] > 1


def _read_4d_frames(path):
    import SimpleITK as sitk

    from ..io import _geometry_from_sitk, _read_sitk_image

    image = _read_sitk_image(Path(path))
    frames = [sitk.GetArrayFromImage(image[:, :, :, t]).astype(np.float32) for t in range(image.GetSize()[3])]
    return frames, _geometry_from_sitk(image[:, :, :, 0])


def _parse_number_or(text, choices):
    if text is None or text in choices:
        return text
    try:
        return float(text)
    except ValueError:
        raise PVCInputError(f"expected one of {', '.join(choices)} or a number, got {text!r}") from None


def _check_region_arguments(args, methods) -> None:
    needs_regions = [m for m in methods if m in REGIONAL_METHODS + REGION_METHODS]
    if needs_regions and not (args.labels or args.probabilities):
        raise PVCInputError(f"method(s) {', '.join(needs_regions)} need regions: --labels SEG or --probabilities MAP")
    if args.labels and args.probabilities:
        raise PVCInputError("give the regions either with --labels or with --probabilities, not both")
    if MG_METHOD in methods and not ((args.gm and args.wm) or (args.labels and not (args.gm or args.wm))):
        raise PVCInputError("method mg needs the tissue maps --gm and --wm (and optionally --csf), or a "
                            "label image --labels with GM/WM/CSF labels (--tissue-labels)")
    _parse_number_or(args.wm_value, ("eroded", "gtm"))
    _parse_number_or(args.csf_value, ("gtm",))
    if args.region_ids:
        parse_region_ids(args.region_ids)
    if len(parse_region_ids(args.tissue_labels, "--tissue-labels")) not in (2, 3):
        raise PVCInputError(f"--tissue-labels takes the GM, WM (and CSF) label values, got {args.tissue_labels!r}")


def parse_region_ids(text: str, option: str = "--region-ids") -> list[int]:
    """Comma-separated region numbers."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise PVCInputError(f"{option} takes comma-separated whole numbers, got {text!r}") from None


def _tissue_maps_from_labels(labels: np.ndarray, tissue_labels: list[int]) -> list:
    """GM, WM and CSF (None when absent or not asked for) 0/1 maps from a label image."""
    maps = [(labels == value).astype(np.float32) for value in tissue_labels[:2]]
    for name, value, tissue_map in zip(("GM", "WM"), tissue_labels, maps):
        if not tissue_map.any():
            raise PVCInputError(f"the label image has no {name} voxels (label {value}); "
                                "set the tissue label values with --tissue-labels GM,WM,CSF")
    csf = labels == tissue_labels[2] if len(tissue_labels) == 3 else None
    return maps + [csf.astype(np.float32) if csf is not None and csf.any() else None]


def _load(args, methods, settings: dict, timings: dict, progress):
    """Read the PET, the regions and the tissue maps; blur the regions once for all methods."""
    from ..io import read_image
    from . import blur_regions, blur_tissue_maps

    start = time.perf_counter()
    pet, geometry = read_image(args.input)
    psf_args = {"fwhm_mm": tuple(args.psf), "spacing_mm": geometry.spacing, "kernel": args.kernel}
    settings["spacing_mm"] = list(geometry.spacing)
    inputs = [args.input]
    regions = tissues = None
    labels = None
    if args.labels:
        labels = _read_labels(args.labels, pet.shape, geometry, args.resample_labels)
        inputs.append(args.labels)
    if any(m in REGIONAL_METHODS + REGION_METHODS for m in methods):
        if labels is not None:
            region_input = {"labels": labels}
        else:
            region_input = {"probabilities": _read_probability_maps(args.probabilities, pet.shape, geometry,
                                                                     args.resample_labels)}
            inputs.extend(args.probabilities)
        names = read_region_names(args.label_names) if args.label_names else None
        region_ids = parse_region_ids(args.region_ids) if args.region_ids else None
        timings["read_inputs"] = time.perf_counter() - start
        start = time.perf_counter()
        regions = blur_regions(**region_input, region_ids=region_ids, names=names,
                               add_background=not args.no_background, shape=pet.shape,
                               progress=scaled(progress, 0.0, 0.3), **psf_args)
        timings["blur_regions"] = time.perf_counter() - start
        background = regions.regions.background_index
        settings["regions"] = {"ids": regions.regions.region_ids.tolist(),
                               "added_background_id": (None if background is None
                                                       else int(regions.regions.region_ids[background]))}
    if MG_METHOD in methods:
        start = time.perf_counter()
        if args.gm:
            tissue_paths = [args.gm, args.wm] + ([args.csf] if args.csf else [])
            maps = _read_probability_maps(tissue_paths, pet.shape, geometry, args.resample_labels)
            inputs.extend(tissue_paths)
            maps += [None] * (3 - len(maps))
        else:
            maps = _tissue_maps_from_labels(labels, parse_region_ids(args.tissue_labels, "--tissue-labels"))
        tissues = blur_tissue_maps(gm=maps[0], wm=maps[1], csf=maps[2], shape=pet.shape,
                                   progress=scaled(progress, 0.3, 0.4), **psf_args)
        timings["blur_tissue_maps"] = time.perf_counter() - start
    return pet, geometry, psf_args, regions, tissues, inputs


def _run_method(method: str, pet, psf_args: dict, regions, tissues, args, settings: dict, conditions: dict, step):
    """One method's result: a :class:`GTMResult` (gtm, labbe) or an image."""
    from . import (gtm, iterative_yang, labbe, mg_compartment_values, mueller_gaertner, multi_target_correction,
                   rbv, richardson_lucy, van_cittert)

    deconvolution = {"deconvolution_iterations": args.deconvolution_iterations, "alpha": args.alpha,
                     "tolerance": args.tolerance}
    if method in REGIONAL_METHODS:
        result = (gtm if method == "gtm" else labbe)(pet, blurred_regions=regions, non_negative=args.non_negative)
        conditions[method] = result.condition_number
        return result
    if method in ("rbv", "mtc", "rbv+vc", "rbv+rl"):
        conditions.setdefault("gtm", gtm(pet, blurred_regions=regions,
                                         non_negative=args.non_negative).condition_number)
    if method == "mtc":
        return multi_target_correction(pet, blurred_regions=regions, non_negative=args.non_negative)
    if method.startswith("rbv"):
        return rbv(pet, blurred_regions=regions, non_negative=args.non_negative,
                   deconvolution=method[4:] or None, progress=step, **deconvolution)
    if method.startswith("iy"):
        return iterative_yang(pet, blurred_regions=regions, iterations=args.iterations,
                              deconvolution=method[3:] or None, progress=step, **deconvolution)
    if method == MG_METHOD:
        values = mg_compartment_values(pet, tissues, wm_value=_parse_number_or(args.wm_value, ("eroded", "gtm")),
                                       csf_value=_parse_number_or(args.csf_value, ("gtm",)))
        settings["mg"] = {"wm_source": args.wm_value, "wm_value": values["wm"], "csf_source": args.csf_value,
                          "csf_value": values["csf"], "gm_threshold": args.gm_threshold,
                          "outside_gm_mask": "input PET, unchanged"}
        return mueller_gaertner(pet, blurred_tissues=tissues, wm_value=values["wm"], csf_value=values["csf"],
                                gm_threshold=args.gm_threshold)
    if method == "vc":
        return van_cittert(pet, alpha=args.alpha, iterations=args.deconvolution_iterations,
                           tolerance=args.tolerance, progress=step, **psf_args)
    return richardson_lucy(pet, iterations=args.deconvolution_iterations, progress=step, **psf_args)


def _print_warnings(caught) -> list[str]:
    """Print each distinct user-facing warning once; return their messages."""
    messages = list(dict.fromkeys(str(w.message) for w in caught
                                  if issubclass(w.category, (UserWarning, RuntimeWarning))))
    for message in messages:
        print(f"pet-pvc classical: warning: {message}", file=sys.stderr)
    return messages


def run_classical(args) -> int:
    from .. import __version__
    from ..io import staged_outputs, write_staged_image
    from .regional import GTMResult, write_text_atomic

    methods = parse_methods(args.method)
    _check_region_arguments(args, methods)
    progress = progress_reporter(args.progress)
    timings: dict[str, float] = {}
    conditions: dict[str, float] = {}
    results = {}
    settings: dict = {"version": __version__, "input": str(args.input), "methods": methods,
                      "psf_fwhm_mm": {"x": args.psf[0], "y": args.psf[1], "z": args.psf[2]}, "kernel": args.kernel}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pet, geometry, psf_args, regions, tissues, inputs = _load(args, methods, settings, timings, progress)
            for number, method in enumerate(methods):
                step = scaled(progress, 0.4 + 0.6 * number / len(methods), 0.4 + 0.6 * (number + 1) / len(methods))
                report(step, 0.0, method)
                start = time.perf_counter()
                results[method] = _run_method(method, pet, psf_args, regions, tissues, args, settings, conditions,
                                              step)
                timings[method] = time.perf_counter() - start
        finally:
            settings["warnings"] = _print_warnings(caught)
    settings.update({"condition_numbers": conditions, "timings_s": {k: round(v, 3) for k, v in timings.items()},
                     "options": {"non_negative": args.non_negative, "add_background": not args.no_background,
                                 "region_ids": args.region_ids, "iterations": args.iterations,
                                 "deconvolution_iterations": args.deconvolution_iterations, "alpha": args.alpha,
                                 "tolerance": args.tolerance}})

    files = {}
    for method in results:
        names = output_names(args.input, method)
        files.update({f"{method} {role}" if role != "corrected" else method: name
                      for role, name in names.items() if role != "settings"})
        files["settings"] = names["settings"]
    settings["outputs"] = dict(files)
    with staged_outputs(args.output_dir, list(files.values()), force=args.force, protected=inputs) as staging:
        for method, result in results.items():
            if isinstance(result, GTMResult):
                result.write_csv(staging / files[f"{method} table"])
                result.write_json(staging / files[f"{method} table_json"])
                result = regions.regions.combine(result.values)
            write_staged_image(result, geometry, staging, files[method])
        write_text_atomic(staging / files["settings"], json.dumps(settings, indent=2) + "\n")
    report(progress, 1.0, "done")
    for role, name in files.items():
        print(f"{role}: {Path(args.output_dir) / name}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "classical", help="classical PVC with a segmentation: GTM, Labbe, RBV, iY, MTC, MG, VC, RL",
        description="Classical partial volume correction of one PET image. Region methods need --labels (or "
                    "--probabilities); MG needs --gm/--wm (--csf); VC and RL need only the PSF. See docs/classical.md.")
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
    parser.add_argument("--label-names", help="region names: CSV (label,name), FreeSurfer LUT or Slicer color table")
    parser.add_argument("--gm", help="GM probability map (method mg; without --gm/--wm, mg takes its tissues from "
                                      "--labels)")
    parser.add_argument("--wm", help="WM probability map (method mg)")
    parser.add_argument("--csf", help="CSF probability map (method mg, optional)")
    parser.add_argument("--tissue-labels", default=DEFAULT_TISSUE_LABELS,
                        help="label values of GM,WM[,CSF] when mg takes its tissues from --labels (default 1,2,3)")
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
