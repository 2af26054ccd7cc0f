"""The BIDS derivatives folder of a batch run: file names, ``dataset_description.json``, per-scan
sidecars and records, the resume check and the group table.

Per scan ``<id>`` (e.g. ``sub-01_ses-1``), in its folder (``sub-01/ses-1/pet``):
``<id>_desc-pvc_pet.nii.gz`` (the network's correction), ``<id>_desc-sharpen_pet.nii.gz`` (the sharpen
baseline) and a JSON sidecar for each; the PVC sidecar holds the scan's record, from which a rerun
decides whether the scan is up to date. In ``logs/``: ``<id>.log`` (what the worker did, every
attempt) and ``<id>.json`` (the record of the last attempt, failed or not), which the group level
gathers into ``pvc_scans.tsv``.

A record is a flat dict of columns: :data:`RECORD_COLUMNS` first, in that order, then any other
column in the order first met. A later readout (SUVR, Centiloid) adds its own columns to the record
without any change here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

from .. import __version__
from ..errors import PVCInputError
from ..io import write_text_atomic
from .scans import Scan

LOGS_FOLDER = "logs"
GROUP_TABLE = "pvc_scans.tsv"
GROUP_TABLE_DICTIONARY = "pvc_scans.json"
BIDS_VERSION = "1.9.0"
MISSING = "n/a"

#: Columns of a record (and of the group table), with their descriptions.
RECORD_COLUMNS = {
    "scan_id": "name of the scan in the cohort: its file name without _pet and the suffix",
    "participant_id": "BIDS participant (sub-<label>); n/a outside BIDS",
    "session_id": "BIDS session (ses-<label>); n/a when none",
    "status": "corrected; failed (see error); skipped (4D file and no --frame); not-run (never attempted)",
    "error": "one-line reason of a failure or a skip",
    "input": "absolute path of the input image",
    "input_sha256": "SHA-256 of the input file (of the file list for a DICOM folder)",
    "frame": "frame of a 4D input that was corrected (0-based); n/a for 3D input",
    "tracer": "TracerName of the input's JSON sidecar",
    "units": "Units of the input's JSON sidecar (outputs keep the input's units)",
    "input_shape_zyx": "voxels of the input along z, y, x",
    "input_spacing_mm": "voxel size of the input along x, y, z, mm",
    "model_name": "name in the model card",
    "model_sha256": "SHA-256 of the model weights",
    "mode": "tiling: gaussian (blended overlapping windows) or study (eight 128^3 tiles)",
    "overlap": "window overlap in voxels (gaussian tiling); n/a: the default",
    "output_grid": "standard (1 mm 256^3, centred on the input) or native (the input's grid)",
    "crop_fov": "true when a field of view wider than 256 mm was cut",
    "batch_size": "windows per network call",
    "device": "where the network ran (cpu:0, gpu:0)",
    "software": "library name and version",
    "intensity_method": "the network input's intensity normalisation (the model card's)",
    "crop_value": "the intensity the normalisation crops at (input units; brain_percentile: the 85th "
                  "percentile inside the brain found in the PET)",
    "crop_over_maximum": "crop_value over the maximum of the input on the standard grid (an extra-cerebral "
                         "hot spot lowers it)",
    "read_s": "seconds to read the input",
    "load_model_s": "seconds to load the model (0 when the worker had it loaded)",
    "resample_s": "seconds to resample to the standard grid",
    "inference_s": "seconds of network inference",
    "sharpen_s": "seconds of the sharpen baseline",
    "resample_back_s": "seconds to resample back to the input grid (native output)",
    "total_s": "seconds of the correction (model load to last resampling)",
    "corrected": "corrected image, relative to the derivatives folder",
    "sharpened": "sharpen baseline image, relative to the derivatives folder",
    "log": "log of the scan, relative to the derivatives folder",
    "worker": "host:pid of the process that ran the scan",
    "started": "UTC time the attempt started",
    "finished": "UTC time the attempt ended",
}
#: Record columns that decide, with the input's hash, whether existing outputs are up to date.
SETTINGS_COLUMNS = ("model_sha256", "mode", "overlap", "output_grid", "crop_fov", "frame")


def output_names(scan: Scan) -> dict:
    """Paths of a scan's outputs relative to the derivatives folder, by role."""
    folder = Path(scan.output_folder)
    return {"corrected": (folder / f"{scan.scan_id}_desc-pvc_pet.nii.gz").as_posix(),
            "sharpened": (folder / f"{scan.scan_id}_desc-sharpen_pet.nii.gz").as_posix(),
            "sidecar": (folder / f"{scan.scan_id}_desc-pvc_pet.json").as_posix(),
            "sharpen_sidecar": (folder / f"{scan.scan_id}_desc-sharpen_pet.json").as_posix()}


