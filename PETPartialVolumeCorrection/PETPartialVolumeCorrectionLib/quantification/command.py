"""``pet-pvc quantify``: regional SUVR and Centiloid from the PET alone, with and without PVC;
and the ``--quantify`` option of ``pet-pvc correct``."""

from __future__ import annotations

from pathlib import Path

from ..io import image_stem, read_image, staged_outputs, write_text_atomic
from .normalisation import resample_to_template
from .readouts import TRACERS
from .regions import DEFAULT_REFERENCE, GLOBAL_CORTEX, REFERENCE_REGIONS


def output_names(input_path) -> dict:
    """File names of the quantification's outputs for ``input_path``: table, record, QC figure."""
    stem = image_stem(input_path)
    return {"table": f"{stem}_quantification.csv", "record": f"{stem}_quantification.json",
            "qc_figure": f"{stem}_quantification_qc.png"}


def quantify_file(input_path, output_dir, *, corrected_paths=None, force: bool = False, **options) -> dict:
    """Quantify one PET file (and its corrections, name -> path); write the CSV, the JSON and the QC
    PNG into ``output_dir``. Returns the written paths by role and the
    :class:`.quantify.QuantificationResult`; nothing is written when anything fails.

    ``options`` are those of :func:`.quantify.quantify_volume`.
    """
    from .quantify import quantify_volume
    from .regions import load_regions
    from .report import csv_text, json_text, require_matplotlib, write_qc_figure
    from .template import load_template

    require_matplotlib()
    names = output_names(input_path)
    output_dir = Path(output_dir)
    corrected_paths = dict(corrected_paths or {})
    volume, geometry = read_image(input_path)
    corrected = {name: read_image(path) for name, path in corrected_paths.items()}
    protected = [input_path, *corrected_paths.values()]
    with staged_outputs(output_dir, names.values(), force=force, protected=protected) as staging:
        result = quantify_volume(volume, geometry, corrected, **options)
        pet_mni = resample_to_template(volume, geometry, result.normalisation.transform)
        template = load_template(options.get("template_path"))
        write_qc_figure(staging / names["qc_figure"], pet_mni, template.brain_mask,
                        load_regions().target[GLOBAL_CORTEX],
                        f"{Path(input_path).name}: correlation with the template "
                        f"{result.normalisation.correlation:.3f}, global cortical SUVR "
                        f"{result.global_suvr['input']:.3f}")
        write_text_atomic(staging / names["table"], csv_text(result))
        extra = {"input": str(Path(input_path).resolve()),
                 "corrected_inputs": {n: str(Path(p).resolve()) for n, p in corrected_paths.items()},
                 "outputs": names}
        write_text_atomic(staging / names["record"], json_text(result, extra))
    return {role: output_dir / name for role, name in names.items()}, result


def print_summary(result) -> None:
    """The global SUVR and Centiloid per image, the normalisation's quality and the notes, on stdout."""
    from .tables import summary_text

    print(summary_text(result))


def add_calibration_arguments(parser, tracer_help: str) -> None:
    parser.add_argument("--tracer", choices=TRACERS, help=tracer_help)
    parser.add_argument("--reference", choices=tuple(REFERENCE_REGIONS), default=DEFAULT_REFERENCE,
                        help="SUVR reference region (GAAIN VOI; default whole cerebellum)")
    parser.add_argument("--centiloid-slope", type=float, help="a site's own Centiloid calibration: CL = slope x SUVR "
                                                              "+ intercept (with --centiloid-intercept)")
    parser.add_argument("--centiloid-intercept", type=float, help="intercept of the site's own calibration")


def calibration_options(args) -> dict:
    return {"tracer": args.tracer, "reference": args.reference, "centiloid_slope": args.centiloid_slope,
            "centiloid_intercept": args.centiloid_intercept}


def _run_quantify(args) -> int:
    corrected = {name: path for name, path in (("network", args.corrected), ("classical", args.classical)) if path}
    written, result = quantify_file(args.input, args.output_dir, corrected_paths=corrected, force=args.force,
                                    deformable=args.deformable, template_path=args.template,
                                    **calibration_options(args))
    print_summary(result)
    for role, path in written.items():
        print(f"{role}: {path}")
    return 0


def quantify_after_correction(args, written: dict) -> None:
    """``pet-pvc correct --quantify``: quantify the input and the network's correction just written."""
    quantified, result = quantify_file(args.input, args.output_dir, corrected_paths={"network": written["corrected"]},
                                       force=args.force, tracer=args.tracer)
    print_summary(result)
    for role, path in quantified.items():
        print(f"{role}: {path}")


def add_correct_arguments(parser) -> None:
    """The options ``pet-pvc correct`` gets for quantifying after the correction."""
    parser.add_argument("--quantify", action="store_true",
                        help="then quantify: regional SUVR and Centiloid of the input and the correction "
                             "(PET-only normalisation; see pet-pvc quantify)")
    parser.add_argument("--tracer", choices=TRACERS, help="tracer, for Centiloid with --quantify")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quantify", help="regional SUVR and Centiloid from the PET alone (no MRI), with and without PVC",
        description="Register the PET to the amyloid PET templates (MNI space), read the GAAIN Centiloid VOIs "
                    "and the Desikan-Killiany cortical groups, and write a CSV, a JSON and a QC figure. A PET-only "
                    "normalisation is not the Level-2-calibrated GAAIN pipeline. See docs/quantification.md.")
    parser.add_argument("input", help="PET image: .nii/.nii.gz/.nrrd/.mha/.mhd file or DICOM series folder")
    parser.add_argument("-o", "--output-dir", required=True, help="folder for the results")
    parser.add_argument("--corrected", help="the network's correction of the same scan (pet-pvc correct's _pvc image)")
    parser.add_argument("--classical", help="a classical correction of the same scan (pet-pvc classical's output)")
    add_calibration_arguments(parser, "tracer, for the published Centiloid equation")
    parser.add_argument("--deformable", action="store_true", help="add a smooth B-spline stage to the affine")
    parser.add_argument("--template", help="template file (default: the shipped one)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.set_defaults(handler=_run_quantify)
