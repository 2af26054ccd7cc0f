"""Real segmentations as the classical engine's inputs, on phantoms whose answer is known exactly.

A gtmseg-like label image (FreeSurfer label numbers: Desikan cortex parcels, cerebral WM, thalamus,
lateral ventricles, the extra-cerebral head) with its tissue-type colour table drives every method
in one call; SPM-like GM/WM/CSF maps drive GTM, RBV and MG; a 1-voxel region in noise is flagged and
can be merged. 32^3 voxels of 2 mm, 6 mm PSF, noiseless unless said: GTM/RBV/MG must be exact.
"""

import csv
import json
import warnings

import numpy as np
import pytest

from PETPartialVolumeCorrectionLib import cli, classical
from PETPartialVolumeCorrectionLib.classical import psf, regional, segmentation
from PETPartialVolumeCorrectionLib.classical.regions import SMALL_REGION_POOL_NAME, RegionSet
from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.geometry import Geometry
from PETPartialVolumeCorrectionLib.io import read_image, write_image

SPACING = (2.0, 2.0, 2.0)
FWHM = 6.0
GEOMETRY = Geometry(SPACING, (-32.0, -32.0, -32.0))
#: label: (FreeSurferColorLUT name, gtmseg tissue type, activity). GM 4, WM 1, CSF 0.5, head 0.
GTMSEG = {1001: ("ctx-lh-bankssts", 1, 4.0), 1002: ("ctx-lh-caudalanteriorcingulate", 1, 4.0),
          2001: ("ctx-rh-bankssts", 1, 4.0), 10: ("Left-Thalamus", 2, 4.0), 2: ("Left-Cerebral-White-Matter", 3, 1.0),
          41: ("Right-Cerebral-White-Matter", 3, 1.0), 4: ("Left-Lateral-Ventricle", 4, 0.5),
          43: ("Right-Lateral-Ventricle", 4, 0.5), 258: ("Head-ExtraCerebral", 5, 0.0)}
EVERY_METHOD = "gtm,labbe,rbv,iy,mtc,mg,rbv+vc,iy+rl,vc,rl"

pytestmark = pytest.mark.filterwarnings("ignore:the regions leave")


def gtmseg_labels(n: int = 32) -> np.ndarray:
    z, y, x = np.mgrid[:n, :n, :n].astype(float) - n / 2 + 0.5
    radius = np.sqrt(x ** 2 + (1.1 * y) ** 2 + (1.2 * z) ** 2)
    labels = np.zeros((n, n, n), np.int32)
    labels[radius < 15] = 258
    labels[radius < 13] = np.where(x < 0, np.where(y < 0, 1001, 1002), 2001)[radius < 13]
    labels[radius < 10.5] = np.where(x < 0, 2, 41)[radius < 10.5]
    labels[np.sqrt((x + 4) ** 2 + y ** 2 + z ** 2) < 2.5] = 10
    ventricle = (np.abs(x) - 3) ** 2 / 2 ** 2 + y ** 2 / 5 ** 2 + (z - 3) ** 2 / 2 ** 2 < 1
    labels[ventricle] = np.where(x < 0, 4, 43)[ventricle]
    return labels


def truth_of(labels) -> np.ndarray:
    table = np.zeros(labels.max() + 1, np.float32)
    for label, (_, _, value) in GTMSEG.items():
        table[label] = value
    return table[labels]


def write_ctab(path) -> None:
    """A gtmseg.ctab: the tissue-type schema as #ctTType lines, then number name R G B A tissue-type."""
    header = ["# TissueTypeSchema default-apr-2019+head"] + [
        f"#ctTType {n} {name} 0 0 0 0" for n, name in enumerate(segmentation.FREESURFER_TISSUE_TYPES)]
    rows = ["0  Unknown  0 0 0 0  0"] + [f"{label}  {name}  10 20 30 0  {tissue}"
                                         for label, (name, tissue, _) in GTMSEG.items()]
    path.write_text("\n".join(header + rows) + "\n")


@pytest.fixture
def gtmseg_files(tmp_path):
    labels = gtmseg_labels()
    truth = truth_of(labels)
    paths = {"pet": tmp_path / "pet.nii.gz", "labels": tmp_path / "gtmseg.nii.gz", "ctab": tmp_path / "gtmseg.ctab"}
    write_image(psf.gaussian_blur(truth, FWHM, SPACING), GEOMETRY, paths["pet"])
    write_image(labels.astype(np.float32), GEOMETRY, paths["labels"])
    write_ctab(paths["ctab"])
    return paths, labels, truth


