"""The Slicer module's logic on a real MRML scene (slicer-core): node <-> array + geometry, files
through Slicer's storage nodes, the background worker, outputs in world coordinates, the display.

Only what exists solely inside the Slicer application (Qt, ScriptedLoadableModule, the parameter
node wrapper, the layout manager) comes from slicer_test_doubles.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import vtk

import slicer
from conftest import blob_volume, centroid_world, rotation_matrix
from PETPartialVolumeCorrectionLib import slicer_support as support
from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.geometry import Geometry
from PETPartialVolumeCorrectionLib.io import read_image, write_image
from PETPartialVolumeCorrectionLib.progress import PROGRESS_LINE_PREFIX
from slicer_test_doubles import (SCRIPTED_MODULES_DIR, SlicerApplicationDouble, import_module_file,
                                 write_slicer_cmake_package)

REQUIREMENTS = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"


@pytest.fixture(scope="module")
def module():
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield import_module_file(monkeypatch)


@pytest.fixture
def logic(module):
    return module.PETPartialVolumeCorrectionLogic()


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


def save_tiny_model(folder, head_scale: float):
    """A tiny ResUNet saved through the real model writer; its zero-initialised head makes it the
    identity, ``head_scale`` > 0 gives the head random weights of that size."""
    from PETPartialVolumeCorrectionLib.model import ModelConfig, build_model, save_model

    config = ModelConfig(depth=2, base_filters=4, max_filters=8, blocks_per_level=1, space_to_depth=2,
                         norm_groups=2)
    keras_model = build_model(config)
    if head_scale:
        head = keras_model.get_layer("head")
        rng = np.random.default_rng(0)
        head.set_weights([head_scale * rng.standard_normal(w.shape).astype(np.float32) for w in head.get_weights()])
    return save_model(keras_model, folder, {"name": "tiny-test", "architecture": config.to_dict()})


@pytest.fixture(scope="module")
def tiny_model_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny", head_scale=0.01)


@pytest.fixture(scope="module")
def identity_model_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "identity", head_scale=0.0)


#: Packages a fresh Slicer lacks that the library uses elsewhere (NIfTI checks, metrics, progress bars).
NOT_IN_SLICER = ("nibabel", "skimage", "tqdm")


def hide_packages_from_workers(monkeypatch, folder, packages):
    """Make ``packages`` unimportable in worker processes started from now on (a sitecustomize
    on their PYTHONPATH), to show what a run needs in Slicer's Python."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class HidePackages(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {tuple(packages)!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (hidden by the test)')\n"
        "sys.meta_path.insert(0, HidePackages())\n")
    monkeypatch.setenv("PYTHONPATH", str(folder))


def node_world_matrix(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def assert_same_image_in_world(array, geometry, other_array, other_geometry):
    """Same voxels at the same world positions, whatever the index order: Slicer's readers make a
    left-handed grid right-handed by reversing an axis (origin moved, direction negated)."""
    index_map = np.linalg.inv(geometry.index_to_world()) @ other_geometry.index_to_world()
    np.testing.assert_allclose(index_map, np.round(index_map), atol=1e-4)
    k, j, i = np.meshgrid(*(np.arange(n) for n in other_array.shape), indexing="ij")
    mapped = np.rint(np.stack([i, j, k, np.ones_like(i)], axis=-1) @ index_map.T).astype(int)
    np.testing.assert_array_equal(array[mapped[..., 2], mapped[..., 1], mapped[..., 0]], other_array)


#: A grid big enough for the network path: the 1 mm 256^3 grid must be more than 1 % image
#: (on 1 % the 99th-percentile crop of the intensity scaling would be the minimum).
NETWORK_SHAPE = (40, 56, 56)


def small_pet(geometry, shape=(20, 24, 28)):
    return blob_volume(shape, geometry, geometry.world_center(shape)[:3] + np.array([4.0, -3.0, 2.0]))


# --- geometry -------------------------------------------------------------------------------------

def test_ijk_to_ras_round_trip_keeps_an_oblique_flipped_anisotropic_geometry(oblique_geometry):
    matrix = support.ijk_to_ras_from_geometry(oblique_geometry)
    np.testing.assert_allclose(matrix[:2], -oblique_geometry.index_to_world()[:2])  # L, P -> R, A
    np.testing.assert_allclose(matrix[2:], oblique_geometry.index_to_world()[2:])
    back = support.geometry_from_ijk_to_ras(matrix)
    np.testing.assert_allclose(back.spacing, oblique_geometry.spacing, atol=1e-12)
    np.testing.assert_allclose(back.origin, oblique_geometry.origin, atol=1e-12)
    np.testing.assert_allclose(back.direction, oblique_geometry.direction, atol=1e-12)


def test_singular_ijk_to_ras_is_an_input_error():
    with pytest.raises(PVCInputError, match="singular"):
        support.geometry_from_ijk_to_ras(np.diag([1.0, 0.0, 1.0, 1.0]))


def test_volume_node_round_trip_is_exact_and_voxels_sit_where_the_geometry_says(logic, scene, oblique_geometry):
    volume = small_pet(oblique_geometry)
    node = logic.addVolumeNode(scene, volume, oblique_geometry, "PET")
    assert slicer.util.arrayFromVolume(node).shape == volume.shape

    array, geometry = logic.arrayAndGeometryFromVolumeNode(node)
    np.testing.assert_array_equal(array, volume)
    assert geometry.matches(oblique_geometry, tolerance_mm=1e-9)

    ras = node_world_matrix(node) @ np.array([5.0, 7.0, 3.0, 1.0])  # voxel i=5, j=7, k=3
    lps = oblique_geometry.index_to_world() @ np.array([5.0, 7.0, 3.0, 1.0])
    np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-9)