def log_path(output_root, scan: Scan) -> Path:
    return Path(output_root) / LOGS_FOLDER / f"{scan.scan_id}.log"


def record_path(output_root, scan: Scan) -> Path:
    return Path(output_root) / LOGS_FOLDER / f"{scan.scan_id}.json"


def scan_columns(scan: Scan) -> dict:
    """The record's columns known before the scan is read."""
    return {"scan_id": scan.scan_id,
            "participant_id": f"sub-{scan.participant}" if scan.participant else None,
            "session_id": f"ses-{scan.session}" if scan.session else None,
            "input": str(scan.path), "tracer": scan.metadata.get("TracerName"),
            "units": scan.metadata.get("Units")}


def sidecars(record: dict, scan: Scan) -> dict:
    """The JSON sidecars of the corrected and sharpened images, by role."""
    common = {"Sources": [scan.path.as_uri()], "Units": scan.metadata.get("Units"),
              "SpatialReference": ("orig" if record.get("output_grid") == "native"
                                   else "1 mm 256^3 grid centred on the input, axes of the input")}
    common = {key: value for key, value in common.items() if value is not None}
    return {"sidecar": {"Description": "partial volume correction by a 3D ResUNet (no MRI), pet-pvc",
                        **common, "PartialVolumeCorrection": record},
            "sharpen_sidecar": {"Description": "sharpen-filter baseline (Gaussian blur, unsharp mask), pet-pvc",
                                **common}}


def read_json(path) -> Optional[dict]:
    """The JSON object in ``path``, or None when the file is missing or not a JSON object."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def existing_record(output_root, scan: Scan) -> Optional[dict]:
    """The record in the scan's PVC sidecar when every output of the scan exists, else None."""
    root = Path(output_root)
    names = output_names(scan)
    if not all((root / name).is_file() for name in names.values()):
        return None
    sidecar = read_json(root / names["sidecar"])
    record = sidecar.get("PartialVolumeCorrection") if sidecar else None
    return record if isinstance(record, dict) else None


def is_up_to_date(record: Optional[dict], input_sha256: str, settings: dict) -> bool:
    """True when ``record`` (from :func:`existing_record`) was made from this input with these settings."""
    return (record is not None and record.get("status") == "corrected"
            and record.get("input_sha256") == input_sha256
            and all(record.get(column) == settings.get(column) for column in SETTINGS_COLUMNS))


def write_record(output_root, scan: Scan, record: dict) -> None:
    path = record_path(output_root, scan)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=1) + "\n", force=True)


def write_dataset_description(output_root, source, model_card: dict) -> Path:
    """Write (or refresh) the derivatives' ``dataset_description.json`` and ``.bidsignore``."""
    root = Path(output_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PVCInputError(f"{root}: cannot create the output folder ({error.strerror})") from None
    description = {
        "Name": "Partial volume corrected PET (pet-pvc)", "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "pet-pvc", "Version": __version__,
                         "Description": "deep-learning partial volume correction of amyloid PET, no MRI",
                         "ModelName": model_card.get("name"), "ModelSHA256": model_card.get("weights_sha256")}],
        "SourceDatasets": [{"URL": Path(source).resolve().as_uri()}],
    }
    path = root / "dataset_description.json"
    text = json.dumps(description, indent=2) + "\n"
    if not path.is_file() or path.read_text() != text:
        write_text_atomic(path, text, force=True)
    ignore = root / ".bidsignore"
    ignore_text = f"{LOGS_FOLDER}/\n{GROUP_TABLE}\n{GROUP_TABLE_DICTIONARY}\n"
    if not ignore.is_file() or ignore.read_text() != ignore_text:
        write_text_atomic(ignore, ignore_text, force=True)
    return path


def _cell(value) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("\t", " ").replace("\n", " ")


def table_columns(records: Iterable[dict]) -> list:
    """:data:`RECORD_COLUMNS` in order, then every other column in the order first met."""
    columns = list(RECORD_COLUMNS)
    for record in records:
        columns.extend(column for column in record if column not in columns)
    return columns


def write_group_table(output_root, records: list) -> Path:
    """Write ``pvc_scans.tsv`` (one row per record) and its column dictionary ``pvc_scans.json``."""
    root = Path(output_root)
    columns = table_columns(records)
    lines = ["\t".join(columns)] + ["\t".join(_cell(record.get(column)) for column in columns)
                                    for record in records]
    path = write_text_atomic(root / GROUP_TABLE, "\n".join(lines) + "\n", force=True)
    dictionary = {column: {"Description": RECORD_COLUMNS[column]} for column in columns if column in RECORD_COLUMNS}
    write_text_atomic(root / GROUP_TABLE_DICTIONARY, json.dumps(dictionary, indent=2) + "\n", force=True)
    return path