def run(*arguments) -> int:
    return cli.main(["classical", *map(str, arguments), "--progress", "none"])


def gm_mask(labels) -> np.ndarray:
    return np.isin(labels, [1001, 1002, 2001, 10])


def test_gtmseg_with_its_tissue_table_drives_every_method_in_one_call(gtmseg_files, tmp_path):
    paths, labels, truth = gtmseg_files
    out = tmp_path / "out"
    assert run(paths["pet"], "-o", out, "--method", EVERY_METHOD, "--psf", FWHM, FWHM, FWHM, "--labels",
               paths["labels"], "--label-names", paths["ctab"], "--wm-value", "gtm", "--csf-value", "gtm") == 0
    with open(out / "pet_gtm.csv") as handle:
        rows = {int(row["label"]): row for row in csv.DictReader(handle)}
    assert set(rows) == set(GTMSEG) | {0}
    for label, (name, _, value) in GTMSEG.items():
        assert rows[label]["name"] == name
        assert float(rows[label]["corrected_value"]) == pytest.approx(value, abs=1e-4 * 4.0)
    for method in ("rbv", "mtc"):
        image, _ = read_image(out / f"pet_{method}.nii.gz")
        assert np.max(np.abs(image - truth)[labels > 0]) < 1e-4 * 4.0
    mg, _ = read_image(out / "pet_mg.nii.gz")
    assert np.max(np.abs(mg[gm_mask(labels)] - 4.0)) < 1e-4 * 4.0
    settings = json.loads((out / "pet_classical.json").read_text())
    assert settings["mg"]["tissues"] == {"source": "colour table tissue column",
                                         "labels": {"gm": [10, 1001, 1002, 2001], "wm": [2, 41], "csf": [4, 43]}}
    assert settings["mg"]["wm_value"] == pytest.approx(1.0, rel=1e-4)
    assert set(settings["convergence"]) == {"iy", "rbv+vc", "iy+rl", "vc", "rl"}
    assert set(settings["convergence"]["iy+rl"]) == {"iy", "rl"}
    assert settings["convergence"]["vc"]["vc"]["stopped_by"] in ("tolerance", "iterations")


def test_freesurfer_label_numbers_drive_mg_without_a_table(gtmseg_files, tmp_path, capsys):
    paths, labels, _ = gtmseg_files
    lut = tmp_path / "FreeSurferColorLUT.txt"  # names only, no tissue column (as with aparc+aseg)
    lut.write_text("".join(f"{label} {name} 1 2 3 0\n" for label, (name, _, _) in GTMSEG.items()))
    for extra, source in ((["--label-names", "freesurfer"], "colour table tissue column"),
                          (["--label-names", lut], "region names"), ([], "FreeSurfer label numbers")):
        out = tmp_path / source.replace(" ", "_")
        assert run(paths["pet"], "-o", out, "--method", "gtm,mg", "--psf", FWHM, FWHM, FWHM, "--labels",
                   paths["labels"], "--wm-value", "gtm", "--csf-value", "gtm", *extra) == 0
        settings = json.loads((out / "pet_classical.json").read_text())
        assert settings["mg"]["tissues"]["source"] == source
        assert settings["mg"]["tissues"]["labels"]["gm"] == [10, 1001, 1002, 2001]
        mg, _ = read_image(out / "pet_mg.nii.gz")
        assert np.max(np.abs(mg[gm_mask(labels)] - 4.0)) < 1e-4 * 4.0
    assert "tissue classes taken from FreeSurfer's label numbers" in capsys.readouterr().err
    with open(tmp_path / "colour_table_tissue_column" / "pet_gtm.csv") as handle:
        names = {int(row["label"]): row["name"] for row in csv.DictReader(handle)}
    assert names[1002] == "ctx-lh-caudalanteriorcingulate" and names[258] == "Head-ExtraCerebral"


