"""Amyloid quantification without MRI: Centiloid/SUVR arithmetic, the PET-only normalisation on a
templated PET moved by a known affine, the ``pet-pvc quantify`` command and the Slicer table and
chart nodes (slicer-core's real MRML nodes)."""

import csv
import importlib.util
import json
import os
import pickle
import time

import numpy as np
import pytest
import SimpleITK as sitk

import slicer
from conftest import rotation_matrix
from PETPartialVolumeCorrectionLib import cli
from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.geometry import Geometry
from PETPartialVolumeCorrectionLib.io import read_image, to_sitk_image, write_image
from PETPartialVolumeCorrectionLib.quantification import TRACER_EQUATIONS, centiloid_equation, quantify_volume
from PETPartialVolumeCorrectionLib.quantification import tables
from PETPartialVolumeCorrectionLib.quantification.readouts import regional_means, suvr_table
from PETPartialVolumeCorrectionLib.quantification.regions import GLOBAL_CORTEX, load_regions
from PETPartialVolumeCorrectionLib.quantification.template import MNI_2MM_GEOMETRY, load_template
from slicer_test_doubles import import_module_file

#: The subject's grid: 2 mm, 96 x 110 x 90 voxels (x, y, z), LPS-aligned, origin away from MNI's.
SUBJECT_GEOMETRY = Geometry((2.0, 2.0, 2.0), (-85.0, -120.0, -80.0))
SUBJECT_SHAPE = (90, 110, 96)


def known_affine() -> sitk.AffineTransform:
    """The true map from subject points to MNI points (LPS mm): 7 degrees about an oblique axis,
    0.92 scale, a 9 mm shift."""
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple((rotation_matrix((0.3, 1.0, 0.2), 7.0) / 0.92).ravel()))
    transform.SetTranslation((6.0, -9.0, 4.0))
    return transform


def templated_pet(positive_fraction: float, noise_seed: int = 0) -> np.ndarray:
    """The template mix resampled into the subject grid through :func:`known_affine`, with 3 % noise."""
    template = load_template()
    mni = (1 - positive_fraction) * template.negative + positive_fraction * template.positive
    reference = to_sitk_image(np.zeros(SUBJECT_SHAPE, np.float32), SUBJECT_GEOMETRY)
    moved = sitk.Resample(to_sitk_image(mni, MNI_2MM_GEOMETRY), reference, known_affine(), sitk.sitkLinear, 0.0)
    volume = sitk.GetArrayFromImage(moved) * 2500.0  # Bq/mL-like units
    rng = np.random.default_rng(noise_seed)
    return (volume * (1 + 0.03 * rng.standard_normal(volume.shape))).clip(0).astype(np.float32)


@pytest.fixture(scope="module")
def positive_pet():
    return templated_pet(0.8)


@pytest.fixture(scope="module")
def quantified(positive_pet):
    """The positive PET and a "correction" with the cortex raised by 10 %, quantified once."""
    return quantify_volume(positive_pet, SUBJECT_GEOMETRY, {"network": (positive_pet * 1.1, SUBJECT_GEOMETRY)},
                           tracer="florbetapir")


# --- arithmetic --------------------------------------------------------------------------------


@pytest.mark.parametrize("tracer, suvr, centiloid", [
    ("pib", 1.009, 0.0), ("pib", 1.009 + 1.067, 100.0), ("florbetapir", 1.5, 175.4 * 1.5 - 182.3),
    ("florbetaben", 1.2, 153.4 * 1.2 - 154.9), ("flutemetamol", 1.8, 121.4 * 1.8 - 121.2),
    ("nav4694", 2.0, 85.2 * 2.0 - 87.6)])
def test_published_centiloid_equations(tracer, suvr, centiloid):
    assert centiloid_equation(tracer)(suvr) == pytest.approx(centiloid, abs=1e-9)


def amypet_table(name):
    folder = os.path.join(os.path.dirname(importlib.util.find_spec("amypet").origin), "data", "cl_anchor_tables")
    with open(os.path.join(folder, name), "rb") as stream:
        return pickle.load(stream)


