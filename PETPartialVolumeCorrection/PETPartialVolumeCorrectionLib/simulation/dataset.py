"""Datasets of simulated subjects: disjoint seeds, NIfTI folders, an in-memory stream, parallel runs.

A subject folder holds one NIfTI file per volume (:data:`VOLUMES`; float32 images, int16 labels,
uint8 masks), written with nibabel with the qform and sform set to the grid's RAS affine, so
nibabel, SimpleITK and Slicer place them identically, and ``record.json`` (every random choice).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from typing import Iterable, Iterator, NamedTuple, Optional

import numpy as np

from ..errors import PVCInputError
from ..geometry import Geometry
from ..io import write_text_atomic
from ..progress import raise_if_cancelled, report
from .regions import region_names
from .settings import SimulationSettings
from .subject import SimulatedSubject, simulate_subject
from .templates import load_templates

#: Volumes of a subject folder: file stem -> (attribute, stored dtype).
VOLUMES = {
    "pet_1mm": np.float32, "mg_target": np.float32, "rbv_target": np.float32, "truth": np.float32,
    "gm": np.float32, "wm": np.float32, "csf": np.float32, "labels": np.int16,
    "brain_mask": np.uint8, "field_of_view": np.uint8, "pet_scanner": np.float32,
}
RECORD_FILE = "record.json"
MANIFEST_FILE = "dataset.json"
#: LPS <-> RAS (NIfTI world coordinates) flips x and y.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class SeedSplits(NamedTuple):
    """Disjoint subject seeds of the training, validation and test sets."""

    train: list
    validation: list
    test: list


def _hashed_seeds(base_seed: int, split: str, count: int, taken: set, high_half: bool) -> list:
    """``count`` seeds hashed from (base_seed, split, index), skipping those in ``taken`` (updated);
    in [2^31, 2^32) with ``high_half``, else in [0, 2^31)."""
    chosen, index = [], 0
    while len(chosen) < count:
        digest = hashlib.blake2b(f"{int(base_seed)}/{split}/{index}".encode(), digest_size=4).digest()
        seed = (int.from_bytes(digest, "little") & 0x7FFFFFFF) | (0x80000000 if high_half else 0)
        index += 1
        if seed not in taken:
            taken.add(seed)
            chosen.append(seed)
    return chosen


def split_seeds(n_train: int, n_val: int, n_test: int, base_seed: int = 0) -> SeedSplits:
    """Disjoint subject seeds ``(train, validation, test)``, all below 2^31.

    Seed i of a split is a hash of (base_seed, split, i), so a split's seeds do not change when
    another split grows (unless a hash collides with an earlier split's seed, which is skipped).
    """
    counts = {"train": n_train, "validation": n_val, "test": n_test}
    if any(int(n) != n or n < 0 for n in counts.values()):
        raise PVCInputError(f"subject counts must be whole numbers >= 0, got {counts}")
    taken: set = set()
    return SeedSplits(**{split: _hashed_seeds(base_seed, split, int(count), taken, False)
                         for split, count in counts.items()})


def out_of_range_seeds(n: int, base_seed: int = 0) -> list:
    """Seeds of the out-of-range test set, in [2^31, 2^32): disjoint from :func:`split_seeds`'."""
    if int(n) != n or n < 0:
        raise PVCInputError(f"subject count must be a whole number >= 0, got {n}")
    return _hashed_seeds(base_seed, "out_of_range", int(n), set(), True)


def subject_folder_name(seed: int) -> str:
    return f"subject_{int(seed):010d}"


def nifti_affine(geometry: Geometry) -> np.ndarray:
    """The NIfTI (RAS) affine of a grid, for an array stored as ``[x, y, z]``."""
    return _LPS_TO_RAS @ geometry.index_to_world()


def geometry_from_affine(affine: np.ndarray) -> Geometry:
    """The grid (LPS) of a NIfTI RAS affine."""
    lps = _LPS_TO_RAS @ np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    return Geometry(tuple(spacing), tuple(lps[:3, 3]), lps[:3, :3] / spacing)


def _write_nifti(array: np.ndarray, geometry: Geometry, path: str, dtype) -> None:
    import nibabel

    image = nibabel.Nifti1Image(np.ascontiguousarray(np.asarray(array).astype(dtype).transpose(2, 1, 0)),
                                nifti_affine(geometry))
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    image.header.set_xyzt_units("mm")
    image.to_filename(path)


def _read_nifti(path: str, dtype) -> tuple[np.ndarray, Geometry]:
    import nibabel

    image = nibabel.load(path)
    array = np.ascontiguousarray(np.asarray(image.dataobj).astype(dtype).transpose(2, 1, 0))
    return array, geometry_from_affine(image.affine)


def write_subject(subject: SimulatedSubject, folder, volumes: Iterable[str] = tuple(VOLUMES),
                  force: bool = False) -> str:
    """Write a subject's volumes (NIfTI .nii.gz) and record.json into ``folder``, atomically.

    Args:
        volumes: which of :data:`VOLUMES` to write (targets that were not computed are skipped).
        force: replace an existing folder.
    Returns the folder path.
    """
    folder = os.path.abspath(os.fspath(folder))
    unknown = sorted(set(volumes) - set(VOLUMES))
    if unknown:
        raise PVCInputError(f"unknown volume(s) {unknown}; choose from {', '.join(VOLUMES)}")
    if os.path.exists(folder) and not force:
        raise PVCInputError(f"{folder} exists; use another folder or --force to replace it")
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    temporary = os.path.join(parent, f".{os.path.basename(folder)}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    try:
        for name in volumes:
            array = getattr(subject, name)
            if array is None:
                continue
            geometry = subject.scanner_geometry if name == "pet_scanner" else subject.geometry
            _write_nifti(array, geometry, os.path.join(temporary, f"{name}.nii.gz"), VOLUMES[name])
        with open(os.path.join(temporary, RECORD_FILE), "w") as stream:
            json.dump(subject.record, stream, indent=1)
        if os.path.exists(folder):
            shutil.rmtree(folder)
        os.replace(temporary, folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder


def read_subject(folder) -> SimulatedSubject:
    """A subject written by :func:`write_subject` (volumes not written are None)."""
    folder = os.fspath(folder)
    record_path = os.path.join(folder, RECORD_FILE)
    if not os.path.isfile(record_path):
        raise PVCInputError(f"{folder} is not a simulated subject folder (no {RECORD_FILE})")
    with open(record_path) as stream:
        record = json.load(stream)
    arrays, geometries = {}, {}
    for name, dtype in VOLUMES.items():
        path = os.path.join(folder, f"{name}.nii.gz")
        arrays[name], geometries[name] = _read_nifti(path, dtype) if os.path.exists(path) else (None, None)
    for name in ("brain_mask", "field_of_view"):
        if arrays[name] is not None:
            arrays[name] = arrays[name].astype(bool)
    output_geometry = next((g for n, g in geometries.items() if g is not None and n != "pet_scanner"),
                           Geometry.from_dict(record["output_grid"]))
    scanner_geometry = geometries["pet_scanner"] or Geometry.from_dict(record["scanner_grid"])
    return SimulatedSubject(seed=int(record["seed"]), region_names=region_names(), geometry=output_geometry,
                            scanner_geometry=scanner_geometry, record=record, **arrays)


def subject_stream(seeds: Iterable[int], settings: Optional[SimulationSettings] = None,
                   processes: int = 1) -> Iterator[SimulatedSubject]:
    """Simulate the subjects of ``seeds`` one after another (in order), for on-the-fly training.

    With ``processes`` > 1 the subjects are made in that many worker processes ahead of use.
    """
    settings = settings or SimulationSettings()
    if processes <= 1:
        for seed in seeds:
            yield simulate_subject(seed, settings)
        return
    for source in settings.anatomy_sources:  # once in the parent; forked workers share them
        load_templates(source, settings.templates_path)
    with multiprocessing.Pool(processes, initializer=_init_worker) as pool:
        yield from pool.imap(_simulate_for_stream, ((seed, settings) for seed in seeds))


def _init_worker() -> None:
    # One blur thread per worker process: the processes already use every core.
    from ..classical import psf
    psf.BLUR_THREADS = 1


def _simulate_for_stream(job) -> SimulatedSubject:
    seed, settings = job
    return simulate_subject(seed, settings)


def _simulate_and_write(job) -> dict:
    seed, settings, folder, volumes, force = job
    subject = simulate_subject(seed, settings)
    write_subject(subject, folder, volumes, force)
    return _summary(subject, folder)


def _summary(subject: SimulatedSubject, folder: str) -> dict:
    scanner = subject.record["scanner"]
    return {"seed": subject.seed, "folder": os.path.basename(folder), "status": subject.status,
            "anatomy": subject.record["anatomy"]["source"], "tracer": subject.record["uptake"]["tracer"],
            "psf_fwhm_mm": scanner["psf_fwhm_mm"], "grid": scanner["grid_name"],
            "count_level": scanner["count_level"], "global_scale": subject.record["uptake"]["global_scale"]}


def generate_dataset(out_dir, seeds: Iterable[int], settings: Optional[SimulationSettings] = None,
                     processes: int = 1, volumes: Iterable[str] = tuple(VOLUMES), force: bool = False,
                     progress=None, cancel=None) -> dict:
    """Simulate and write one folder per seed under ``out_dir``, in ``processes`` worker processes.

    Writes ``dataset.json`` (settings and one summary line per subject) last. Refuses existing
    subject folders unless ``force``. Returns the manifest.
    """
    settings = settings or SimulationSettings()
    seeds = [int(s) for s in seeds]
    out_dir = os.path.abspath(os.fspath(out_dir))
    folders = [os.path.join(out_dir, subject_folder_name(seed)) for seed in seeds]
    existing = [f for f in folders if os.path.exists(f)]
    if existing and not force:
        raise PVCInputError(f"{len(existing)} subject folder(s) exist already in {out_dir} (e.g. "
                            f"{os.path.basename(existing[0])}); use --force to replace them")
    os.makedirs(out_dir, exist_ok=True)
    volumes = tuple(volumes)
    jobs = [(seed, settings, folder, volumes, force) for seed, folder in zip(seeds, folders)]
    summaries = []
    report(progress, 0.0, f"simulating {len(jobs)} subjects")
    if processes <= 1:
        results: Iterable[dict] = map(_simulate_and_write, jobs)
        pool = None
    else:
        for source in settings.anatomy_sources:
            load_templates(source, settings.templates_path)
        pool = multiprocessing.Pool(processes, initializer=_init_worker)
        results = pool.imap(_simulate_and_write, jobs)
    try:
        for done, summary in enumerate(results, start=1):
            summaries.append(summary)
            report(progress, done / len(jobs), f"simulated {done}/{len(jobs)} subjects")
            raise_if_cancelled(cancel)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    manifest = {"settings": settings.to_dict(), "subjects": summaries}
    write_text_atomic(os.path.join(out_dir, MANIFEST_FILE), json.dumps(manifest, indent=1), force=True)
    return manifest
