"""The Slicer module's classical methods with FreeSurfer-named regions (slicer-core's real MRML
objects): a segmentation or a label map whose names are FreeSurfer's drives MG's tissue classes,
in process and in the background worker.

The regions are numbered WM 1, cortex 2, ventricle 3, so the plain tissue labels 1,2,3 (GM, WM,
CSF) would take WM for GM: only the names can make MG right.
"""

import numpy as np
import pytest

import slicer
from PETPartialVolumeCorrectionLib import classical
from PETPartialVolumeCorrectionLib import slicer_support as support
from PETPartialVolumeCorrectionLib.classical import psf
from PETPartialVolumeCorrectionLib.classical.segmentation import read_color_table
from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.geometry import Geometry
from test_slicer_logic import logic, module, scene  # noqa: F401 (the module's logic on a real scene: fixtures)

GEOMETRY = Geometry((2.0, 2.0, 2.0), (-32.0, -30.0, -28.0))
FWHM = (6.0, 6.0, 6.0)
NAMES = {1: "Left-Cerebral-White-Matter", 2: "ctx-lh-precuneus", 3: "Left-Lateral-Ventricle"}


@pytest.fixture(scope="module")
def phantom():
    n = 32
    z, y, x = np.mgrid[:n, :n, :n].astype(float) - n / 2 + 0.5
    radius = np.sqrt(x ** 2 + (1.1 * y) ** 2 + (1.2 * z) ** 2)
    labels = np.zeros((n, n, n), np.int16)
    labels[radius < 13] = 2                                          # cortex
    labels[radius < 10.5] = 1                                        # WM
    labels[(np.abs(x) - 3) ** 2 / 4 + y ** 2 / 25 + (z - 3) ** 2 / 4 < 1] = 3  # ventricles
    truth = np.select([labels == 2, labels == 1, labels == 3], [4.0, 1.0, 0.5], 0.0).astype(np.float32)
    pet = psf.gaussian_blur(truth, FWHM, GEOMETRY.spacing)
    expected = classical.mueller_gaertner(pet, gm=(labels == 2).astype(np.float32),
                                          wm=(labels == 1).astype(np.float32), csf=(labels == 3).astype(np.float32),
                                          fwhm_mm=FWHM, spacing_mm=GEOMETRY.spacing)
    return {"labels": labels, "pet": pet, "expected": expected}


def named_segmentation(logic, scene, labels):
    labelmap = logic.addVolumeNode(scene, labels, GEOMETRY, "seg labels", "vtkMRMLLabelMapVolumeNode")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    segments = segmentation.GetSegmentation()
    for index, name in enumerate(NAMES.values()):
        segments.GetSegment(segments.GetNthSegmentID(index)).SetName(name)
    scene.RemoveNode(labelmap)
    return segmentation


def named_label_map(logic, scene, labels):
    colors = scene.AddNewNodeByClass("vtkMRMLColorTableNode")
    colors.SetTypeToUser()
    colors.SetNumberOfColors(4)
    colors.SetColor(0, "Unknown", 0, 0, 0, 0)
    for label, name in NAMES.items():
        colors.SetColor(label, name, 0.1 * label, 0.5, 0.5, 1.0)
    labelmap = logic.addVolumeNode(scene, labels, GEOMETRY, "regions", "vtkMRMLLabelMapVolumeNode")
    labelmap.CreateDefaultDisplayNodes()
    labelmap.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
    return labelmap


@pytest.mark.parametrize("make_node", [named_segmentation, named_label_map])
def test_freesurfer_names_drive_mg_in_process(logic, scene, phantom, make_node):
    pet = logic.addVolumeNode(scene, phantom["pet"], GEOMETRY, "PET")
    node = make_node(logic, scene, phantom["labels"])
    assert logic.labelNamesFromNode(node) == NAMES
    corrected, _ = logic.process(pet, labelNode=node, inProcess=True, method="mg", fwhm_mm=FWHM, showResult=False)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(corrected), phantom["expected"], rtol=1e-5, atol=1e-5)
    with pytest.raises(PVCInputError, match="WM mask eroded by 4 voxels is empty"):  # 1,2,3 alone: the WM is
        support.run_in_process(phantom["pet"], GEOMETRY, support.CorrectionOptions(method="mg", fwhm_mm=FWHM),
                               labels=phantom["labels"].astype(np.int32))  # taken for GM, the cortex for WM


def test_freesurfer_names_reach_the_background_worker(logic, scene, phantom):
    pet = logic.addVolumeNode(scene, phantom["pet"], GEOMETRY, "PET")
    segmentation = named_segmentation(logic, scene, phantom["labels"])
    job = logic.startProcessing(pet, labelNode=segmentation, method="mg", fwhm_mm=FWHM, showResult=False)
    assert "--label-names" in job.background.worker.command
    corrected, _ = job.wait()
    np.testing.assert_allclose(slicer.util.arrayFromVolume(corrected), phantom["expected"], rtol=1e-5, atol=1e-5)


def test_worker_command_passes_the_names_file(tmp_path):
    command = support.worker_command("py", "in.nrrd", tmp_path, support.CorrectionOptions(method="gtm"),
                                     "labels.nrrd", tmp_path / "names.csv")
    assert command[command.index("--label-names") + 1] == str(tmp_path / "names.csv")
    written = support.write_label_names({2: "ctx-lh-precuneus", 1: "Left, odd name"}, tmp_path / "names.csv")
    assert read_color_table(written).names == {1: "Left, odd name", 2: "ctx-lh-precuneus"}
