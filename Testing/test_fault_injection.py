"""Fault injection: corrupt, truncated and self-contradictory files, unwritable outputs, interrupts,
concurrent runs, non-finite results and odd paths, each tried as a user (or a careless script) would.

Each case asserts the exit code, a one-line message on stderr, no leftovers (no staging folder, no
half-written output, no folder removed that holds anything else) and an unchanged input. Where the
process matters (signals, exit codes, ITK aborting the process) the real ``pet-pvc`` runs in a
subprocess; elsewhere ``cli.main`` runs in this process (same code path, faster).

The tests run as root in CI, where a chmod'ed read-only folder can still be written: unwritable
outputs are made with /sys and /proc paths and with a file where a folder is expected.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from PETPartialVolumeCorrectionLib import cli
from PETPartialVolumeCorrectionLib.baseline import sharpen
from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.geometry import Geometry
from PETPartialVolumeCorrectionLib.io import (TEMPORARY_PREFIX, read_image, read_label_image,
                                              read_probability_maps, staged_outputs, validate_pet_volume,
                                              write_image)

GEOMETRY = Geometry((2.0, 2.0, 2.0), (-63.0, -60.0, -59.0))
SHAPE = (60, 64, 64)  # [z, y, x]: 128 x 128 x 120 mm


def pet_volume(seed: int = 0, scale: float = 1000.0) -> np.ndarray:
    """A Gaussian 'brain' on a noisy background, float32 ``[z, y, x]``."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    blob = np.exp(-((z - 30.0) ** 2 + (y - 32.0) ** 2 + (x - 32.0) ** 2) / 200.0)
    return (scale * blob + rng.normal(50.0, 5.0, SHAPE)).astype(np.float32)


@pytest.fixture
def pet_path(tmp_path) -> Path:
    return write_image(pet_volume(), GEOMETRY, tmp_path / "inputs" / "pet.nii.gz")


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (hidden ones too) with its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def pet_pvc_command() -> list[str]:
    """The installed ``pet-pvc`` next to this Python, else the same entry point through ``-m``."""
    script = Path(sys.executable).with_name("pet-pvc")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "PETPartialVolumeCorrectionLib.cli"]