@pytest.mark.parametrize("tracer, table", [("pib", None), ("florbetapir", "suvr_fbp_to_suvr_pib__transform.pkl"),
                                           ("florbetaben", "suvr_fbb_to_suvr_pib__transform.pkl"),
                                           ("flutemetamol", "suvr_flute_to_suvr_pib__transform.pkl")])
def test_equations_agree_with_amypets_anchor_tables(tracer, table):
    """amypet's own calibration (PiB anchors, tracer -> PiB SUVR lines, whole cerebellum) lands within
    a few Centiloid of the published equations over the usual SUVR range."""
    young, ad = amypet_table("CL_PiB_anchors.pkl")["wc"]
    suvr = np.linspace(1.0, 2.2, 13)
    pib_suvr = suvr
    if table:
        line = amypet_table(table)["wc"]
        pib_suvr = (suvr - line["b_std"]) / line["m_std"]
    amypet_centiloid = 100 * (pib_suvr - young) / (ad - young)
    published = np.array([TRACER_EQUATIONS[tracer](s) for s in suvr])
    assert np.max(np.abs(published - amypet_centiloid)) < 5.0


def test_user_calibration_and_other_references():
    assert centiloid_equation("florbetapir", 100.0, -100.0)(1.25) == pytest.approx(25.0)
    assert centiloid_equation("florbetapir", reference="pons") is None  # published equations: whole cerebellum
    assert centiloid_equation(None, 50.0, -50.0, reference="pons")(2.0) == pytest.approx(50.0)
    with pytest.raises(PVCInputError, match="both"):
        centiloid_equation("pib", slope=90.0)
    with pytest.raises(PVCInputError, match="positive"):
        centiloid_equation(None, -1.0, 0.0)


def test_suvr_is_region_mean_over_reference_mean():
    image = np.ones((4, 4, 4), np.float32)
    image[0] = 3.0
    regions = {"target": np.zeros(image.shape, bool), "reference": np.zeros(image.shape, bool)}
    regions["target"][0, :2] = True
    regions["target"][1, :2] = True       # half at 3, half at 1
    regions["reference"][3] = True
    means = regional_means(image, regions)
    assert means["target"] == (16, pytest.approx(2.0))
    assert suvr_table(means, "reference") == {"target": pytest.approx(2.0), "reference": pytest.approx(1.0)}
    with pytest.raises(PVCInputError, match="reference region"):
        suvr_table(regional_means(image * 0, regions), "reference")


# --- normalisation -----------------------------------------------------------------------------


def test_registration_recovers_a_known_affine(quantified):
    template = load_template()
    result = quantified.normalisation
    truth_inverse = known_affine().GetInverse()
    indices = np.argwhere(template.brain_mask)[::50]
    world = (MNI_2MM_GEOMETRY.index_to_world() @ np.c_[indices[:, ::-1], np.ones(len(indices))].T).T[:, :3]
    errors = [np.linalg.norm(np.subtract(result.transform.TransformPoint(p), truth_inverse.TransformPoint(p)))
              for p in map(tuple, world)]
    assert np.mean(errors) < 1.5 and np.max(errors) < 4.0  # mm, over the brain
    assert result.scale == pytest.approx(0.92, abs=0.03)
    assert result.positive_fraction == pytest.approx(0.8, abs=0.15)
    assert result.correlation > 0.95 and result.warnings == []


def test_quantification_reads_the_template_regions(quantified):
    """On a templated PET the cortical SUVR is the template's own; the correction's differences are its 10 %."""
    template, regions = load_template(), load_regions()
    mix = 0.2 * template.negative + 0.8 * template.positive
    expected = mix[regions.target[GLOBAL_CORTEX]].mean() / mix[regions.reference["whole_cerebellum"]].mean()
    assert quantified.global_suvr["input"] == pytest.approx(expected, rel=0.02)
    assert quantified.global_suvr["network"] == pytest.approx(quantified.global_suvr["input"], rel=1e-3)  # x1.1 both
    assert quantified.centiloid["input"] == pytest.approx(175.4 * quantified.global_suvr["input"] - 182.3)
    assert quantified.row("whole_cerebellum").suvr["input"] == pytest.approx(1.0)
    assert quantified.row(GLOBAL_CORTEX).mean["network"] == pytest.approx(1.1 * quantified.row(GLOBAL_CORTEX).mean["input"], rel=1e-3)
    assert "not the Level-2-calibrated" in quantified.notes[0]