def test_parent_linear_transform_is_part_of_the_geometry_and_nonlinear_is_refused(logic, scene, oblique_geometry):
    node = logic.addVolumeNode(scene, small_pet(oblique_geometry), oblique_geometry, "PET")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    to_world = np.eye(4)
    to_world[:3, :3] = rotation_matrix((0.0, 0.0, 1.0), 30.0)
    to_world[:3, 3] = (10.0, -5.0, 2.0)
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(to_world))
    node.SetAndObserveTransformNodeID(transform.GetID())

    _, geometry = logic.arrayAndGeometryFromVolumeNode(node)
    ijk = np.array([3.0, 4.0, 5.0, 1.0])
    np.testing.assert_allclose(support.ijk_to_ras_from_geometry(geometry) @ ijk,
                               to_world @ node_world_matrix(node) @ ijk, atol=1e-9)

    grid = scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    node.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(PVCInputError, match="non-linear transform; harden it"):
        logic.arrayAndGeometryFromVolumeNode(node)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_files_written_by_the_library_load_in_slicer_storage_nodes_at_the_same_place(logic, scene, tmp_path,
                                                                                     oblique_geometry, suffix):
    volume = small_pet(oblique_geometry)
    path = write_image(volume, oblique_geometry, tmp_path / f"pet{suffix}")
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node)

    array, geometry = logic.arrayAndGeometryFromVolumeNode(node)
    assert_same_image_in_world(volume, oblique_geometry, array, geometry)
    np.testing.assert_allclose(support.ijk_to_ras_from_geometry(geometry), node_world_matrix(node), atol=1e-9)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_nodes_saved_by_slicer_storage_nodes_read_back_in_the_library_identically(logic, scene, tmp_path,
                                                                                  oblique_geometry, suffix):
    volume = small_pet(oblique_geometry)
    node = logic.addVolumeNode(scene, volume, oblique_geometry, "PET")
    path = tmp_path / f"saved{suffix}"
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    assert storage.WriteData(node)

    array, geometry = read_image(path)
    assert_same_image_in_world(volume, oblique_geometry, array, geometry)


# --- bad input ------------------------------------------------------------------------------------

def test_bad_input_nodes_give_one_clear_message(logic, scene, oblique_geometry):
    with pytest.raises(PVCInputError, match="no input volume"):
        logic.arrayAndGeometryFromVolumeNode(None)
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(PVCInputError, match="empty has no voxels"):
        logic.arrayAndGeometryFromVolumeNode(empty)
    frames = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "dynamic")
    slicer.util.updateVolumeFromArray(frames, np.ones((6, 10, 12, 4), dtype=np.float32))
    with pytest.raises(PVCInputError, match="4 values per voxel .*4D.*single 3D frame"):
        logic.arrayAndGeometryFromVolumeNode(frames)
    single_slice = logic.addVolumeNode(scene, np.random.default_rng(0).random((1, 30, 30), dtype=np.float32),
                                       oblique_geometry, "slice")
    with pytest.raises(PVCInputError, match="needs a 3D volume"):
        logic.process(single_slice, inProcess=True, showResult=False)


