"""`pet-pvc example`, the README's main job, end to end (with a tiny untrained model for speed)."""

import numpy as np

from PETPartialVolumeCorrectionLib.cli import main
from PETPartialVolumeCorrectionLib.grid import resample_to_standard_grid
from PETPartialVolumeCorrectionLib.io import read_image
from PETPartialVolumeCorrectionLib.model import ModelConfig, build_model, save_model


def test_example_writes_the_simulated_pet_its_truth_and_the_corrections(tmp_path, capsys):
    config = ModelConfig(depth=1, base_filters=4, max_filters=8, norm_groups=2)
    save_model(build_model(config), tmp_path / "model", {"name": "identity", "architecture": config.to_dict()})
    out = tmp_path / "example"
    assert main(["example", "-o", str(out), "--model", str(tmp_path / "model"), "--progress", "none"]) == 0
    printed = capsys.readouterr().out
    rows = {line.split("  ")[0]: line.split()[-5:] for line in printed.splitlines()
            if line.startswith(("Input", "Sharpen filter", "3D-ResUNet"))}
    assert set(rows) == {"Input", "Sharpen filter", "3D-ResUNet"}
    # The untrained network is the identity: it scores exactly as the input.
    assert rows["3D-ResUNet"] == rows["Input"]
    # The study's ordering for the baseline: sharpening is worse than the input against the MG target.
    assert float(rows["Sharpen filter"][0]) < float(rows["Input"][0])
    # The example PET is on its scanner grid, as a user's; correct's standard grid for it is the truth's.
    pet, geometry = read_image(out / "example_pet.nii.gz")
    truth, truth_geometry = read_image(out / "example_truth.nii.gz")
    corrected, corrected_geometry = read_image(out / "example_pet_pvc.nii.gz")
    assert pet.shape != (256, 256, 256) and truth.shape == corrected.shape == (256, 256, 256)
    standard, standard_geometry = resample_to_standard_grid(pet, geometry, crop_fov=True)
    assert standard_geometry.matches(truth_geometry) and standard_geometry.matches(corrected_geometry)
    np.testing.assert_allclose(corrected, standard, rtol=1e-4, atol=1e-3 * float(standard.max()))
    # A second run refuses to overwrite the first one unless forced.
    assert main(["example", "-o", str(out), "--model", str(tmp_path / "model"), "--progress", "none"]) == 2