def test_a_non_pet_image_is_refused():
    rng = np.random.default_rng(3)
    noise = np.abs(rng.standard_normal(SUBJECT_SHAPE)).astype(np.float32)
    with pytest.raises(PVCInputError, match="spatial normalisation refused"):
        quantify_volume(noise, SUBJECT_GEOMETRY)


# --- command line ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pet_file(tmp_path_factory, positive_pet):
    return write_image(positive_pet, SUBJECT_GEOMETRY, tmp_path_factory.mktemp("pet") / "scan.nii.gz")


def test_quantify_command_writes_table_record_and_qc(pet_file, tmp_path, capsys):
    corrected = write_image(templated_pet(0.8, noise_seed=1), SUBJECT_GEOMETRY, tmp_path / "scan_pvc.nii.gz")
    out = tmp_path / "out"
    assert cli.main(["quantify", str(pet_file), "--tracer", "florbetaben", "--corrected", str(corrected),
                     "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["scan_quantification.csv", "scan_quantification.json",
                                                     "scan_quantification_qc.png"]
    rows = list(csv.DictReader((out / "scan_quantification.csv").open()))
    record = json.loads((out / "scan_quantification.json").read_text())
    cortex = next(r for r in rows if r["region"] == GLOBAL_CORTEX)
    assert float(cortex["centiloid_input"]) == pytest.approx(153.4 * float(cortex["suvr_input"]) - 154.9, abs=0.1)
    assert float(cortex["suvr_network_minus_input"]) == pytest.approx(
        float(cortex["suvr_network"]) - float(cortex["suvr_input"]), abs=2e-4)
    assert record["centiloid_equation"]["source"].startswith("Rowe et al. 2017")
    assert "not the Level-2-calibrated" in record["notes"][0]
    assert record["spatial_normalisation"]["quality_correlation"] > 0.95
    assert (out / "scan_quantification_qc.png").read_bytes()[:4] == b"\x89PNG"
    assert "Centiloid" in capsys.readouterr().out


@pytest.mark.parametrize("arguments, message", [
    (["missing.nii.gz"], "no such file"),
    (["{pet}", "--centiloid-slope", "100"], "both"),
    (["{pet}", "--corrected", "missing_pvc.nii.gz"], "no such file"),
    (["{noise}"], "spatial normalisation refused"),
])
def test_quantify_bad_input_is_one_line_exit_2_nothing_written(arguments, message, pet_file, tmp_path, capsys):
    noise = write_image(np.random.default_rng(0).random(SUBJECT_SHAPE).astype(np.float32), SUBJECT_GEOMETRY,
                        tmp_path / "noise.nii.gz")
    out = tmp_path / "out"
    arguments = [a.format(pet=pet_file, noise=noise) for a in arguments]
    assert cli.main(["quantify", *arguments, "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and message in error
    assert not out.exists()


# --- Slicer ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module():
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield import_module_file(monkeypatch)


def test_slicer_table_and_bar_chart_nodes(module, quantified):
    scene = slicer.vtkMRMLScene()
    logic = module.PETPartialVolumeCorrectionLogic()
    tableNode, chartNode = logic.showQuantification(quantified, scene)
    table = tableNode.GetTable()
    assert table.GetNumberOfRows() == len(quantified.rows)
    names = [table.GetColumn(i).GetName() for i in range(table.GetNumberOfColumns())]
    assert names == ["Region", "Voxels", "SUVR input", "SUVR network", "SUVR network - input"]
    regions = [tableNode.GetCellText(r, 0) for r in range(table.GetNumberOfRows())]
    assert regions == [row.region for row in quantified.rows]
    cortex = regions.index(GLOBAL_CORTEX)
    assert table.GetValue(cortex, 2).ToDouble() == pytest.approx(quantified.global_suvr["input"])
    assert table.GetValue(cortex, 4).ToDouble() == pytest.approx(
        quantified.global_suvr["network"] - quantified.global_suvr["input"])
    assert chartNode.GetNumberOfPlotSeriesNodes() == 2
    for index, image in enumerate(("input", "network")):
        series = chartNode.GetNthPlotSeriesNode(index)
        assert series.GetPlotType() == slicer.vtkMRMLPlotSeriesNode.PlotTypeBar
        assert series.GetTableNode() is tableNode
        assert series.GetYColumnName() == f"SUVR {image}" and series.GetLabelColumnName() == "Region"
    summary = tables.summary_text(quantified)
    assert f"input: global cortical SUVR {quantified.global_suvr['input']:.3f}" in summary and "Centiloid" in summary


def test_correct_with_quantify_quantifies_the_written_correction(pet_file, tmp_path, monkeypatch):
    """``correct --quantify`` quantifies the input and the correction ``correct`` wrote (the network
    run is replaced by writing 1.2 x the input, so the expected numbers are known)."""
    from PETPartialVolumeCorrectionLib import pipeline

    def correct_file(input_path, output_dir, **options):
        volume, geometry = read_image(input_path)
        os.makedirs(output_dir, exist_ok=True)
        settings = os.path.join(output_dir, "scan_pvc.json")
        with open(settings, "w") as stream:
            json.dump({"warnings": []}, stream)
        return {"corrected": write_image(1.2 * volume, geometry, os.path.join(output_dir, "scan_pvc.nii.gz")),
                "settings": settings}

    monkeypatch.setattr(pipeline, "correct_file", correct_file)
    out = tmp_path / "out"
    assert cli.main(["correct", str(pet_file), "-o", str(out), "--progress", "none", "--quantify", "--tracer", "pib"]) == 0
    record = json.loads((out / "scan_quantification.json").read_text())
    assert record["images"] == ["input", "network"]
    assert record["corrected_inputs"]["network"] == str((out / "scan_pvc.nii.gz").resolve())
    cortex = next(r for r in record["regions"] if r["region"] == GLOBAL_CORTEX)
    assert cortex["mean"]["network"] == pytest.approx(1.2 * cortex["mean"]["input"], rel=1e-4)
    assert record["centiloid_equation"]["source"].startswith("Klunk")
    assert (out / "scan_quantification_qc.png").is_file()


def test_panel_quantifies_after_apply_and_shows_table_chart_and_numbers(pet_file, monkeypatch, tmp_path):
    """The panel: a classical run (Van Cittert, PSF only) on the templated PET with *quantify* ticked
    fills the table and the chart, shows the chart, and writes the global SUVR and Centiloid."""
    from slicer_test_doubles import MessagesDouble, install_application

    module = import_module_file(monkeypatch)
    messages = MessagesDouble()
    install_application(monkeypatch, messages, tmp_path)
    panel = module.PETPartialVolumeCorrectionWidget()
    panel.setup()
    logic = module.PETPartialVolumeCorrectionLogic()
    pet = logic.addVolumeNode(slicer.mrmlScene, *read_image(pet_file), "scan")
    ui = panel.ui
    ui.inputVolumeSelector.userSets(pet)
    ui.methodComboBox.userSets("Van Cittert (PSF only)")
    ui.quantifyCheckBox.userSets(True)
    ui.tracerComboBox.userSets("flutemetamol")
    ui.applyButton.click()
    deadline = time.monotonic() + 120
    while panel._job is not None:
        assert time.monotonic() < deadline, "the background run did not end"
        panel._pollTimer.fire()
        time.sleep(0.05)
    panel.cleanup()
    assert messages.errors == []
    table = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLTableNode")
    chart = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLPlotChartNode")
    assert table.GetTable().GetColumnByName("SUVR vc") is not None
    assert slicer.modules.plots.shown_chart_ids == [chart.GetID()]
    assert "input: global cortical SUVR" in ui.quantificationLabel.text
    assert "vc: global cortical SUVR" in ui.quantificationLabel.text and "Centiloid" in ui.quantificationLabel.text