def test_classical_method_without_regions_is_refused_before_anything_runs(logic, scene, oblique_geometry):
    node = logic.addVolumeNode(scene, small_pet(oblique_geometry), oblique_geometry, "PET")
    with pytest.raises(PVCInputError, match="needs regions: select a segmentation or label map"):
        logic.startProcessing(node, method="rbv")
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 1


# --- the worker's command line --------------------------------------------------------------------

def test_worker_command_for_deep_learning_carries_every_option(tmp_path):
    options = support.CorrectionOptions(device="cpu", mode="gaussian", overlap=16, output_grid="native",
                                        crop_fov=True, model_folder="/models/m")
    command = support.worker_command("PythonSlicer", "in.nrrd", tmp_path, options)
    assert command[:4] == ["PythonSlicer", "-m", "PETPartialVolumeCorrectionLib.cli", "correct"]
    text = " ".join(command)
    for part in ("in.nrrd", f"-o {tmp_path}", "--device cpu", "--mode gaussian", "--overlap 16",
                 "--native-grid", "--crop-fov", "--model /models/m", "--progress lines"):
        assert part in text
    default = " ".join(support.worker_command("py", "in.nrrd", tmp_path, support.CorrectionOptions()))
    assert "--native-grid" not in default and "--overlap" not in default and "--model" not in default


def test_every_method_and_grid_offered_is_one_the_library_knows():
    from PETPartialVolumeCorrectionLib.classical.command import METHODS
    from PETPartialVolumeCorrectionLib.pipeline import OUTPUT_GRIDS

    assert set(support.METHOD_LABELS.values()) - {support.DEEP_LEARNING} <= set(METHODS)
    assert {m for m in METHODS if support.CorrectionOptions(method=m).needs_labels} == set(METHODS) - {"vc", "rl"}
    assert support.OUTPUT_GRIDS == OUTPUT_GRIDS


def test_worker_command_for_a_classical_method_passes_psf_and_labels(tmp_path):
    options = support.CorrectionOptions(method="rbv", fwhm_mm=(6.0, 6.5, 7.0))
    command = support.worker_command("py", "in.nrrd", tmp_path, options, labels_path="labels.nrrd")
    assert command[3:6] == ["classical", "--method", "rbv"]
    assert command[command.index("--psf") + 1:command.index("--psf") + 4] == ["6.0", "6.5", "7.0"]
    assert command[command.index("--labels") + 1] == "labels.nrrd"
    with pytest.raises(PVCInputError, match="rbv needs a label map"):
        support.checked_labels(options, None, None, (4, 4, 4), Geometry((1.0, 1.0, 1.0)))
    psf_only = support.worker_command("py", "in.nrrd", tmp_path, support.CorrectionOptions(method="rl"))
    assert "--labels" not in psf_only


@pytest.mark.parametrize("options, message", [
    ({"device": "tpu"}, "device must be one of"), ({"method": "magic"}, "method must be one of"),
    ({"mode": "tiles"}, "mode must be one of"), ({"method": "rbv", "fwhm_mm": (6.0, -1.0, 6.0)}, "PSF FWHM"),
])
def test_invalid_options_are_input_errors(options, message):
    with pytest.raises(PVCInputError, match=message):
        support.CorrectionOptions(**options)


def test_worker_environment_makes_the_library_importable_and_sets_the_backend():
    environment = support.worker_environment(support.CorrectionOptions(keras_backend="torch"),
                                             {"PYTHONPATH": "/elsewhere"})
    assert environment["PYTHONPATH"].split(os.pathsep) == [str(support.LIBRARY_PARENT), "/elsewhere"]
    assert (support.LIBRARY_PARENT / "PETPartialVolumeCorrectionLib" / "cli.py").is_file()
    assert environment["KERAS_BACKEND"] == "torch"


