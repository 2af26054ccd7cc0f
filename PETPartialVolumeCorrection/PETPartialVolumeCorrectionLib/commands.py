"""Subcommands of the deep-learning pipeline: ``correct``, ``sharpen``, ``compare``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from .errors import PVCInputError
from .progress import PROGRESS_STYLES, progress_reporter
from .quantification.command import add_correct_arguments as add_quantify_arguments
from .quantification.command import quantify_after_correction


def add_progress_argument(parser) -> None:
    parser.add_argument("--progress", choices=PROGRESS_STYLES, default="bar",
                        help="progress display: a bar on stderr, machine-readable lines on stdout, none")


def _run_correct(args) -> int:
    from .pipeline import correct_file

    written = correct_file(
        args.input, args.output_dir, force=args.force, model=args.model, mode=args.mode,
        overlap=args.overlap, batch_size=args.batch_size,
        output_grid="native" if args.native_grid else "standard", crop_fov=args.crop_fov,
        device=args.device, progress=progress_reporter(args.progress))
    for role, path in written.items():
        print(f"{role}: {path}")
    print_warnings(written["settings"])
    if args.quantify:
        quantify_after_correction(args, written)
    return 0


def print_warnings(record_path) -> None:
    """Print on stderr, one line each, the warnings recorded in a correction's JSON record."""
    import sys

    for warning in json.loads(open(record_path).read()).get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)


def _run_sharpen(args) -> int:
    from .pipeline import sharpen_file

    path = sharpen_file(args.input, args.output_dir, output_grid="native" if args.native_grid else "standard",
                        crop_fov=args.crop_fov, force=args.force)
    print(f"sharpened: {path}")
    return 0


def _run_compare(args) -> int:
    import numpy as np

    from .geometry import describe_grid_difference
    from .grid import resample_to_native_grid
    from .io import read_image, read_label_image, refuse_existing_outputs, write_text_atomic
    from .metrics import rmse, ssim

    if args.json:  # refused before any work: an input, an existing file, a missing folder
        json_path = Path(args.json)
        refuse_existing_outputs(json_path.parent, [json_path.name], force=args.force,
                                protected=[p for p in (args.prediction, args.reference, args.mask) if p])
        if not json_path.parent.is_dir():
            raise PVCInputError(f"{json_path.parent}: no such folder for --json")
    prediction, prediction_geometry = read_image(args.prediction)
    reference, reference_geometry = read_image(args.reference)
    difference = describe_grid_difference(prediction.shape, prediction_geometry, reference.shape, reference_geometry)
    if difference and not args.resample:
        raise PVCInputError(f"{args.prediction} and {args.reference} are on different grids ({difference}); "
                            "pass --resample to resample the first onto the second (linear)")
    if difference:
        prediction = resample_to_native_grid(prediction, prediction_geometry, reference.shape, reference_geometry)
    mask = None
    if args.mask:
        labels, mask_geometry = read_label_image(args.mask)
        mask_difference = describe_grid_difference(labels.shape, mask_geometry, reference.shape, reference_geometry)
        if mask_difference:
            raise PVCInputError(f"{args.mask} is not on the grid of {args.reference} ({mask_difference})")
        mask = labels > 0
    with np.errstate(all="ignore"), warnings.catch_warnings():  # a non-finite score is refused below
        warnings.simplefilter("ignore", RuntimeWarning)
        scores = {"ssim": ssim(prediction, reference, mask), "rmse": rmse(prediction, reference, mask),
                  "voxels": int(np.count_nonzero(mask)) if mask is not None else int(reference.size)}
    undefined = [f"{name.upper()} {scores[name]}" for name in ("ssim", "rmse") if not np.isfinite(scores[name])]
    if undefined:
        raise PVCInputError(f"{', '.join(undefined)}: the image's values lie too far outside the reference's "
                            "range for float32 scoring; check the units of both images")
    print(f"SSIM {scores['ssim']:.4f}")
    print(f"RMSE {scores['rmse']:.6g}")
    if args.json:
        write_text_atomic(args.json, json.dumps(scores, indent=2, allow_nan=False) + "\n", force=args.force)
    return 0


#: The built-in example: a simulated amyloid-positive subject (seed fixed, so every run is the same).
EXAMPLE_SEED = 2021


