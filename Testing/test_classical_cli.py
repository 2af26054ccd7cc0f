"""``pet-pvc classical`` end to end on small NIfTI files written here."""

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from PETPartialVolumeCorrectionLib import cli
from PETPartialVolumeCorrectionLib.classical import psf
from PETPartialVolumeCorrectionLib.classical.command import correct_classical, output_names
from PETPartialVolumeCorrectionLib.classical.segmentation import read_color_table
from PETPartialVolumeCorrectionLib.geometry import Geometry
from PETPartialVolumeCorrectionLib.io import read_image, write_image
from PETPartialVolumeCorrectionLib.progress import ProcessingCancelled

SPACING = (2.0, 2.0, 2.0)
FWHM = 6.0
VALUES = {0: 0.2, 1: 4.0, 2: 1.0, 3: 6.0, 4: 0.5}
GEOMETRY = Geometry(SPACING, (-30.0, -20.0, 10.0))


def phantom_labels(n: int = 32) -> np.ndarray:
    z, y, x = np.mgrid[:n, :n, :n].astype(float) - n / 2 + 0.5
    radius = np.sqrt(x ** 2 + y ** 2 + (1.2 * z) ** 2)
    labels = np.zeros((n, n, n), np.int32)
    labels[radius < 13] = 1                                      # cortex-like shell
    labels[radius < 11] = 2                                      # white matter
    labels[np.sqrt((x - 3) ** 2 + y ** 2 + z ** 2) < 3.5] = 3    # nucleus
    labels[(np.abs(y) < 1) & (radius < 8)] = 4                   # thin plane
    return labels


def truth_of(labels) -> np.ndarray:
    table = np.array([VALUES[i] for i in range(5)], np.float32)
    return table[labels]


@pytest.fixture
def files(tmp_path):
    labels = phantom_labels()
    truth = truth_of(labels)
    paths = {"pet": tmp_path / "pet.nii.gz", "labels": tmp_path / "seg.nii.gz", "gm": tmp_path / "gm.nii.gz",
             "wm": tmp_path / "wm.nii.gz", "csf": tmp_path / "csf.nii.gz", "names": tmp_path / "names.txt"}
    write_image(psf.gaussian_blur(truth, FWHM, SPACING), GEOMETRY, paths["pet"])
    write_image(labels.astype(np.float32), GEOMETRY, paths["labels"])
    write_image((labels == 1).astype(np.float32), GEOMETRY, paths["gm"])
    write_image(((labels == 2) | (labels == 3)).astype(np.float32), GEOMETRY, paths["wm"])
    write_image((labels == 4).astype(np.float32), GEOMETRY, paths["csf"])
    paths["names"].write_text("# FreeSurfer-style table\n0 Unknown 0 0 0 0\n1 Cortex 1 2 3 0\n2 White-Matter 4 5 6 0\n")
    return paths, labels, truth


def run(*arguments) -> int:
    return cli.main(["classical", *map(str, arguments), "--progress", "none"])