def run_pet_pvc(*args, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run([*pet_pvc_command(), *map(os.fsencode, args)], capture_output=True, timeout=timeout)


def run_in_process(capsys, *args) -> tuple[int, str]:
    """``cli.main`` on ``args``: exit code and stderr."""
    code = cli.main([os.fspath(a) for a in args])
    return code, capsys.readouterr().err


def assert_one_line(stderr, expected_pattern: str) -> str:
    """stderr is exactly one line (after any cleared progress bar) that matches the pattern."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = text.strip().split("\n")  # not splitlines(): a cleared bar ends in "\r", not a new line
    assert len(lines) == 1, text
    last = lines[0].split("\r")[-1].strip()  # what is left on screen after a cleared bar
    assert re.search(expected_pattern, last), last
    return last


def assert_no_leftovers(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if p.name.startswith(TEMPORARY_PREFIX)]
    assert not leftovers, leftovers


# --- corrupt and truncated files --------------------------------------------------------------

def _flip_byte(path: Path, offset: int = -200) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))
    return path


def _truncate(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.mark.parametrize("suffix, damage, message", [
    (".nii.gz", _flip_byte, "compressed data are corrupt or truncated .*CRC check failed"),
    (".mha", _flip_byte, "compressed data are corrupt or truncated .*incorrect data check"),
    (".nii.gz", _truncate, "compressed data are corrupt or truncated .*ended before"),
    (".nii", _truncate, r"file is truncated \(491696 of 983392 bytes\)"),
    ("_raw.mha", _truncate, r"file is truncated \(49[0-9]+ of 983040 data bytes\)"),  # ITK: "No such file"
])
def test_corrupt_or_truncated_input_is_refused_in_one_line(tmp_path, capsys, suffix, damage, message):
    path = tmp_path / f"pet{suffix}"
    if suffix == "_raw.mha":  # uncompressed, as other tools write it
        sitk.WriteImage(sitk.GetImageFromArray(pet_volume()), str(path), useCompression=False)
        path = damage(path)
    else:
        path = damage(write_image(pet_volume(), GEOMETRY, path))
    before = snapshot(tmp_path)
    code, err = run_in_process(capsys, "sharpen", path, "-o", tmp_path / "out", "--native-grid")
    assert code == 2
    assert_one_line(err, f"^pet-pvc sharpen: error: .*pet{suffix}: {message}")
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_itk_would_read_the_corrupt_mha_as_garbage(tmp_path):
    """Why the MetaImage check exists: ITK reports no error for a damaged zlib stream."""
    path = _flip_byte(write_image(pet_volume(), GEOMETRY, tmp_path / "pet.mha"))
    garbage = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert not np.array_equal(garbage, pet_volume())
    with pytest.raises(PVCInputError, match="corrupt"):
        read_image(path)


def test_gzip_check_reads_the_whole_stream(tmp_path):
    """A damaged byte in the gzip trailer's CRC (past every voxel a reader needs) is found."""
    path = write_image(pet_volume(), GEOMETRY, tmp_path / "pet.nii.gz")
    with gzip.open(path) as stream:
        length = len(stream.read())
    assert length == 352 + pet_volume().nbytes
    with pytest.raises(PVCInputError, match="CRC"):
        read_image(_flip_byte(path, -6))


# --- NIfTI header conflicts -------------------------------------------------------------------

def _nifti(tmp_path, name, edit) -> Path:
    image = nibabel.Nifti1Image(pet_volume(), np.diag([2.0, 2.0, 2.0, 1.0]))
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    edit(image)
    path = tmp_path / name
    nibabel.save(image, str(path))
    return path


@pytest.mark.parametrize("pixdim", [(0.0, 2.0, 2.0), (2.0, -2.0, 2.0)])
def test_zero_or_negative_pixdim_is_refused(tmp_path, pixdim):
    """ITK would read these as 1 mm / abs(): the header's voxel size is patched in the file."""
    path = _nifti(tmp_path, "pixdim.nii", lambda image: None)
    data = bytearray(path.read_bytes())
    data[80:92] = np.asarray(pixdim, "<f4").tobytes()  # pixdim[1:4] of the NIfTI-1 header
    path.write_bytes(bytes(data))
    with pytest.raises(PVCInputError, match=r"pixdim\) .* zero, negative"):
        read_image(path)


def test_qform_and_sform_that_disagree_by_36_mm_are_refused(tmp_path):
    def shift_sform(image):
        sform = image.affine.copy()
        sform[0, 3] += 36.0
        image.set_sform(sform, code=2)
    path = _nifti(tmp_path, "conflict.nii.gz", shift_sform)
    with pytest.raises(PVCInputError, match="qform and sform disagree by up to 36.0 mm"):
        read_image(path)


def test_qform_and_sform_within_a_voxel_are_read(tmp_path):
    def nudge_sform(image):
        sform = image.affine.copy()
        sform[0, 3] += 0.5  # half a voxel
        image.set_sform(sform, code=2)
    volume, geometry = read_image(_nifti(tmp_path, "near.nii.gz", nudge_sform))
    assert volume.shape == SHAPE[::-1] and geometry.spacing == (2.0, 2.0, 2.0)  # nibabel's arrays are [x, y, z]


# --- bad values -------------------------------------------------------------------------------

def test_nan_in_a_label_image_is_refused_not_read_as_region_0(tmp_path, capsys):
    labels = np.ones(SHAPE, np.float32)
    labels[3, 4, 5] = np.nan
    label_path = tmp_path / "labels.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(label_path))  # write_image refuses NaN itself
    with pytest.raises(PVCInputError, match="1 label voxels are NaN"):
        read_label_image(label_path)
    with pytest.raises(PVCInputError, match="1 voxels are NaN"):
        read_probability_maps(label_path)
    pet = write_image(pet_volume(), Geometry((1.0, 1.0, 1.0)), tmp_path / "pet.nii.gz")
    code, err = run_in_process(capsys, "compare", pet, pet, "--mask", label_path)
    assert code == 2
    assert_one_line(err, "labels.nii.gz: 1 label voxels are NaN")


@pytest.mark.parametrize("array", [
    pet_volume().astype(np.complex64),
    pet_volume() > 100,
    pet_volume().astype(object),
], ids=["complex", "bool", "object"])
def test_complex_bool_and_object_arrays_are_refused_by_the_api(array):
    with pytest.raises(PVCInputError, match="PVC needs real numbers"):
        validate_pet_volume(array, GEOMETRY)


def test_complex_image_file_is_refused(tmp_path):
    path = tmp_path / "complex.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(pet_volume().astype(np.complex64)), str(path))
    with pytest.raises(PVCInputError, match="complex values"):
        read_image(path)


def test_sharpen_near_the_float32_limit_writes_no_infinity(tmp_path, capsys):
    volume = np.zeros(SHAPE, np.float32)
    volume[10:50, 10:54, 10:54] = 3e38
    volume[0, 0, 0] = 1.0
    assert not np.all(np.isfinite(_float32_sharpen(volume)))  # what the filter gave before
    path = write_image(volume, GEOMETRY, tmp_path / "huge.nii.gz")
    code, err = run_in_process(capsys, "sharpen", path, "-o", tmp_path / "out", "--native-grid")
    assert code == 2
    assert_one_line(err, "beyond what float32 holds")
    assert not (tmp_path / "out").exists()
    scaled = volume / np.float32(1e30)  # in range: the same result as the float32 filter
    np.testing.assert_allclose(sharpen(scaled, GEOMETRY.spacing), _float32_sharpen(scaled), rtol=1e-4, atol=1e-3)


def _float32_sharpen(volume):
    """The filter as it was (all float32) on GEOMETRY's 2 mm voxels: sigmas 3 and 1 mm."""
    from scipy import ndimage

    with np.errstate(over="ignore", invalid="ignore"):
        blurred = ndimage.gaussian_filter(volume, 1.5)
        return blurred + np.float32(30.0) * (blurred - ndimage.gaussian_filter(blurred, 0.5))


def test_every_written_image_is_finite(tmp_path):
    volume = pet_volume()
    volume[1, 2, 3] = np.nan
    with pytest.raises(PVCInputError, match="1 NaN or infinite voxels"):
        write_image(volume, GEOMETRY, tmp_path / "out" / "x.nrrd")
    assert not (tmp_path / "out").exists()


# --- misleading words -------------------------------------------------------------------------

def test_one_voxel_image_is_not_called_2d(tmp_path):
    path = tmp_path / "voxel.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((1, 1, 1), np.float32)), str(path))
    with pytest.raises(PVCInputError, match=r"size \(1, 1, 1\) .* fewer than 2 voxels") as refused:
        read_image(path)
    assert "2D" not in str(refused.value)


def test_tiny_spacing_is_printed_as_it_is():
    with pytest.raises(PVCInputError, match=r"spacing \(1e-06, 2, 2\) mm"):
        validate_pet_volume(pet_volume(), Geometry((1e-6, 2.0, 2.0)))


def test_nan_origin_is_named(tmp_path):
    path = _nifti(tmp_path, "origin.nii", lambda image: image.set_sform(None, code=0))
    data = bytearray(path.read_bytes())
    data[268:272] = np.asarray([np.nan], "<f4").tobytes()  # qoffset_x of the NIfTI-1 header
    path.write_bytes(bytes(data))
    with pytest.raises(PVCInputError, match=r"qform \(image origin/orientation\) is not finite") as refused:
        read_image(path)
    assert "constant" not in str(refused.value)
    with pytest.raises(PVCInputError, match=r"origin \(nan, 0.0, 0.0\) is not finite"):
        validate_pet_volume(pet_volume(), Geometry((2.0, 2.0, 2.0), (np.nan, 0.0, 0.0)))


# --- compare ----------------------------------------------------------------------------------

def test_compare_never_writes_its_json_onto_an_input(tmp_path, capsys, pet_path):
    before = snapshot(tmp_path)
    code, err = run_in_process(capsys, "compare", pet_path, pet_path, "--json", pet_path, "--force")
    assert code == 2
    assert_one_line(err, "output would overwrite an input")
    assert snapshot(tmp_path) == before


def test_compare_json_missing_folder_existing_file_and_valid_json(tmp_path, capsys, pet_path):
    code, err = run_in_process(capsys, "compare", pet_path, pet_path, "--json", tmp_path / "absent" / "s.json")
    assert code == 2
    assert_one_line(err, "absent: no such folder for --json")
    scores = tmp_path / "scores.json"
    assert run_in_process(capsys, "compare", pet_path, pet_path, "--json", scores)[0] == 0
    record = json.loads(scores.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert record == {"ssim": 1.0, "rmse": 0.0, "voxels": int(np.prod(SHAPE))}
    code, err = run_in_process(capsys, "compare", pet_path, pet_path, "--json", scores)
    assert code == 2
    assert_one_line(err, "scores.json exists; use --force")


def test_compare_refuses_a_nan_score_instead_of_printing_it(tmp_path, capsys):
    reference = write_image(pet_volume() * 1e-36, GEOMETRY, tmp_path / "tiny.nii.gz")
    prediction = write_image(pet_volume() * 1e6, GEOMETRY, tmp_path / "huge.nii.gz")
    code, err = run_in_process(capsys, "compare", prediction, reference, "--json", tmp_path / "s.json")
    assert code == 2
    assert_one_line(err, "SSIM nan: .*check the units")
    assert not (tmp_path / "s.json").exists()


def test_compare_says_which_part_of_the_grid_differs_and_can_resample(tmp_path, capsys, pet_path):
    shifted_geometry = Geometry(GEOMETRY.spacing, (-62.0, -60.0, -59.0))
    shifted = write_image(pet_volume(), shifted_geometry, tmp_path / "shifted.nii.gz")
    code, err = run_in_process(capsys, "compare", shifted, pet_path)
    assert code == 2
    line = assert_one_line(err, r"different grids \(origins \(-62, -60, -59\) mm vs \(-63, -60, -59\) mm\); "
                                "pass --resample")
    assert "shape" not in line
    assert cli.main(["compare", str(shifted), str(pet_path), "--resample"]) == 0
    out = capsys.readouterr().out
    assert 0.5 < float(out.split()[1]) < 1.0  # half a voxel of linear interpolation: close, not equal


# --- unwritable outputs and odd paths ---------------------------------------------------------

@pytest.mark.parametrize("output, message", [
    ("/sys/kernel", "cannot write there"),
    ("/proc/self/pet-pvc-out", "cannot create output folder"),
    ("{file}/sub", r"cannot create output folder \(Not a directory\)"),
    ("{file}", "exists and is not a folder"),
])
def test_unwritable_output_folder_is_refused_in_one_line(tmp_path, capsys, pet_path, output, message):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    before = snapshot(tmp_path)
    code, err = run_in_process(capsys, "sharpen", pet_path, "-o", output.format(file=a_file), "--native-grid")
    assert code == 2
    assert_one_line(err, message)
    assert snapshot(tmp_path) == before


def test_non_utf8_paths_are_refused_in_one_line_without_staging(tmp_path, pet_path):
    odd_input = tmp_path / os.fsdecode(b"pet\xff.nii.gz")
    shutil.copy(pet_path, odd_input)
    result = run_pet_pvc("sharpen", odd_input, "-o", tmp_path / "out", "--native-grid")
    assert result.returncode == 2  # was 134: ITK's std::logic_error aborted the process
    assert_one_line(result.stderr, r"pet\\xff.nii.gz: path is not valid UTF-8")
    odd_output = tmp_path / os.fsdecode(b"out\xfe")
    result = run_pet_pvc("sharpen", pet_path, "-o", odd_output, "--native-grid")
    assert result.returncode == 2
    assert_one_line(result.stderr, r"out\\xfe: path is not valid UTF-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["inputs", odd_input.name])


def test_spaces_and_non_ascii_letters_in_paths_work(tmp_path, capsys, pet_path):
    folder = tmp_path / "Études PET" / "sujet 1"
    code, _ = run_in_process(capsys, "sharpen", pet_path, "-o", folder, "--native-grid")
    assert code == 0
    assert [p.name for p in folder.iterdir()] == ["pet_sharpen.nii.gz"]


# --- staging: only what a run made is removed; no run replaces another's outputs ---------------

def test_failed_run_keeps_a_folder_that_others_wrote_into(tmp_path):
    output_dir = tmp_path / "new" / "S"
    with pytest.raises(RuntimeError):
        with staged_outputs(output_dir, ["a.nii.gz"]) as staging:
            (staging / "a.nii.gz").write_bytes(b"partial")
            (output_dir / "note.txt").write_text("another user's file")
            raise RuntimeError("the run fails")
    assert snapshot(tmp_path) == {"new/S/note.txt": hashlib.sha256(b"another user's file").hexdigest()}


def test_output_published_meanwhile_by_another_run_is_not_replaced(tmp_path):
    with pytest.raises(PVCInputError, match="b.nii.gz exists .*another run"):
        with staged_outputs(tmp_path, ["a.nii.gz", "b.nii.gz"]) as staging:
            (staging / "a.nii.gz").write_bytes(b"mine")
            (staging / "b.nii.gz").write_bytes(b"mine")
            (tmp_path / "b.nii.gz").write_bytes(b"the other run's")  # it finished first
    assert snapshot(tmp_path) == {"b.nii.gz": hashlib.sha256(b"the other run's").hexdigest()}


def test_two_concurrent_runs_into_one_new_folder(tmp_path):
    """Two inputs of the same name, run at once into one new folder: one run writes its complete
    output, the other is refused, and neither replaces the other's file."""
    inputs = [write_image(pet_volume(seed), GEOMETRY, tmp_path / f"in{seed}" / "pet.nii.gz") for seed in (1, 2)]
    output_dir = tmp_path / "S"
    command = [*pet_pvc_command(), "sharpen"]
    runs = [subprocess.Popen([*command, str(path), "-o", str(output_dir), "--native-grid"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for path in inputs]
    results = [(run.wait(timeout=300), run.stderr.read().decode()) for run in runs]
    assert sorted(code for code, _ in results) == [0, 2], results
    winner = [code for code, _ in results].index(0)
    assert_one_line(results[1 - winner][1], "pet_sharpen.nii.gz exists")
    assert [p.name for p in output_dir.iterdir()] == ["pet_sharpen.nii.gz"]
    written, _ = read_image(output_dir / "pet_sharpen.nii.gz")
    np.testing.assert_array_equal(written, sharpen(pet_volume(winner + 1), GEOMETRY.spacing))


# --- interrupts -------------------------------------------------------------------------------

def _handlers_installed(pid: int) -> bool:
    """True once the process catches SIGTERM (``cli.main`` installs its handlers first thing)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _staging_exists(folder: Path) -> bool:
    return folder.is_dir() and any(p.name.startswith(TEMPORARY_PREFIX) for p in folder.iterdir())


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("moment", ["starting", "staging"])
def test_interrupt_stops_cleanly(tmp_path, pet_path, signal_number, moment):
    """SIGINT and SIGTERM alike, early (imports, parsing) or with outputs being staged: exit 128 + the
    signal, one line, no staging left, the folder the run made removed unless another file is in it."""
    output_dir = tmp_path / "S"
    before = snapshot(pet_path.parent)
    run = subprocess.Popen([*pet_pvc_command(), "sharpen", str(pet_path), "-o", str(output_dir)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(lambda: _handlers_installed(run.pid))
    if moment == "staging":
        _wait_for(lambda: _staging_exists(output_dir))
        (output_dir / "note.txt").write_text("written meanwhile by someone else")
    run.send_signal(signal_number)
    code, err = run.wait(timeout=120), run.stderr.read()
    assert code == 128 + signal_number
    assert_one_line(err, rf"^pet-pvc( sharpen)?: interrupted \({signal.Signals(signal_number).name}\)$")
    assert snapshot(pet_path.parent) == before
    if moment == "staging":
        assert [p.name for p in output_dir.iterdir()] == ["note.txt"]
    else:
        assert not output_dir.exists()


def test_sigterm_during_inference_leaves_nothing(tmp_path, pet_path):
    """What Slicer's Cancel sends, while the network runs (the shipped model, about 10-60 s)."""
    output_dir = tmp_path / "S"
    run = subprocess.Popen([*pet_pvc_command(), "correct", str(pet_path), "-o", str(output_dir),
                            "--progress", "lines", "--device", "cpu"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in run.stdout:
        if line.startswith("PETPVC-PROGRESS") and float(line.split()[1]) >= 0.05:  # inference has begun
            break
    run.send_signal(signal.SIGTERM)
    code, err = run.wait(timeout=120), run.stderr.read()
    assert code == 143
    assert err.strip().splitlines()[-1] == "pet-pvc correct: interrupted (SIGTERM)"
    assert "Traceback" not in err
    assert not output_dir.exists()


# --- cheap checks first -----------------------------------------------------------------------

@pytest.fixture
def model_must_not_load(monkeypatch):
    from PETPartialVolumeCorrectionLib import pipeline

    monkeypatch.setattr(pipeline, "_resolve_model",
                        lambda *args: pytest.fail("the model was loaded before the input was refused"))


def test_wide_field_of_view_is_refused_before_the_model_loads(tmp_path, capsys, model_must_not_load):
    volume = np.linspace(1.0, 2.0, 60 * 150 * 150, dtype=np.float32).reshape(60, 150, 150)  # 300 mm wide
    path = write_image(volume, GEOMETRY, tmp_path / "wide.nii.gz")
    code, err = run_in_process(capsys, "correct", path, "-o", tmp_path / "out", "--progress", "none")
    assert code == 2
    assert_one_line(err, "field of view is larger than the 256 mm standard grid")
    assert not (tmp_path / "out").exists()


def test_near_empty_image_is_refused_before_the_model_loads_and_clears_the_bar(
        tmp_path, capsys, model_must_not_load):
    volume = np.zeros(SHAPE, np.float32)
    volume[30, 30, 30] = 1.0
    path = write_image(volume, GEOMETRY, tmp_path / "empty.nii.gz")
    code, err = run_in_process(capsys, "correct", path, "-o", tmp_path / "out", "--progress", "bar")
    assert code == 2
    assert "\r" in err  # the bar was drawn, then cleared: the error line is not glued to it
    assert_one_line(err, "^pet-pvc correct: error: the 99th percentile equals the minimum")
    assert not (tmp_path / "out").exists()


def test_example_checks_its_outputs_before_simulating(tmp_path, capsys, monkeypatch):
    from PETPartialVolumeCorrectionLib import simulation

    monkeypatch.setattr(simulation, "simulate_subject", lambda *a: pytest.fail("simulated before refusing"))
    (tmp_path / "example_pet_pvc.nii.gz").write_text("an earlier run")
    code, err = run_in_process(capsys, "example", "-o", tmp_path)
    assert code == 2
    assert_one_line(err, "example_pet_pvc.nii.gz exists; use --force")


def test_evaluate_refuses_zero_subjects(tmp_path, capsys):
    code, err = run_in_process(capsys, "evaluate", "-o", tmp_path / "ev", "--n", "0")
    assert code == 2
    assert_one_line(err, "--n must be at least 1")
    assert not (tmp_path / "ev").exists()


def test_atomic_writer_keeps_the_umask_and_leaves_no_temporary_file(tmp_path):
    from PETPartialVolumeCorrectionLib.io import atomic_file, write_text_atomic

    old_umask = os.umask(0o027)
    try:
        path = write_text_atomic(tmp_path / "state.json", "{}\n")
    finally:
        os.umask(old_umask)
    assert path.stat().st_mode & 0o777 == 0o640
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "state.json", force=True) as temporary:
            temporary.write_text("half")
            raise RuntimeError("the writer fails")
    assert snapshot(tmp_path) == {"state.json": hashlib.sha256(b"{}\n").hexdigest()}


def test_model_that_does_not_fit_its_card_is_one_line(tmp_path, capsys, pet_path):
    """Keras warns once per layer before it raises: none of that reaches the user."""
    from PETPartialVolumeCorrectionLib.model import MODEL_CARD_NAME, ModelConfig, build_model, save_model

    config = ModelConfig(depth=1, base_filters=4, max_filters=8, norm_groups=2)
    folder = save_model(build_model(config), tmp_path / "model", {"name": "tiny", "architecture": config.to_dict()})
    card = json.loads((folder / MODEL_CARD_NAME).read_text())
    card["architecture"]["base_filters"] = 8
    (folder / MODEL_CARD_NAME).write_text(json.dumps(card))
    capsys.readouterr()
    with warnings.catch_warnings():  # print warnings on stderr as a terminal would (pytest collects them)
        warnings.simplefilter("default")
        warnings.simplefilter("ignore", DeprecationWarning)  # hidden outside __main__ by Python's defaults
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(message, category, filename, lineno, line))
        code, err = run_in_process(capsys, "correct", pet_path, "-o", tmp_path / "out", "--model", folder,
                                   "--progress", "none", "--device", "cpu")
    assert code == 2
    assert_one_line(err, "do not fit the architecture in the card")
    assert not (tmp_path / "out").exists()