def test_command_line_advice_is_reworded_for_the_slicer_controls():
    message = support.slicer_message("field of view is larger than the 256 mm standard grid; crop the image to "
                                     "the head, or pass --crop-fov to cut it centred")
    assert "--crop-fov" not in message and "'Cut a field of view wider than 256 mm'" in message
    assert "Model folder setting" in support.slicer_message("pass a model folder (--model DIR)")


# --- the background worker process ----------------------------------------------------------------

def test_worker_process_streams_progress_and_keeps_other_lines():
    script = (f"import sys\nfor i in range(3):\n    print(f'{PROGRESS_LINE_PREFIX} {{i / 2:.2f}} step {{i}}', flush=True)\n"
              "print('a log line')\nprint('pet-pvc correct: error: bad input', file=sys.stderr)\nsys.exit(2)")
    worker = support.WorkerProcess([sys.executable, "-c", script])
    seen = []
    assert worker.wait(progress=lambda fraction, message: seen.append((fraction, message))) == 2
    assert seen == [(0.0, "step 0"), (0.5, "step 1"), (1.0, "step 2")]
    assert "a log line" in worker.log
    assert worker.error_message() == "bad input"


def process_running(pid: int) -> bool:
    """True while the process exists and is not a zombie (an ended child nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


@pytest.mark.skipif(os.name == "nt", reason="process groups; Windows ends the tree with taskkill /T")
def test_cancel_ends_the_worker_and_the_process_it_started():
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              f"print('{PROGRESS_LINE_PREFIX} 0.1 child', child.pid, flush=True)\ntime.sleep(60)")
    worker = support.WorkerProcess([sys.executable, "-c", script])
    messages = []
    deadline = time.monotonic() + 30
    while not messages and time.monotonic() < deadline:
        worker.poll(lambda fraction, message: messages.append(message))
        time.sleep(0.05)
    child_pid = int(messages[0].split()[1])
    start = time.monotonic()
    worker.cancel()
    assert worker.wait() != 0 and worker.cancelled
    assert time.monotonic() - start < support.WorkerProcess.TERMINATE_GRACE_S
    time.sleep(0.2)
    assert not process_running(child_pid)


def test_background_deep_learning_end_to_end_on_the_input_grid(logic, scene, oblique_geometry, tiny_model_folder,
                                                               monkeypatch, tmp_path):
    """The real worker (python -m PETPartialVolumeCorrectionLib.cli correct) with a tiny model, with
    only what Slicer ships plus Keras and TensorFlow."""
    hide_packages_from_workers(monkeypatch, tmp_path / "hide", NOT_IN_SLICER)
    shape = NETWORK_SHAPE
    volume = small_pet(oblique_geometry, shape)
    node = logic.addVolumeNode(scene, volume, oblique_geometry, "PET")
    node.SetVoxelValueUnits(slicer.vtkCodedEntry())
    node.GetVoxelValueUnits().SetValueSchemeMeaning("Bq/ml", "UCUM", "becquerels per milliliter")
    fractions = []
    job = logic.startProcessing(node, device="cpu", output_grid="native", model_folder=str(tiny_model_folder),
                                showResult=False)
    folder = job.background.folder
    corrected, sharpened = job.wait(progress=lambda fraction, message: fractions.append(fraction))

    assert not folder.exists()
    assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert corrected.GetName() == "PET_PVC" and sharpened.GetName() == "PET_sharpen"
    for output in (corrected, sharpened):
        np.testing.assert_allclose(node_world_matrix(output), node_world_matrix(node), atol=1e-4)
        array = slicer.util.arrayFromVolume(output)
        assert array.shape == shape and np.all(np.isfinite(array))
        assert output.GetVoxelValueUnits().GetCodeValue() == "Bq/ml"
    # the worker computes what the library computes in this process
    expected = support.run_in_process(volume, oblique_geometry, job.background.options)
    for output, array in ((corrected, expected.corrected), (sharpened, expected.sharpened)):
        np.testing.assert_allclose(slicer.util.arrayFromVolume(output), array, atol=1e-4 * np.abs(array).max())
    assert not np.allclose(expected.corrected, volume, atol=1e-3)


def test_input_refused_by_the_worker_comes_back_as_one_reworded_message(logic, scene, oblique_geometry,
                                                                       tiny_model_folder):
    wide = Geometry((4.0, 4.0, 4.0), (0.0, 0.0, 0.0), oblique_geometry.direction)
    node = logic.addVolumeNode(scene, small_pet(wide, (20, 24, 80)), wide, "whole body")
    with pytest.raises(PVCInputError, match="larger than the 256 mm .*'Cut a field of view wider than 256 mm'"):
        logic.process(node, device="cpu", model_folder=str(tiny_model_folder), showResult=False)
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 1


def test_in_process_output_on_the_standard_grid_overlays_the_input_in_world_coordinates(
        logic, scene, oblique_geometry, identity_model_folder):
    shape = NETWORK_SHAPE
    target = oblique_geometry.world_center(shape)[:3] + np.array([6.0, -4.0, 3.0])
    volume = blob_volume(shape, oblique_geometry, target, sigma_mm=5.0)
    node = logic.addVolumeNode(scene, volume, oblique_geometry, "PET")
    corrected, sharpened = logic.process(node, inProcess=True, device="cpu", model_folder=str(identity_model_folder),
                                         showResult=False)

    assert slicer.util.arrayFromVolume(corrected).shape == (256, 256, 256)
    input_array, input_geometry = logic.arrayAndGeometryFromVolumeNode(node)
    for output in (corrected, sharpened):
        array, geometry = logic.arrayAndGeometryFromVolumeNode(output)
        assert geometry.spacing == (1.0, 1.0, 1.0)
        np.testing.assert_allclose(centroid_world(array, geometry, 0.5),
                                   centroid_world(input_array, input_geometry, 0.5), atol=0.6)


def test_in_process_classical_correction_of_the_phantom_gets_closer_to_the_truth(logic, scene):
    phantom = support.amyloid_phantom()
    pet = logic.addVolumeNode(scene, phantom["pet"], phantom["geometry"], "phantom")
    labels = logic.addVolumeNode(scene, phantom["labels"], phantom["geometry"], "labels",
                                 "vtkMRMLLabelMapVolumeNode")
    corrected, sharpened = logic.process(pet, labelNode=labels, inProcess=True, method="rbv",
                                         fwhm_mm=phantom["fwhm_mm"], showResult=False)
    assert sharpened is None and corrected.GetName() == "phantom_RBV"
    brain = phantom["labels"] > 0
    error = lambda image: np.sqrt(np.mean((image[brain] - phantom["truth"][brain]) ** 2))
    assert error(slicer.util.arrayFromVolume(corrected)) < 0.5 * error(phantom["pet"])


def test_labels_on_a_finer_grid_are_resampled_onto_the_pet_by_nearest_neighbour():
    phantom = support.amyloid_phantom()
    geometry = phantom["geometry"]
    fine_labels = np.repeat(np.repeat(np.repeat(phantom["labels"], 2, 0), 2, 1), 2, 2)
    # 1.5 mm voxels: each 3 mm PET voxel holds 2 x 2 x 2 of them, centred +-0.75 mm around its centre
    fine = Geometry((1.5, 1.5, 1.5), tuple((geometry.index_to_world() @ [-0.25, -0.25, -0.25, 1.0])[:3]),
                    geometry.direction)
    on_pet = support.checked_labels(support.CorrectionOptions(method="rbv"), fine_labels, fine,
                                    phantom["labels"].shape, geometry)
    np.testing.assert_array_equal(on_pet, phantom["labels"])
    outside = Geometry((1.5, 1.5, 1.5), (900.0, 900.0, 900.0), geometry.direction)
    with pytest.raises(PVCInputError, match="no region inside the PET's field of view"):
        support.checked_labels(support.CorrectionOptions(method="rbv"), fine_labels, outside,
                               phantom["labels"].shape, geometry)


# --- display --------------------------------------------------------------------------------------

@pytest.fixture
def application_scene():
    """A scene set up as Slicer's (layout node, colour tables, slice views made by the layout)."""
    application = SlicerApplicationDouble()
    yield application.scene
    del application


