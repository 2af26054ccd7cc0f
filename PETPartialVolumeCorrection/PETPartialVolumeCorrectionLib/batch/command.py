"""``pet-pvc batch BIDS_DIR OUT_DIR participant|group``: the BIDS-App face of the batch runner."""

from __future__ import annotations

import os

from ..commands import add_network_arguments

LEVELS = ("participant", "group")


def _run_batch(args) -> int:
    from .runner import EXIT_SCAN_FAILED, run_group_level, run_participant_level

    if args.analysis_level == "group":
        path, records = run_group_level(args.bids_dir, args.output_dir, args.participant_label,
                                        args.session_label)
        counts = {status: sum(r.get("status") == status for r in records)
                  for status in sorted({r.get("status") for r in records})}
        print(f"group table: {path} ({len(records)} scans: "
              + ", ".join(f"{n} {status}" for status, n in counts.items()) + ")")
        return EXIT_SCAN_FAILED if counts.get("failed") else 0
    options = {"mode": args.mode, "overlap": args.overlap, "batch_size": args.batch_size,
               "output_grid": "native" if args.native_grid else "standard", "crop_fov": args.crop_fov,
               "device": args.device}
    run = run_participant_level(
        args.bids_dir, args.output_dir, options=options, model=args.model, frame=args.frame,
        participant_labels=args.participant_label, session_labels=args.session_label, workers=args.workers,
        threads_per_worker=args.threads_per_worker, dask_scheduler=args.dask_scheduler, force=args.force,
        progress=args.progress)
    counts = run.counts
    print(", ".join(f"{counts[status]} {status}" for status in ("corrected", "up to date", "skipped", "failed"))
          + f"; records in {os.path.join(args.output_dir, 'logs')}; "
            f"table: pet-pvc batch {args.bids_dir} {args.output_dir} group")
    return run.exit_code


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "batch", help="correct a cohort (BIDS dataset, folder or list of scans), resumable, locally or on Dask",
        description="BIDS-App: the participant level corrects every PET scan of BIDS_DIR "
                    "(sub-*/[ses-*/]pet/*_pet.nii[.gz]; or a plain folder of images; or a text file listing "
                    "one scan per line) into the BIDS derivatives folder OUT_DIR, skipping scans already "
                    "done with the same input and settings; the group level writes OUT_DIR/pvc_scans.tsv. "
                    "Exit code 3 when any scan failed (the others are done). See docs/batch.md.")
    parser.add_argument("bids_dir", help="BIDS dataset, folder of PET images, or a list file of scans")
    parser.add_argument("output_dir", help="derivatives folder (e.g. BIDS_DIR/derivatives/pet-pvc)")
    parser.add_argument("analysis_level", choices=LEVELS, help="participant: correct the scans; group: the table")
    parser.add_argument("--participant-label", nargs="+", metavar="LABEL",
                        help="only these participants (with or without sub-)")
    parser.add_argument("--session-label", "--session", nargs="+", metavar="LABEL",
                        help="only these sessions (with or without ses-)")
    parser.add_argument("--frame", type=int, metavar="N",
                        help="correct frame N (0-based) of 4D files (default: 4D files are skipped and reported)")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    parser.add_argument("--threads-per-worker", type=int,
                        help="threads of each local worker (default: the backend's choice)")
    parser.add_argument("--dask-scheduler", metavar="tcp://HOST:PORT",
                        help="run the scans on this Dask distributed cluster instead of local processes")
    add_network_arguments(parser)
    parser.add_argument("--native-grid", action="store_true",
                        help="write results on each input's own grid (default: the 1 mm 256^3 grid)")
    parser.add_argument("--crop-fov", action="store_true",
                        help="cut a field of view wider than 256 mm (centred) instead of refusing it")
    parser.add_argument("--force", action="store_true",
                        help="replace outputs made from another input or with other settings")
    parser.add_argument("--progress", choices=("bar", "none"), default="bar",
                        help="a bar over scans with the time left on stderr (default), or none")
    parser.set_defaults(handler=_run_batch)
