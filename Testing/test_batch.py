"""`pet-pvc batch` on a tiny BIDS dataset made here: discovery, the local pool, a real Dask cluster of
worker processes, an interrupted run resumed, a broken scan reported while the others are done.

The network is a tiny untrained ResUNet saved as a real model folder (its zero-initialised head makes
it the identity), passed with ``--model``. Each scan is still resampled to 1 mm 256^3, so the runs are
shared by module-scoped fixtures: about seven corrections in the whole file.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import blob_volume, save_identity_model
from PETPartialVolumeCorrectionLib.batch.derivatives import RECORD_COLUMNS, table_columns, write_group_table
from PETPartialVolumeCorrectionLib.batch.runner import EXIT_SCAN_FAILED
from PETPartialVolumeCorrectionLib.batch.scans import find_scans
from PETPartialVolumeCorrectionLib.cli import main
from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.geometry import Geometry
from PETPartialVolumeCorrectionLib.io import read_image, to_sitk_image, write_image

GEOMETRY = Geometry((4.0, 4.0, 4.0), (-78.0, -78.0, -62.0))
SHAPE = (32, 40, 40)  # [z, y, x]: 160 x 160 x 128 mm
GOOD = ("sub-01_trc-PiB", "sub-02_ses-1_trc-PiB")
BROKEN, DYNAMIC = "sub-03", "sub-04"


def pet(scale: float) -> np.ndarray:
    return (scale * 3000.0 * blob_volume(SHAPE, GEOMETRY, (4.0, -6.0, 2.0), sigma_mm=30.0,
                                         background=0.05)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_identity_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    """sub-01 (3D), sub-02 ses-1 (3D, twice the activity), sub-03 (not an image), sub-04 (4D, 3 frames:
    frame t is (t + 1) times sub-01's volume)."""
    root = tmp_path_factory.mktemp("data") / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny", "BIDSVersion": "1.9.0"}))
    for folder, stem, scale in (("sub-01/pet", GOOD[0], 1.0), ("sub-02/ses-1/pet", GOOD[1], 2.0)):
        write_image(pet(scale), GEOMETRY, root / folder / f"{stem}_pet.nii.gz")
        (root / folder / f"{stem}_pet.json").write_text(json.dumps({"TracerName": "PiB", "Units": "Bq/mL"}))
    (root / "sub-03/pet").mkdir(parents=True)
    (root / "sub-03/pet/sub-03_pet.nii.gz").write_bytes(b"not an image at all")
    (root / "sub-04/pet").mkdir(parents=True)
    frames = sitk.JoinSeries([to_sitk_image(pet(t + 1.0), GEOMETRY) for t in range(3)])
    sitk.WriteImage(frames, str(root / "sub-04/pet/sub-04_pet.nii.gz"))
    return root


def record(out, scan_id):
    return json.loads((out / "logs" / f"{scan_id}.json").read_text())


def leftovers(folder):
    """Staging folders and temporary files anywhere under ``folder``."""
    return [p for p in folder.rglob("*") if p.name.startswith(".pet-pvc-staging") or p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------------------------
# Finding the scans (no network)


def test_find_scans_in_a_bids_dataset_a_folder_and_a_list_file(bids, tmp_path):
    scans = find_scans(bids)
    assert [s.scan_id for s in scans] == [GOOD[0], GOOD[1], BROKEN, DYNAMIC]
    assert [s.output_folder for s in scans] == ["sub-01/pet", "sub-02/ses-1/pet", "sub-03/pet", "sub-04/pet"]
    assert [(s.participant, s.session) for s in scans][:2] == [("01", None), ("02", "1")]
    assert [s.frames for s in scans] == [1, 1, None, 3]
    assert scans[0].metadata == {"TracerName": "PiB", "Units": "Bq/mL"}
    frame, _ = read_image(scans[3].path, frame=2)
    np.testing.assert_allclose(frame, pet(3.0), rtol=1e-6)
    with pytest.raises(PVCInputError, match="frame 3 asked, the image has 3 frame"):
        read_image(scans[3].path, frame=3)
    assert [s.scan_id for s in find_scans(bids, participant_labels=["01", "sub-02"])] == list(GOOD)
    assert [s.scan_id for s in find_scans(bids, session_labels=["ses-1"])] == [GOOD[1]]
    with pytest.raises(PVCInputError, match="no PET scan found"):
        find_scans(bids, participant_labels=["99"])

    folder = tmp_path / "plain"
    (folder / "site-b").mkdir(parents=True)
    shutil.copy(bids / "sub-01/pet/sub-01_trc-PiB_pet.nii.gz", folder / "scan-a.nii.gz")
    shutil.copy(bids / "sub-01/pet/sub-01_trc-PiB_pet.nii.gz", folder / "site-b" / "scan-b.nii.gz")
    (folder / ".hidden").mkdir()
    shutil.copy(folder / "scan-a.nii.gz", folder / ".hidden" / "scan-c.nii.gz")
    assert [(s.scan_id, s.output_folder) for s in find_scans(folder)] == [("scan-a", "."), ("scan-b", "site-b")]

    listing = tmp_path / "scans.txt"
    listing.write_text(f"# cohort\nplain/scan-a.nii.gz\n{bids}/sub-02/ses-1/pet/{GOOD[1]}_pet.nii.gz  # 2nd\n\n")
    assert [(s.scan_id, s.output_folder) for s in find_scans(listing)] == [
        ("scan-a", "."), (GOOD[1], "sub-02/ses-1/pet")]
    listing.write_text("plain/scan-a.nii.gz\nplain/site-b/scan-b.nii.gz\nplain/scan-a.nii.gz\n")
    with pytest.raises(PVCInputError, match="share the name 'scan-a'"):
        find_scans(listing)
    listing.write_text("plain/missing.nii.gz\n")
    with pytest.raises(PVCInputError, match="line 1: plain/missing.nii.gz: no such file"):
        find_scans(listing)


def test_group_table_keeps_columns_a_later_readout_adds(tmp_path):
    records = [{"scan_id": "a", "status": "corrected", "suvr_composite": 1.52, "centiloid": 41.0},
               {"scan_id": "b", "status": "failed", "error": "x\ty"}]
    columns = table_columns(records)
    assert columns[:len(RECORD_COLUMNS)] == list(RECORD_COLUMNS)
    assert columns[len(RECORD_COLUMNS):] == ["suvr_composite", "centiloid"]
    header, first, second = [line.split("\t") for line in write_group_table(tmp_path, records).read_text().splitlines()]
    assert len(header) == len(first) == len(second) == len(columns)
    assert dict(zip(header, first))["centiloid"] == "41" and dict(zip(header, second))["centiloid"] == "n/a"
    assert dict(zip(header, second))["error"] == "x y"


# ----------------------------------------------------------------------------------------------
# An interrupted run, resumed on the local pool


@pytest.fixture(scope="module")
def interrupted(bids, tiny_model, tmp_path_factory):
    """A real `pet-pvc batch` process with one worker, sent SIGINT (Ctrl-C) while it works on the
    second scan, once the first scan's outputs are in place."""
    out = tmp_path_factory.mktemp("run") / "derivatives"
    command = [sys.executable, "-m", "PETPartialVolumeCorrectionLib.cli", "batch", str(bids), str(out),
               "participant", "--model", str(tiny_model), "--device", "cpu", "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_sidecar = out / "sub-01/pet" / f"{GOOD[0]}_desc-pvc_pet.json"
    deadline = time.monotonic() + 900
    while not first_sidecar.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # the first scan's record is written just after its outputs
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=600)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return {"out": out, "returncode": process.returncode, "stderr": stderr, "files": files,
            "leftovers": leftovers(out)}


@pytest.fixture(scope="module")
def resumed(interrupted, bids, tiny_model):
    """The same command run again, on a pool of two workers, with frame 1 of 4D files chosen."""
    out = interrupted["out"]
    code = main(["batch", str(bids), str(out), "participant", "--model", str(tiny_model), "--device", "cpu",
                 "--workers", "2", "--frame", "1", "--progress", "none"])
    return {"out": out, "returncode": code}


def test_ctrl_c_stops_the_run_and_leaves_no_half_written_file(interrupted):
    assert interrupted["returncode"] == 130, interrupted["stderr"]
    assert "pet-pvc batch: interrupted" in interrupted["stderr"]
    assert interrupted["leftovers"] == []
    files = interrupted["files"]
    for name in (f"sub-01/pet/{GOOD[0]}_desc-pvc_pet.nii.gz", f"sub-01/pet/{GOOD[0]}_desc-sharpen_pet.nii.gz",
                 f"logs/{GOOD[0]}.json", "dataset_description.json"):
        assert name in files
    assert not any(name.startswith("sub-02/") for name in files)  # the scan in progress left nothing
    assert f"logs/{DYNAMIC}.json" in files  # reported when planned: 4D and no --frame


def test_rerun_continues_skips_the_done_scan_and_reports_the_broken_one(resumed, bids):
    out = resumed["out"]
    assert resumed["returncode"] == EXIT_SCAN_FAILED
    assert leftovers(out) == []
    first_log = (out / "logs" / f"{GOOD[0]}.log").read_text()
    assert first_log.count(" start ") == 1  # corrected once, before the interruption; not again
    first, second = record(out, GOOD[0]), record(out, GOOD[1])
    assert first["status"] == second["status"] == "corrected" and first["frame"] is None
    # Identity network: the corrected image is the input on the standard grid, in the input's units.
    corrected, geometry = read_image(out / second["corrected"])
    assert corrected.shape == (256, 256, 256) and geometry.spacing == (1.0, 1.0, 1.0)
    assert corrected.max() == pytest.approx(second["crop_value"] / second["crop_over_maximum"], rel=1e-3)
    assert second["crop_value"] == pytest.approx(2.0 * first["crop_value"], rel=1e-4)
    broken = record(out, BROKEN)
    assert broken["status"] == "failed" and "not a readable image" in broken["error"]
    assert not (out / "sub-03").exists()
    dynamic = record(out, DYNAMIC)
    assert dynamic["status"] == "corrected" and dynamic["frame"] == 1
    assert dynamic["crop_value"] == pytest.approx(2.0 * first["crop_value"], rel=1e-4)
    sidecar = json.loads((out / f"sub-02/ses-1/pet/{GOOD[1]}_desc-pvc_pet.json").read_text())
    assert sidecar["Units"] == "Bq/mL" and sidecar["PartialVolumeCorrection"] == second
    assert sidecar["Sources"] == [(bids / f"sub-02/ses-1/pet/{GOOD[1]}_pet.nii.gz").as_uri()]


def test_group_level_writes_one_row_per_scan(resumed, bids, tiny_model, capsys):
    out = resumed["out"]
    assert main(["batch", str(bids), str(out), "group"]) == EXIT_SCAN_FAILED
    assert "4 scans: 3 corrected, 1 failed" in capsys.readouterr().out
    header, *rows = [line.split("\t") for line in (out / "pvc_scans.tsv").read_text().splitlines()]
    assert header[:len(RECORD_COLUMNS)] == list(RECORD_COLUMNS)
    table = {row[0]: dict(zip(header, row)) for row in rows}
    assert list(table) == [GOOD[0], GOOD[1], BROKEN, DYNAMIC]
    assert [table[s]["status"] for s in table] == ["corrected", "corrected", "failed", "corrected"]
    assert table[GOOD[1]]["session_id"] == "ses-1" and table[GOOD[0]]["session_id"] == "n/a"
    card = json.loads((tiny_model / "model_card.json").read_text())
    assert {table[s]["model_sha256"] for s in GOOD} == {card["weights_sha256"]}
    assert float(table[DYNAMIC]["crop_over_maximum"]) == pytest.approx(float(table[GOOD[0]]["crop_over_maximum"]),
                                                                         rel=1e-4)
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["ModelSHA256"] == card["weights_sha256"]


def test_other_settings_are_refused_without_force_and_outputs_kept(resumed, bids, tiny_model):
    out = resumed["out"]
    image = out / f"sub-01/pet/{GOOD[0]}_desc-pvc_pet.nii.gz"
    before = image.read_bytes()
    common = ["batch", str(bids), str(out), "participant", "--model", str(tiny_model), "--participant-label", "01",
              "--progress", "none"]
    assert main(common + ["--mode", "study"]) == EXIT_SCAN_FAILED
    assert "use --force" in record(out, GOOD[0])["error"] and image.read_bytes() == before
    assert main(common) == 0  # the original settings: up to date again, and its record says so
    assert record(out, GOOD[0])["status"] == "corrected" and image.read_bytes() == before


# ----------------------------------------------------------------------------------------------
# A Dask distributed cluster of worker processes


def test_dask_cluster_gives_the_same_outputs_as_the_local_pool(resumed, bids, tiny_model, tmp_path):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        code = main(["batch", str(bids), str(out), "participant", "--model", str(tiny_model), "--device", "cpu",
                     "--participant-label", "01", "02", "--dask-scheduler", cluster.scheduler_address,
                     "--progress", "none"])
    assert code == 0 and leftovers(out) == []
    for scan_id in GOOD:
        dask_record, pool_record = record(out, scan_id), record(resumed["out"], scan_id)
        assert dask_record["status"] == "corrected"
        assert int(dask_record["worker"].rsplit(":", 1)[1]) != os.getpid()  # ran in a worker process
        dask_image, _ = read_image(out / dask_record["corrected"])
        pool_image, _ = read_image(resumed["out"] / pool_record["corrected"])
        np.testing.assert_allclose(dask_image, pool_image, rtol=1e-5, atol=1e-3)