def composite(logic, scene, view):
    node = logic.sliceCompositeNode(scene, view)
    assert node is not None, f"no slice view {view}"
    return node


def three_volumes(logic, scene, geometry):
    volume = small_pet(geometry)
    return [logic.addVolumeNode(scene, volume * factor, geometry, name)
            for factor, name in ((1.0, "PET"), (1.3, "PET_PVC"), (1.6, "PET_sharpen"))]


def test_results_are_shown_side_by_side_linked_with_one_colour_map_and_window(logic, application_scene,
                                                                           oblique_geometry):
    scene = application_scene
    pet, corrected, sharpened = three_volumes(logic, scene, oblique_geometry)
    logic.showResults(pet, corrected, sharpened)

    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    assert layout.GetViewArrangement() == logic.LAYOUT_ID
    for view, shown in zip(logic.VIEW_NAMES, (pet, corrected, sharpened)):
        node = composite(logic, scene, view)
        assert node.GetBackgroundVolumeID() == shown.GetID()
        assert node.GetForegroundVolumeID() is None
        assert node.GetLinkedControl() and node.GetHotLinkedControl()
        slice_node = scene.GetSingletonNode(view, "vtkMRMLSliceNode")
        assert slice_node.GetOrientation() == "Axial" and slice_node.GetViewGroup() == 0
    windows = set()
    for node in (pet, corrected, sharpened):
        display = node.GetDisplayNode()
        assert display.GetColorNodeID() == logic.PET_COLOR_NODE_ID
        assert not display.GetAutoWindowLevel()
        windows.add((round(display.GetWindowLevelMin(), 6), round(display.GetWindowLevelMax(), 6)))
    assert len(windows) == 1
    low, high = windows.pop()
    assert high >= np.percentile(slicer.util.arrayFromVolume(sharpened), 99.0) and low <= 0.2


