"""The whole `pet-pvc correct` path on real files, through the real model loader, and its bad inputs."""

import hashlib
import json

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import blob_volume
from PETPartialVolumeCorrectionLib import model as model_module
from PETPartialVolumeCorrectionLib.cli import main
from PETPartialVolumeCorrectionLib.geometry import Geometry
from PETPartialVolumeCorrectionLib.grid import resample_to_standard_grid
from PETPartialVolumeCorrectionLib.io import read_image, write_image
from PETPartialVolumeCorrectionLib.model import ModelConfig, build_model, save_model

PET_GEOMETRY = Geometry((2.0, 2.0, 2.5), (-127.0, -127.0, -100.0))
PET_SHAPE = (72, 120, 120)  # [z, y, x]: 240 x 240 x 180 mm


@pytest.fixture(scope="module")
def untrained_model_dir(tmp_path_factory):
    """A tiny ResUNet saved through the real model folder format. Untrained, its zero-initialised head
    makes it the identity, so the pipeline's own arithmetic can be checked exactly."""
    config = ModelConfig(depth=1, base_filters=4, max_filters=8, norm_groups=2)
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model(build_model(config), folder, {"name": "tiny-untrained-test-model",
                                             "architecture": config.to_dict()})
    return folder


@pytest.fixture(scope="module")
def pet_file(tmp_path_factory):
    volume = 3000.0 * blob_volume(PET_SHAPE, PET_GEOMETRY, (10.0, -5.0, 0.0), sigma_mm=40.0, background=0.02)
    path = tmp_path_factory.mktemp("input") / "pet.nii.gz"
    write_image(volume.astype(np.float32), PET_GEOMETRY, path)
    return path


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(*args):
    return main([str(a) for a in args])


def test_correct_writes_both_volumes_and_settings_on_the_standard_grid(tmp_path, pet_file, untrained_model_dir):
    before = sha256(pet_file)
    out = tmp_path / "out"
    assert run("correct", pet_file, "-o", out, "--model", untrained_model_dir, "--progress", "none") == 0
    assert sha256(pet_file) == before  # the input is never touched
    corrected, geometry = read_image(out / "pet_pvc.nii.gz")
    sharpened, sharpen_geometry = read_image(out / "pet_sharpen.nii.gz")
    assert corrected.shape == sharpened.shape == (256, 256, 256)
    assert geometry.spacing == (1.0, 1.0, 1.0) and geometry.matches(sharpen_geometry)
    np.testing.assert_allclose(geometry.world_center(corrected.shape),
                               PET_GEOMETRY.world_center(PET_SHAPE), atol=1e-3)
    # Identity network: normalise -> windows -> blend -> restore gives back the resampled input.
    source, _ = read_image(pet_file)
    standard, _ = resample_to_standard_grid(source, PET_GEOMETRY)
    np.testing.assert_allclose(corrected, standard, rtol=1e-4, atol=1e-3)
    record = json.loads((out / "pet_pvc.json").read_text())
    assert record["settings"]["output_grid"] == "standard" and record["settings"]["mode"] == "gaussian"
    assert record["timings"]["total_s"] > 0 and record["settings"]["model_name"] == "tiny-untrained-test-model"
    card = json.loads((untrained_model_dir / "model_card.json").read_text())
    assert record["settings"]["model_sha256"] == card["weights_sha256"]


def test_native_grid_output_overlays_the_input(tmp_path, pet_file, untrained_model_dir):
    out = tmp_path / "out"
    assert run("correct", pet_file, "-o", out, "--model", untrained_model_dir, "--native-grid",
               "--mode", "study", "--device", "cpu", "--progress", "none") == 0
    corrected, geometry = read_image(out / "pet_pvc.nii.gz")
    source, _ = read_image(pet_file)
    assert corrected.shape == PET_SHAPE and geometry.matches(PET_GEOMETRY)
    interior = (slice(2, -2),) * 3
    assert np.max(np.abs(corrected[interior] - source[interior])) < 0.01 * source.max()


def test_sharpen_and_compare_commands(tmp_path, pet_file, capsys):
    assert run("sharpen", pet_file, "-o", tmp_path) == 0
    sharpened = tmp_path / "pet_sharpen.nii.gz"
    assert read_image(sharpened)[0].shape == (256, 256, 256)
    assert run("compare", sharpened, sharpened, "--json", tmp_path / "scores.json") == 0
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["ssim"] == pytest.approx(1.0) and scores["rmse"] == 0.0
    assert run("compare", sharpened, pet_file) == 2
    assert "different grids" in capsys.readouterr().err


def assert_one_line_error(capsys, pattern):
    error = capsys.readouterr().err.strip()
    assert len(error.split("\n")) == 1, error  # a progress bar may precede it, cleared ("\r")
    assert pattern in error.split("\r")[-1], error