def test_gtm_rbv_and_vc_end_to_end(files, tmp_path, capsys):
    paths, labels, truth = files
    out = tmp_path / "out"
    code = run(paths["pet"], "-o", out, "--method", "gtm,rbv,vc", "--psf", FWHM, FWHM, FWHM,
               "--labels", paths["labels"], "--label-names", paths["names"])
    assert code == 0
    assert "uncovered" in capsys.readouterr().err  # the added background is reported
    with open(out / "pet_gtm.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["label"]) for r in rows] == [1, 2, 3, 4, 0]
    assert [r["name"] for r in rows[:3]] == ["Cortex", "White-Matter", ""]
    for row in rows:
        assert float(row["corrected_value"]) == pytest.approx(VALUES[int(row["label"])], rel=1e-4)
        assert int(row["voxels"]) == np.count_nonzero(labels == int(row["label"]))
    table = json.loads((out / "pet_gtm.json").read_text())
    assert table["regions"][0]["corrected_value"] == pytest.approx(4.0, rel=1e-4)
    regional_image, _ = read_image(out / "pet_gtm.nii.gz")  # each region filled with its corrected value
    assert np.max(np.abs(regional_image - truth)) < 1e-4 * truth.max()
    rbv_image, rbv_geometry = read_image(out / "pet_rbv.nii.gz")
    assert rbv_geometry.matches(GEOMETRY)
    assert np.max(np.abs(rbv_image - truth)) < 1e-4 * truth.max()
    assert (out / "pet_vc.nii.gz").exists()
    settings = json.loads((out / "pet_classical.json").read_text())
    assert settings["kernel"] == "gaussian"
    assert settings["psf_fwhm_mm"] == {"x": FWHM, "y": FWHM, "z": FWHM}
    assert settings["condition_numbers"]["gtm"] > 1.0
    assert settings["regions"]["added_background_id"] == 0
    assert set(settings["timings_s"]) >= {"gtm", "rbv", "vc", "blur_regions"}
    assert any("uncovered" in message for message in settings["warnings"])


def test_mueller_gaertner_end_to_end(files, tmp_path):
    paths, labels, _ = files
    tissue_truth = np.select([labels == 1, (labels == 2) | (labels == 3), labels == 4], [4.0, 1.0, 0.5], 0.0)
    mg_pet = tmp_path / "mg_pet.nii.gz"
    write_image(psf.gaussian_blur(tissue_truth.astype(np.float32), FWHM, SPACING), GEOMETRY, mg_pet)
    out = tmp_path / "out"
    assert run(mg_pet, "-o", out, "--method", "mg", "--psf", FWHM, FWHM, FWHM, "--gm", paths["gm"],
               "--wm", paths["wm"], "--csf", paths["csf"], "--wm-value", "gtm", "--csf-value", "gtm") == 0
    corrected, _ = read_image(out / "mg_pet_mg.nii.gz")
    observed, _ = read_image(mg_pet)
    assert np.allclose(corrected[labels == 1], 4.0, rtol=1e-4)
    assert np.array_equal(corrected[labels != 1], observed[labels != 1])
    settings = json.loads((out / "mg_pet_classical.json").read_text())
    assert settings["mg"]["wm_value"] == pytest.approx(1.0, rel=1e-4)
    assert settings["mg"]["csf_value"] == pytest.approx(0.5, rel=1e-4)


def test_mueller_gaertner_from_a_tissue_label_image(files, tmp_path):
    paths, labels, _ = files
    tissue_labels = np.select([labels == 1, (labels == 2) | (labels == 3), labels == 4], [5, 7, 9], 0)
    tissue_truth = np.select([tissue_labels == 5, tissue_labels == 7, tissue_labels == 9], [4.0, 1.0, 0.5], 0.0)
    mg_pet, tissue_path = tmp_path / "mg_pet.nii.gz", tmp_path / "tissues.nii.gz"
    write_image(psf.gaussian_blur(tissue_truth.astype(np.float32), FWHM, SPACING), GEOMETRY, mg_pet)
    write_image(tissue_labels.astype(np.float32), GEOMETRY, tissue_path)
    names = output_names(mg_pet, "mg")
    assert names == {"corrected": "mg_pet_mg.nii.gz", "settings": "mg_pet_classical.json"}
    out = tmp_path / "out"
    assert run(mg_pet, "-o", out, "--method", "mg", "--psf", FWHM, FWHM, FWHM, "--labels", tissue_path,
               "--tissue-labels", "5,7,9", "--wm-value", "gtm", "--csf-value", "gtm") == 0
    corrected, _ = read_image(out / names["corrected"])
    assert np.allclose(corrected[tissue_labels == 5], 4.0, rtol=1e-4)
    assert "regions" not in json.loads((out / names["settings"]).read_text())  # no region method, no region blurs
    assert run(mg_pet, "-o", tmp_path / "other", "--method", "mg", "--psf", FWHM, FWHM, FWHM,
               "--labels", tissue_path) == 2  # default tissue labels 1,2,3 are absent


def test_itk_kernel_is_recorded_and_used(files, tmp_path):
    paths, labels, truth = files
    itk_pet = tmp_path / "itk_pet.nii.gz"
    write_image(psf.gaussian_blur(truth, FWHM, SPACING, kernel="itk"), GEOMETRY, itk_pet)
    out = tmp_path / "out"
    assert run(itk_pet, "-o", out, "--method", "labbe", "--psf", FWHM, FWHM, FWHM, "--labels", paths["labels"],
               "--kernel", "itk") == 0
    table = json.loads((out / "itk_pet_labbe.json").read_text())
    assert table["kernel"] == "itk"
    for row in table["regions"]:
        assert row["corrected_value"] == pytest.approx(VALUES[row["label"]], rel=1e-4)


def test_four_d_probability_mask(files, tmp_path):
    paths, labels, _ = files
    frames = [sitk.GetImageFromArray((labels == i).astype(np.float32)) for i in range(5)]
    stack = sitk.JoinSeries(frames)
    stack.SetSpacing(SPACING + (1.0,))
    stack.SetOrigin(GEOMETRY.origin + (0.0,))
    mask_path = tmp_path / "mask4d.nii.gz"
    sitk.WriteImage(stack, str(mask_path))
    out = tmp_path / "out"
    assert run(paths["pet"], "-o", out, "--method", "gtm", "--psf", FWHM, FWHM, FWHM,
               "--probabilities", mask_path, "--region-ids", "10,11,12,13,14") == 0
    rows = json.loads((out / "pet_gtm.json").read_text())["regions"]
    assert [r["label"] for r in rows] == [10, 11, 12, 13, 14]  # the frames cover the image: no background
    for row in rows:
        assert row["corrected_value"] == pytest.approx(VALUES[row["label"] - 10], rel=1e-4)


def test_mismatched_grid_is_refused_or_resampled(files, tmp_path, capsys):
    paths, labels, _ = files
    fine = np.repeat(np.repeat(np.repeat(labels, 2, axis=0), 2, axis=1), 2, axis=2)
    fine_geometry = Geometry((1.0, 1.0, 1.0), tuple(np.asarray(GEOMETRY.origin) - 0.5))
    fine_path = tmp_path / "seg_1mm.nii.gz"
    write_image(fine.astype(np.float32), fine_geometry, fine_path)
    out = tmp_path / "out"
    arguments = [paths["pet"], "-o", out, "--method", "gtm", "--psf", FWHM, FWHM, FWHM, "--labels", fine_path]
    assert run(*arguments) == 2
    assert "--resample-labels" in capsys.readouterr().err
    assert not out.exists()
    assert run(*arguments, "--resample-labels") == 0
    for row in json.loads((out / "pet_gtm.json").read_text())["regions"]:
        assert row["corrected_value"] == pytest.approx(VALUES[row["label"]], rel=1e-4)


def test_region_outside_the_field_of_view_is_refused(files, tmp_path, capsys):
    paths, labels, _ = files
    wider = np.zeros((32, 32, 48), np.int32)
    wider[:, :, :32] = labels
    wider[10:14, 10:14, 40:44] = 7  # beyond the PET's last x voxel
    wide_path = tmp_path / "seg_wide.nii.gz"
    write_image(wider.astype(np.float32), GEOMETRY, wide_path)
    assert run(paths["pet"], "-o", tmp_path / "out", "--method", "gtm", "--psf", FWHM, FWHM, FWHM,
               "--labels", wide_path, "--resample-labels") == 2
    assert "[7] lie outside the PET field of view" in capsys.readouterr().err


def test_existing_outputs_need_force(files, tmp_path, capsys):
    paths, _, _ = files
    out = tmp_path / "out"
    arguments = [paths["pet"], "-o", out, "--method", "rl", "--psf", FWHM, FWHM, FWHM]
    assert run(*arguments) == 0
    assert run(*arguments) == 2
    assert "--force" in capsys.readouterr().err
    assert run(*arguments, "--force") == 0


@pytest.mark.parametrize("arguments, message", [
    (["--method", "pvc"], "unknown method"),
    (["--method", "rbv"], "need regions"),
    (["--method", "mg"], "needs GM and WM maps"),
    (["--method", "mg", "--labels", "{pet}", "--gm", "{pet}"], "--gm and --wm"),
    (["--method", "mg", "--labels", "{pet}", "--tissue-labels", "1"], "--tissue-labels"),
    (["--method", "gtm", "--labels", "{pet}", "--region-ids", "1,x"], "comma-separated"),
    (["--method", "mg", "--gm", "{pet}", "--wm", "{pet}", "--wm-value", "median"], "eroded, gtm"),
    (["--method", "gtm", "--labels", "{pet}"], "non-integer"),
    (["--method", "vc", "--psf", "50", "50", "50"], "above 20 mm"),
    (["--method", "gtm", "--gm", "{pet}", "--wm", "{pet}", "--label-names", "freesurfer"], "--label-names freesurfer"),
])
def test_bad_command_lines_exit_2(files, tmp_path, capsys, arguments, message):
    paths, _, _ = files
    arguments = [a.format(pet=paths["pet"]) for a in arguments]
    assert run(paths["pet"], "-o", tmp_path / "out", "--psf", FWHM, FWHM, FWHM, *arguments) == 2
    assert message in capsys.readouterr().err


def test_region_names_from_csv_and_lut(tmp_path):
    table = tmp_path / "names.csv"
    table.write_text('label,name\n1,"Left, cortex"\n17,Left-Hippocampus\n')
    assert read_color_table(table).names == {1: "Left, cortex", 17: "Left-Hippocampus"}
    lut = tmp_path / "lut.txt"
    lut.write_text("17  Left-Hippocampus   220 216 20 0\n\n# comment\n53\tRight-Hippocampus\t1 2 3 0\n")
    assert read_color_table(lut).names == {17: "Left-Hippocampus", 53: "Right-Hippocampus"}


def test_in_process_run_returns_the_image_and_its_record(files):
    paths, labels, truth = files
    pet, geometry = read_image(paths["pet"])
    fractions = []
    image, record = correct_classical(pet, geometry, "gtm", labels=labels, fwhm_mm=(FWHM,) * 3,
                                      progress=lambda fraction, message: fractions.append(fraction))
    assert np.max(np.abs(image - truth)) < 1e-4 * truth.max()
    assert record["regional_table"]["regions"][0]["corrected_value"] == pytest.approx(4.0, rel=1e-4)
    assert any("uncovered" in message for message in record["warnings"])
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    with pytest.raises(ProcessingCancelled):
        correct_classical(pet, geometry, "iy", labels=labels, fwhm_mm=(FWHM,) * 3, cancel=lambda: True)