def test_overlay_shows_each_output_over_the_input(logic, application_scene, oblique_geometry):
    scene = application_scene
    pet, corrected, sharpened = three_volumes(logic, scene, oblique_geometry)
    logic.showResults(pet, corrected, sharpened, overlay=True)
    for view, foreground in zip(logic.VIEW_NAMES, (None, corrected, sharpened)):
        node = composite(logic, scene, view)
        assert node.GetBackgroundVolumeID() == pet.GetID()
        assert node.GetForegroundVolumeID() == (foreground.GetID() if foreground else None)
        assert node.GetForegroundOpacity() == pytest.approx(logic.OVERLAY_OPACITY if foreground else 0.0)


def test_classical_result_shows_the_regions_in_the_third_view(logic, application_scene):
    scene = application_scene
    phantom = support.amyloid_phantom()
    pet = logic.addVolumeNode(scene, phantom["pet"], phantom["geometry"], "phantom")
    labels = logic.addVolumeNode(scene, phantom["labels"], phantom["geometry"], "labels", "vtkMRMLLabelMapVolumeNode")
    corrected = logic.addVolumeNode(scene, phantom["truth"], phantom["geometry"], "phantom_RBV")
    logic.showResults(pet, corrected, None, labels)
    third = composite(logic, scene, logic.VIEW_NAMES[2])
    assert third.GetBackgroundVolumeID() == pet.GetID() and third.GetLabelVolumeID() == labels.GetID()


def test_segmentation_regions_are_exported_on_the_pet_grid(logic, scene, oblique_geometry):
    shape = (20, 24, 28)
    pet = logic.addVolumeNode(scene, small_pet(oblique_geometry, shape), oblique_geometry, "PET")
    labels = np.zeros(shape, dtype=np.int16)
    labels[4:12, 5:15, 6:20] = 1
    labels[12:16, 5:15, 6:20] = 2
    labelmap = logic.addVolumeNode(scene, labels, oblique_geometry, "regions", "vtkMRMLLabelMapVolumeNode")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    exported, geometry = logic.labelsAndGeometryFromNode(segmentation, pet)
    assert geometry.matches(oblique_geometry, tolerance_mm=1e-4)
    np.testing.assert_array_equal(exported > 0, labels > 0)
    assert set(np.unique(exported)) == {0, 1, 2}
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 1  # the temporary one is gone


# --- dependencies ---------------------------------------------------------------------------------