def test_spm_tissue_maps_drive_region_methods_and_mg(tmp_path):
    labels = gtmseg_labels()
    classes = {"gm": gm_mask(labels), "wm": np.isin(labels, [2, 41]), "csf": np.isin(labels, [4, 43])}
    truth = (4.0 * classes["gm"] + 1.0 * classes["wm"] + 0.5 * classes["csf"]).astype(np.float32)
    paths = {name: tmp_path / f"{code}pet.nii" for name, code in (("gm", "c1"), ("wm", "c2"), ("csf", "c3"))}
    for name, path in paths.items():
        write_image(classes[name].astype(np.float32), GEOMETRY, path)
    write_image(psf.gaussian_blur(truth, FWHM, SPACING), GEOMETRY, tmp_path / "pet.nii.gz")
    out = tmp_path / "out"
    assert run(tmp_path / "pet.nii.gz", "-o", out, "--method", "gtm,rbv,mg", "--psf", FWHM, FWHM, FWHM,
               "--gm", paths["gm"], "--wm", paths["wm"], "--csf", paths["csf"], "--wm-value", "gtm",
               "--csf-value", "gtm") == 0
    with open(out / "pet_gtm.csv") as handle:
        values = {row["name"]: float(row["corrected_value"]) for row in csv.DictReader(handle)}
    assert values == pytest.approx({"GM": 4.0, "WM": 1.0, "CSF": 0.5, "background (added)": 0.0}, abs=4e-4)
    rbv, _ = read_image(out / "pet_rbv.nii.gz")
    brain = classes["gm"] | classes["wm"] | classes["csf"]
    assert np.max(np.abs(rbv - truth)[brain]) < 1e-4 * 4.0
    settings = json.loads((out / "pet_classical.json").read_text())
    assert settings["regions"]["source"] == "tissue maps (GM 1, WM 2, CSF 3)"


# --- small and unstable regions ------------------------------------------------------------------

def noisy_pet_with_a_vessel(labels):
    """The gtmseg phantom with a 1-voxel vessel (label 30) inside the left WM, 3 % noise."""
    labels = labels.copy()
    labels[16, 16, 10] = 30
    truth = truth_of(labels)
    truth[labels == 30] = 0.5
    pet = psf.gaussian_blur(truth, FWHM, SPACING)
    rng = np.random.default_rng(7)
    return labels, (pet * (1 + 0.03 * rng.standard_normal(pet.shape))).astype(np.float32)


def test_a_one_voxel_region_is_named_unstable_and_can_be_merged():
    labels, pet = noisy_pet_with_a_vessel(gtmseg_labels())
    assert labels[16, 16, 10] == 30 and labels[16, 16, 9] == 2
    with pytest.warns(UserWarning, match=r"GTM: 1 region\(s\) are unstable .*: 30 \(1 voxels, x\d+"):
        unmerged = classical.gtm(pet, labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING)
    assert unmerged.noise_amplification[list(unmerged.region_ids).index(30)] > regional.UNSTABLE_REGION_AMPLIFICATION
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shared = classical.blur_regions(labels=labels, fwhm_mm=FWHM, spacing_mm=SPACING, min_region_voxels=8)
        merged = classical.gtm(pet, blurred_regions=shared)
    messages = [str(w.message) for w in caught]
    assert any("merged 1 region(s) smaller than 8 voxels: 30 (1 voxels) -> 2" in m for m in messages)
    assert not any("unstable" in m for m in messages)
    assert 30 not in merged.region_ids
    row = next(r for r in merged.to_table() if r["label"] == 2)
    assert row["merged_labels"] == [30] and row["voxels"] == np.count_nonzero(np.isin(labels, [2, 30]))
    assert max(merged.noise_amplification) < regional.UNSTABLE_REGION_AMPLIFICATION


def test_small_regions_go_to_a_named_pool_or_to_the_uncovered_voxels():
    labels = np.zeros((12, 12, 12), np.int32)
    labels[2:10, 2:10, 2:10] = 1
    labels[5, 5, 5] = 7                  # inside region 1
    labels[0, 0, 0] = 8                  # touches only label 0
    with pytest.warns(UserWarning, match="merged 2 region"):
        regions = RegionSet.from_labels(labels, min_region_voxels=2)
    assert regions.region_ids.tolist() == [1, 0]
    assert regions.regions[0].merged_labels == (7,) and regions.regions[1].merged_labels == (8,)
    with pytest.warns(UserWarning, match="merged 2 region"):
        pooled = RegionSet.from_labels(labels, min_region_voxels=2, small_region_pool=99)
    assert pooled.region_ids.tolist() == [1, 99, 0]
    assert pooled.regions[1].name == SMALL_REGION_POOL_NAME and pooled.regions[1].voxel_count == 2
    with pytest.raises(PVCInputError, match="every region has fewer"):
        RegionSet.from_labels(labels, min_region_voxels=10_000)


