"""Finding the scans of a cohort: a BIDS dataset, a plain folder of images, or a list file.

A BIDS dataset holds ``sub-<label>/[ses-<label>/]pet/*_pet.nii[.gz]`` with a JSON sidecar of the same
name (``TracerName``, ``Units``, frame times). Each scan gets a ``scan_id`` (the file name without
``_pet`` and the suffix, e.g. ``sub-01_ses-1_trc-PiB``) and a folder of the derivatives that mirrors
its source (``sub-01/ses-1/pet``). Only the sidecar beside the image is read (not the BIDS
inheritance chain from the dataset's top level).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from ..errors import PVCInputError
from ..io import IMAGE_SUFFIXES, image_stem, image_suffix

BIDS_PET_PATTERNS = ("sub-*/pet/*_pet.nii", "sub-*/pet/*_pet.nii.gz",
                     "sub-*/ses-*/pet/*_pet.nii", "sub-*/ses-*/pet/*_pet.nii.gz")
_ENTITY = re.compile(r"(?:^|_)(sub|ses)-([a-zA-Z0-9]+)")


@dataclass(frozen=True)
class Scan:
    """One PET scan to correct.

    Attributes:
        path: the image file (or DICOM series folder), absolute.
        scan_id: unique name of the scan in the cohort, the stem of its output file names.
        output_folder: folder of its outputs, relative to the derivatives folder.
        participant, session: BIDS labels without ``sub-``/``ses-`` (None when the name has none).
        frames: frames in the file (1 for 3D), None when the header could not be read.
        metadata: the JSON sidecar beside the image ({} when there is none).
    """

    path: Path
    scan_id: str
    output_folder: str
    participant: Optional[str] = None
    session: Optional[str] = None
    frames: Optional[int] = None
    metadata: dict = field(default_factory=dict, compare=False)


def is_bids_dataset(folder: Path) -> bool:
    return (folder / "dataset_description.json").is_file() or any(folder.glob("sub-*/pet")) \
        or any(folder.glob("sub-*/ses-*/pet"))


def count_frames(path: Path) -> Optional[int]:
    """Frames of an image file from its header alone (1 for 3D); None for a folder or an unreadable file."""
    import SimpleITK as sitk

    if path.is_dir():
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None  # the worker reads it and reports why it is unreadable
    size = reader.GetSize()
    return int(size[3]) if len(size) == 4 else 1


def _read_sidecar(path: Path) -> dict:
    sidecar = path.parent / f"{image_stem(path)}.json"
    if not sidecar.is_file():
        return {}
    try:
        metadata = json.loads(sidecar.read_text())
    except (OSError, ValueError) as error:
        raise PVCInputError(f"{sidecar}: not a readable JSON sidecar ({error})") from None
    return metadata if isinstance(metadata, dict) else {}


def _scan(path: Path, output_folder: str) -> Scan:
    stem = image_stem(path)
    scan_id = stem[: -len("_pet")] if stem.endswith("_pet") else stem
    entities = dict(_ENTITY.findall(stem))
    return Scan(path=path.resolve(), scan_id=scan_id, output_folder=output_folder,
                participant=entities.get("sub"), session=entities.get("ses"),
                frames=count_frames(path), metadata=_read_sidecar(path))


def _bids_scans(dataset: Path) -> list[Scan]:
    paths = sorted({p for pattern in BIDS_PET_PATTERNS for p in dataset.glob(pattern)})
    return [_scan(p, p.parent.relative_to(dataset).as_posix()) for p in paths]


def _folder_scans(folder: Path) -> list[Scan]:
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and image_suffix(p) in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return [_scan(p, p.parent.relative_to(folder).as_posix()) for p in paths]


def _listed_scans(list_file: Path) -> list[Scan]:
    """One image path (or DICOM folder) per line, relative to the list file's folder; # starts a comment.

    A BIDS-named file gets the BIDS folder (``sub-X/[ses-Y/]pet``) in the derivatives, others the top level.
    """
    scans = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        path = (list_file.parent / entry)
        if not path.exists():
            raise PVCInputError(f"{list_file}, line {number}: {entry}: no such file or folder")
        entities = dict(_ENTITY.findall(image_stem(path)))
        folder = "/".join([f"sub-{entities['sub']}"] + ([f"ses-{entities['ses']}"] if "ses" in entities else [])
                          + ["pet"]) if "sub" in entities else "."
        scans.append(_scan(path, folder))
    return scans


def _labels(values: Optional[Iterable[str]], prefix: str) -> Optional[set]:
    return None if not values else {v[len(prefix):] if v.startswith(prefix) else v for v in values}


def find_scans(source, participant_labels: Optional[Iterable[str]] = None,
               session_labels: Optional[Iterable[str]] = None) -> list[Scan]:
    """The scans of ``source`` (a BIDS dataset, a folder of images or a list file), in a fixed order.

    ``participant_labels`` / ``session_labels`` keep only those participants / sessions (with or without
    the ``sub-`` / ``ses-`` prefix). Raises :class:`PVCInputError` when ``source`` is missing, holds no
    scan (after the filters), or two scans would share a ``scan_id``.
    """
    source = Path(source)
    if not source.exists():
        raise PVCInputError(f"{source}: no such BIDS dataset, folder or list file")
    if source.is_file():
        scans = _listed_scans(source)
    elif is_bids_dataset(source):
        scans = _bids_scans(source)
    else:
        scans = _folder_scans(source)
    participants, sessions = _labels(participant_labels, "sub-"), _labels(session_labels, "ses-")
    scans = [s for s in scans if (participants is None or s.participant in participants)
             and (sessions is None or s.session in sessions)]
    if not scans:
        raise PVCInputError(f"{source}: no PET scan found (BIDS: sub-*/[ses-*/]pet/*_pet.nii[.gz]; "
                            f"folder: {', '.join(IMAGE_SUFFIXES)} files; or a list file)"
                            + (" for the labels given" if participants or sessions else ""))
    seen = {}
    for scan in scans:
        if scan.scan_id in seen:
            raise PVCInputError(f"{seen[scan.scan_id]} and {scan.path} share the name {scan.scan_id!r}; "
                                "rename one (outputs and logs are named after it)")
        seen[scan.scan_id] = scan.path
    return scans


def input_sha256(path: Path) -> str:
    """SHA-256 of an image file; for a DICOM folder, of its files' names and hashes in name order."""
    from ..model import file_sha256

    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for member in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{member.relative_to(path).as_posix()}\0{file_sha256(member)}\n".encode())
    return digest.hexdigest()