def write_sitk(image, path):
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("not_an_image", "not a readable image"),
    ("two_d", "2D"),
    ("four_d", "4D image with 2 frames"),
    ("nan", "NaN or infinite"),
    ("constant", "constant"),
    ("absurd_spacing", "not plausible"),
    ("wide_fov", "larger than the 256 mm standard grid"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, untrained_model_dir, case, message):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    volume = rng.random((10, 12, 14), dtype=np.float32)
    path = inputs / "pet.nii.gz"
    if case == "not_an_image":
        path.write_text("hello")
    elif case == "two_d":
        write_sitk(sitk.GetImageFromArray(volume[0]), path)
    elif case == "four_d":
        write_sitk(sitk.JoinSeries([sitk.GetImageFromArray(volume)] * 2), path)
    elif case == "nan":
        volume[2, 2, 2] = np.nan
        write_sitk(sitk.GetImageFromArray(volume), path)  # write_image never writes a NaN
    elif case == "constant":
        write_image(np.ones_like(volume), Geometry((2.0, 2.0, 2.0)), path)
    elif case == "absurd_spacing":
        write_image(volume, Geometry((2.0, 2.0, 0.0001)), path)
    elif case == "wide_fov":
        write_image(rng.random((20, 160, 160), dtype=np.float32), Geometry((2.0, 2.0, 2.0)), path)
    out = tmp_path / "out"
    assert run("correct", path, "-o", out, "--model", untrained_model_dir, "--progress", "none") == 2
    assert_one_line_error(capsys, message)
    assert not out.exists()


def test_missing_and_corrupt_models(tmp_path, capsys, pet_file, untrained_model_dir, monkeypatch):
    out = tmp_path / "out"
    assert run("correct", pet_file, "-o", out, "--model", tmp_path / "no_model") == 2
    assert_one_line_error(capsys, "does not exist")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for item in untrained_model_dir.iterdir():
        (corrupt / item.name).write_bytes(item.read_bytes())
    weights = corrupt / "model.weights.h5"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert run("correct", pet_file, "-o", out, "--model", corrupt) == 2
    assert_one_line_error(capsys, "do not match the checksum")
    # No --model and no shipped model: a clear message, not stand-in weights.
    monkeypatch.setattr(model_module, "shipped_model_locations", lambda name=None: (tmp_path / "none",))
    assert run("correct", pet_file, "-o", out) == 2
    assert_one_line_error(capsys, "no trained model is installed")
    assert not out.exists()


def test_existing_outputs_need_force(tmp_path, capsys, pet_file, untrained_model_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "pet_pvc.nii.gz").write_bytes(b"an earlier result")
    assert run("correct", pet_file, "-o", out, "--model", untrained_model_dir, "--progress", "none") == 2
    assert_one_line_error(capsys, "exists; use --force")
    assert (out / "pet_pvc.nii.gz").read_bytes() == b"an earlier result"
    assert sorted(p.name for p in out.iterdir()) == ["pet_pvc.nii.gz"]
    assert run("correct", pet_file, "-o", out, "--model", untrained_model_dir, "--force", "--progress", "none") == 0
    assert read_image(out / "pet_pvc.nii.gz")[0].shape == (256, 256, 256)


def test_output_folder_equal_to_input_folder_never_overwrites_the_input(tmp_path, pet_file, untrained_model_dir):
    local = tmp_path / "pet.nii.gz"
    local.write_bytes(pet_file.read_bytes())
    before = sha256(local)
    assert run("correct", local, "-o", tmp_path, "--model", untrained_model_dir, "--progress", "none") == 0
    assert sha256(local) == before
    assert (tmp_path / "pet_pvc.nii.gz").exists()



def test_inputs_outside_the_training_ranges_are_warned_about_and_still_corrected(tmp_path, pet_file, capsys,
                                                                                 untrained_model_dir):
    config = ModelConfig(depth=1, base_filters=4, max_filters=8, norm_groups=2)
    folder = tmp_path / "model"
    ranges = {"voxel_size_mm": [1.0, 1.5], "axial_fov_mm": [150.0, 200.0], "crop_level": [0.3, 0.9],
              "lowest_over_crop": [-0.01, 0.0], "brain_volume_ml": [1.0, 1e5]}
    save_model(build_model(config), folder, {"name": "tiny", "architecture": config.to_dict(),
                                             "training_ranges": ranges})
    out = tmp_path / "out"
    assert run("correct", pet_file, "-o", out, "--model", folder, "--progress", "none") == 0
    record = json.loads((out / "pet_pvc.json").read_text())
    assert record["warnings"] == ["largest voxel side (mm) 2.50 lies outside the training range 1.00 to 1.50"]
    assert f"warning: {record['warnings'][0]}" in capsys.readouterr().err
    assert record["settings"]["input_statistics"]["voxel_size_mm"] == 2.5
    assert (out / "pet_pvc.nii.gz").is_file()
    assert run("correct", pet_file, "-o", tmp_path / "out2", "--model", untrained_model_dir,
               "--progress", "none") == 0
    warnings = json.loads((tmp_path / "out2" / "pet_pvc.json").read_text())["warnings"]
    assert any("records no training ranges" in warning for warning in warnings)