@pytest.mark.parametrize("python, system, allowed, refused", [
    ("3.9", "Linux", "2.20.0", "2.21.0"), ("3.9", "Windows", "2.20.0", "2.21.0"),
    ("3.12", "Linux", "2.21.0", "2.22.0"), ("3.12", "Darwin", "2.21.0", "2.22.0"),
])
def test_tensorflow_version_is_picked_by_slicers_python(python, system, allowed, refused):
    from packaging.requirements import Requirement

    picked = [Requirement(r) for r in support.requirements_for_environment(
        REQUIREMENTS.read_text(), {"python_version": python, "platform_system": system})]
    tensorflow = [r for r in picked if r.name.startswith("tensorflow")]
    assert len(tensorflow) == 1
    assert tensorflow[0].name == ("tensorflow" if system == "Darwin" else "tensorflow-cpu")
    assert tensorflow[0].specifier.contains(allowed) and not tensorflow[0].specifier.contains(refused)
    keras = next(r for r in picked if r.name == "keras")
    assert keras.specifier.contains("3.10.0") and keras.specifier.contains("3.15.1") == (python != "3.9")


def test_requirements_without_tensorflow_for_torch_and_without_keras_for_classical_methods():
    names = lambda backend: {r.split(">")[0].split("<")[0] for r in support.requirements_for_environment(
        REQUIREMENTS.read_text(), keras_backend=backend)}
    assert "tensorflow-cpu" in names("tensorflow") or "tensorflow" in names("tensorflow")
    assert "keras" in names("torch") and not any(n.startswith("tensorflow") for n in names("torch"))
    assert names(None) == {"numpy", "scipy", "SimpleITK"}  # what Slicer ships


def test_any_tensorflow_build_of_a_fitting_version_satisfies_the_requirement():
    requirements = ["tensorflow-cpu>=2.16,<2.22", "keras>=3.3", "tqdm>=4.60"]
    gpu_build = {"tensorflow": "2.21.0", "keras": "3.15.1", "tqdm": "4.67.0"}.get
    assert support.unsatisfied_requirements(requirements, gpu_build) == []
    too_old = {"tensorflow-cpu": "2.15.0", "keras": "3.15.1"}.get
    assert support.unsatisfied_requirements(requirements, too_old) == ["tensorflow-cpu>=2.16,<2.22", "tqdm>=4.60"]


def test_gpu_advice_names_what_to_do():
    nothing = {}.get
    with_torch = {"torch": "2.5.0"}.get
    windows = support.gpu_advice("tensorflow", "Windows", nothing)
    assert "no GPU support on native Windows" in windows and "PyTorch Util" in windows
    assert "PyTorch is installed" in support.gpu_advice("tensorflow", "Windows", with_torch)
    assert "tensorflow[and-cuda]" in support.gpu_advice("tensorflow", "Linux", {"tensorflow-cpu": "2.21.0"}.get)
    assert support.gpu_advice("tensorflow", "Linux", {"tensorflow": "2.21.0"}.get) is None
    assert "needs PyTorch" in support.gpu_advice("torch", "Linux", nothing)
    assert support.gpu_advice("torch", "Windows", with_torch) is None
    assert "macOS" in support.gpu_advice("tensorflow", "Darwin", nothing)


def test_missing_requirements_read_the_shipped_requirements_file(logic):
    assert Path(logic.requirementsPath()) == REQUIREMENTS
    assert logic.missingRequirements(None) == []  # this environment has the library's dependencies


def test_background_classical_correction_matches_the_library_and_reports_its_warnings(logic, scene, monkeypatch,
                                                                                      tmp_path):
    """The classical worker needs only what Slicer ships (no Keras, no TensorFlow)."""
    hide_packages_from_workers(monkeypatch, tmp_path / "hide", NOT_IN_SLICER + ("keras", "tensorflow"))
    phantom = support.amyloid_phantom()
    pet = logic.addVolumeNode(scene, phantom["pet"], phantom["geometry"], "phantom")
    labels = logic.addVolumeNode(scene, phantom["labels"], phantom["geometry"], "labels", "vtkMRMLLabelMapVolumeNode")
    job = logic.startProcessing(pet, labelNode=labels, method="iy", fwhm_mm=phantom["fwhm_mm"], showResult=False)
    corrected, sharpened = job.wait()

    assert sharpened is None and corrected.GetName() == "phantom_IY"
    np.testing.assert_allclose(node_world_matrix(corrected), node_world_matrix(pet), atol=1e-6)
    expected = support.run_in_process(phantom["pet"], phantom["geometry"], job.background.options,
                                      labels=phantom["labels"])
    np.testing.assert_allclose(slicer.util.arrayFromVolume(corrected), expected.corrected, rtol=1e-5, atol=1e-6)
    assert any("background region" in warning for warning in job.warnings)