def test_min_region_voxels_on_the_command_line(gtmseg_files, tmp_path, capsys):
    paths, labels, _ = gtmseg_files
    vessel_labels, pet = noisy_pet_with_a_vessel(labels)
    paths = {**paths, "labels": tmp_path / "vessel_gtmseg.nii.gz", "pet": tmp_path / "noisy.nii.gz"}
    write_image(vessel_labels.astype(np.float32), GEOMETRY, paths["labels"])
    write_image(pet, GEOMETRY, paths["pet"])
    assert run(paths["pet"], "-o", tmp_path / "flagged", "--method", "gtm", "--psf", FWHM, FWHM, FWHM,
               "--labels", paths["labels"]) == 0
    assert "are unstable" in capsys.readouterr().err
    out = tmp_path / "merged"
    assert run(paths["pet"], "-o", out, "--method", "gtm,rbv", "--psf", FWHM, FWHM, FWHM, "--labels", paths["labels"],
               "--label-names", paths["ctab"], "--min-region-voxels", "8") == 0
    with open(out / "noisy_gtm.csv") as handle:
        rows = {int(row["label"]): row for row in csv.DictReader(handle)}
    assert rows[2]["merged_labels"] == "30" and 30 not in rows
    assert json.loads((out / "noisy_classical.json").read_text())["regions"]["merged"] == {"30": 2}
    assert run(paths["pet"], "-o", tmp_path / "bad", "--method", "gtm", "--psf", FWHM, FWHM, FWHM,
               "--labels", paths["labels"], "--min-region-voxels", "-1") == 2


# --- tables and tissue types ------------------------------------------------------------------------

def test_freesurfer_tissue_types_follow_the_default_head_schema():
    expected = {3: "cortex", 1035: "cortex", 2001: "cortex", 11105: "cortex", 16: "subcort_gm", 174: "subcort_gm",
                8: "subcort_gm", 2: "wm", 5001: "wm", 3002: "wm", 251: "wm", 24: "csf", 30: "csf", 43: "csf",
                258: "head", 165: "head", 9: "unknown", 1036: "unknown"}
    assert {label: segmentation.freesurfer_tissue_type(label) for label in expected} == expected
    assert segmentation.freesurfer_name(2035) == "ctx-rh-insula" and segmentation.freesurfer_name(9) is None


def test_colour_tables_give_names_and_tissue_classes(tmp_path):
    ctab = tmp_path / "gtmseg.ctab"
    write_ctab(ctab)
    table = segmentation.read_color_table(ctab)
    assert table.names[1001] == "ctx-lh-bankssts" and table.tissue_classes[1001] == "gm"
    assert table.tissue_classes[10] == "gm" and table.tissue_classes[41] == "wm"
    assert table.tissue_classes[4] == "csf" and table.tissue_classes[258] is None
    lut = tmp_path / "FreeSurferColorLUT.txt"
    lut.write_text("0 Unknown 0 0 0 0\n17 Left-Hippocampus 220 216 20 0\n")
    assert not segmentation.read_color_table(lut).has_tissues
    spreadsheet = tmp_path / "tissues.csv"
    spreadsheet.write_text("label,name,tissue\n1,grey,gm\n2,white,wm\n3,fluid,csf\n")
    assert segmentation.read_color_table(spreadsheet).tissue_classes == {1: "gm", 2: "wm", 3: "csf"}
    lateralised = tmp_path / "lateralised.ctab"
    lateralised.write_text("#ctTType 1 cortex-lh 0 0 0 0\n#ctTType 5 subcort_gm-mid 0 0 0 0\n"
                           "1001 ctx-lh-bankssts 1 2 3 0 1\n16 Brain-Stem 1 2 3 0 5\n")
    assert segmentation.read_color_table(lateralised).tissue_classes == {1001: "gm", 16: "gm"}
    spreadsheet.write_text("label,name,tissue\n1,grey,bone\n")
    with pytest.raises(PVCInputError, match="unknown tissue type 'bone'"):
        segmentation.read_color_table(spreadsheet)


def test_segment_names_give_tissue_classes():
    names = {1: "Left-Cerebral-Cortex", 2: "left-cerebral-white-matter", 3: "CSF", 4: "ctx-rh-precuneus",
             5: "Gray Matter", 6: "WM", 7: "tumour"}
    assert segmentation.tissue_classes_from_names(names) == {1: "gm", 2: "wm", 3: "csf", 4: "gm", 5: "gm",
                                                             6: "wm", 7: None}


def test_a_segmentation_without_gm_is_refused_in_one_line():
    labels = np.zeros((8, 8, 8), np.int32)
    labels[2:6, 2:6, 2:6] = 2
    with pytest.raises(PVCInputError, match="no GM voxels"):
        segmentation.tissue_maps(labels, {2: "wm"})