def _run_example(args) -> int:
    """Simulate the example PET, correct it like any file, and score it against the known truth."""
    from dataclasses import replace

    from .io import read_image, refuse_existing_outputs, write_image
    from .model import find_model_dir, load_model
    from .pipeline import correct_file, output_names
    from .simulation import SimulationSettings, simulate_subject

    output_dir = Path(args.output_dir)
    input_path = output_dir / "example_pet.nii.gz"
    refuse_existing_outputs(output_dir, [input_path.name, "example_truth.nii.gz", "example_mg_target.nii.gz",
                                         *output_names(input_path).values()], force=args.force)
    model = load_model(find_model_dir(args.model), device=args.device)  # fail before writing anything
    print(f"simulating the example subject (seed {EXAMPLE_SEED}, amyloid positive) ...", flush=True)
    subject = simulate_subject(EXAMPLE_SEED, replace(SimulationSettings(), positive_fraction=1.0))
    # The PET on its scanner grid, as a user brings it; correct's standard grid for it is the subject's
    # grid (truth and MG target), so every image below is scored on one grid.
    write_image(subject.pet_scanner, subject.scanner_geometry, input_path, force=args.force)
    write_image(subject.truth, subject.geometry, output_dir / "example_truth.nii.gz", force=args.force)
    write_image(subject.mg_target, subject.geometry, output_dir / "example_mg_target.nii.gz", force=args.force)
    written = correct_file(input_path, output_dir, force=args.force, model=model, crop_fov=True,
                           progress=progress_reporter(args.progress))
    images = {"input": subject.pet_1mm}  # the PET on the standard grid, as correct made it
    for method, role in (("sharpen", "sharpened"), ("network", "corrected")):
        images[method], geometry = read_image(written[role])
        if not geometry.matches(subject.geometry):
            raise RuntimeError(f"{written[role]} is not on the example's 1 mm grid")
    _print_example_scores(images, subject)
    for role, path in written.items():
        print(f"{role}: {path}")
    return 0


def _print_example_scores(images: dict, subject) -> None:
    """SSIM / RMSE against the MG target and the truth, and the composite cortical SUVR, per method."""
    from .metrics import rmse, ssim
    from .simulation import regional_suvr
    from .training.evaluate import METHOD_TITLES as titles

    labels = subject.labels_in_field_of_view()
    truth_suvr = regional_suvr(subject.truth, labels)["composite"]
    print(f"\n{'':<16}{'SSIM vs MG':>11}{'RMSE vs MG':>12}{'SSIM vs truth':>15}{'RMSE vs truth':>15}"
          f"{'composite SUVR':>16}")
    for method, image in images.items():
        print(f"{titles[method]:<16}{ssim(image, subject.mg_target):>11.4f}{rmse(image, subject.mg_target):>12.4g}"
              f"{ssim(image, subject.truth):>15.4f}{rmse(image, subject.truth):>15.4g}"
              f"{regional_suvr(image, labels)['composite']:>16.3f}")
    print(f"{'true activity':<69}{truth_suvr:>16.3f}\n")


def add_network_arguments(parser) -> None:
    """The network's options: --model, --mode, --overlap, --batch-size, --device."""
    parser.add_argument("--model", help="model folder (default: the shipped model)")
    parser.add_argument("--mode", choices=("gaussian", "study"), default="gaussian",
                        help="gaussian: overlapping windows, Gaussian blending (default); "
                             "study: the founding study's eight 128^3 tiles")
    parser.add_argument("--overlap", type=int, help="window overlap in voxels (gaussian mode)")
    parser.add_argument("--batch-size", type=int, default=1, help="windows per network call")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="auto: GPU when present, else CPU")


def _add_grid_arguments(parser) -> None:
    parser.add_argument("--native-grid", action="store_true",
                        help="write results on the input's own grid (default: the 1 mm 256^3 grid)")
    parser.add_argument("--crop-fov", action="store_true",
                        help="cut a field of view wider than 256 mm (centred) instead of refusing it")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")


def register(subparsers) -> None:
    correct = subparsers.add_parser(
        "correct", help="partial volume correction by the 3D ResUNet (no MRI needed)",
        description="Resample to 1 mm 256^3, normalise, run patch inference, restore units; writes the "
                    "corrected volume, the sharpen baseline and a JSON of timings and settings.")
    correct.add_argument("input", help="PET image: .nii/.nii.gz/.nrrd/.mha/.mhd file or DICOM series folder")
    correct.add_argument("-o", "--output-dir", required=True, help="folder for the results")
    add_network_arguments(correct)
    _add_grid_arguments(correct)
    add_progress_argument(correct)
    add_quantify_arguments(correct)
    correct.set_defaults(handler=_run_correct)

    sharpen = subparsers.add_parser("sharpen", help="the sharpen-filter baseline (blur + unsharp mask)")
    sharpen.add_argument("input", help="PET image file or DICOM series folder")
    sharpen.add_argument("-o", "--output-dir", required=True, help="folder for the result")
    _add_grid_arguments(sharpen)
    sharpen.set_defaults(handler=_run_sharpen)

    example = subparsers.add_parser(
        "example", help="run the whole correction on a built-in simulated amyloid PET with known truth")
    example.add_argument("-o", "--output-dir", required=True, help="folder for the example and results")
    example.add_argument("--model", help="model folder (default: the shipped model)")
    example.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    example.add_argument("--force", action="store_true", help="overwrite an earlier example run")
    add_progress_argument(example)
    example.set_defaults(handler=_run_example)

    compare = subparsers.add_parser("compare", help="SSIM and RMSE of a result against a reference")
    compare.add_argument("prediction", help="image to score")
    compare.add_argument("reference", help="reference image on the same grid")
    compare.add_argument("--mask", help="label image; voxels > 0 are scored")
    compare.add_argument("--json", help="also write the scores to this JSON file (never an input; an existing "
                                        "file only with --force)")
    compare.add_argument("--resample", action="store_true",
                         help="resample the image to score onto the reference's grid (linear) when the grids "
                              "differ, instead of refusing")
    compare.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    compare.set_defaults(handler=_run_compare)