def test_self_test_passes_here_with_the_classical_fallback(module, monkeypatch, caplog):
    import PETPartialVolumeCorrectionLib.model as model_module

    monkeypatch.setattr(model_module, "default_model_dir", lambda name=None: None)  # no shipped model
    monkeypatch.setattr(slicer, "mrmlScene", slicer.vtkMRMLScene(), raising=False)
    caplog.set_level("INFO")
    self_test = module.PETPartialVolumeCorrectionTest()
    self_test.runTest()
    assert "classical RBV method with the phantom's own labels" in caplog.text
    assert "RMSE to the true activity in the brain" in caplog.text


def test_self_test_passes_here_with_the_shipped_model(module, monkeypatch, caplog):
    monkeypatch.setattr(slicer, "mrmlScene", slicer.vtkMRMLScene(), raising=False)
    caplog.set_level("INFO")
    module.PETPartialVolumeCorrectionTest().runTest()
    assert "deep learning with the shipped model" in caplog.text
    assert "RMSE to the MG target in the brain" in caplog.text


# --- build and install --------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_built_and_installed_module_finds_its_library_requirements_and_shipped_model(tmp_path, monkeypatch):
    from PETPartialVolumeCorrectionLib.model import MODEL_CARD_NAME, SHIPPED_MODEL_NAME

    repository = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"
    shutil.copytree(repository / "PETPartialVolumeCorrection", source / "PETPartialVolumeCorrection",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(repository / "Resources", source / "Resources")
    shutil.copy(repository / "CMakeLists.txt", source)
    assert (source / "Resources" / "Models" / SHIPPED_MODEL_NAME / MODEL_CARD_NAME).is_file()  # the shipped model

    slicer_dir = write_slicer_cmake_package(tmp_path / "slicer-cmake")
    outputs = []
    for command in (["cmake", "-S", source, "-B", tmp_path / "build", f"-DSlicer_DIR={slicer_dir}"],
                    ["cmake", "--install", tmp_path / "build", "--prefix", tmp_path / "install"]):
        completed = subprocess.run([str(c) for c in command], capture_output=True, text=True)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        outputs.append(completed.stdout)
    assert "scripted module PETPartialVolumeCorrection generic tests: TRUE" in outputs[0]
    assert "python unittest: PETPartialVolumeCorrection.py" in outputs[0]

    for tree in (tmp_path / "build", tmp_path / "install"):
        modules = tree / SCRIPTED_MODULES_DIR
        for relative in ("PETPartialVolumeCorrection.py", "PETPartialVolumeCorrectionLib/slicer_support.py",
                         "PETPartialVolumeCorrectionLib/classical/command.py", "Resources/UI/PETPartialVolumeCorrection.ui",
                         "Resources/Icons/PETPartialVolumeCorrection.png", "Resources/requirements.txt",
                         f"Resources/Models/{SHIPPED_MODEL_NAME}/{MODEL_CARD_NAME}"):
            assert (modules / relative).is_file(), f"{relative} missing in {tree.name}"

    installed = tmp_path / "install" / SCRIPTED_MODULES_DIR
    probe = ("import PETPartialVolumeCorrectionLib as library\n"
             "from PETPartialVolumeCorrectionLib.model import default_model_dir\n"
             "print(library.__file__)\nprint(default_model_dir())")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                               env={**os.environ, "PYTHONPATH": str(installed)})
    library_file, model_dir = completed.stdout.split()
    assert Path(library_file).is_relative_to(installed)
    assert Path(model_dir) == installed / "Resources" / "Models" / SHIPPED_MODEL_NAME

    module = import_module_file(monkeypatch, "InstalledPETPartialVolumeCorrection",
                                installed / "PETPartialVolumeCorrection.py")
    assert Path(module.resourceFile("requirements.txt")) == installed / "Resources" / "requirements.txt"
