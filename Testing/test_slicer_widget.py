"""The Slicer module's panel: the .ui file against the widget code, and the widget's wiring.

The widgets are built from the real .ui file by slicer_test_doubles (Qt does not exist outside
Slicer); scene, nodes, logic and the background worker are real.
"""

import ast
import sys
import time
import types
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

import slicer
from PETPartialVolumeCorrectionLib import slicer_support as support
from slicer_test_doubles import (CONNECTABLE_WIDGETS, MODULE_FILE, UI_FILE, MessagesDouble, QFileDialogDouble,
                                 import_module_file, install_application)
from test_slicer_logic import save_tiny_model

#: Every ``self.ui.<name>`` the widget code uses, and the class its use needs.
WIDGETS_USED_BY_CODE = {
    "applyButton": "QPushButton",
    "cancelButton": "QPushButton",
    "modelFolderBrowseButton": "QToolButton",
    "classicalCollapsibleButton": "ctkCollapsibleButton",
    "deepLearningCollapsibleButton": "ctkCollapsibleButton",
    "gpuAdviceLabel": "QLabel",
    "statusLabel": "QLabel",
    "labelVolumeSelector": "qMRMLNodeComboBox",
    "sharpenVolumeSelector": "qMRMLNodeComboBox",
    "overlapSpinBox": "QSpinBox",
    "progressBar": "QProgressBar",
    "quantificationLabel": "QLabel",
}


def ui_widgets() -> dict:
    """name -> (class, SlicerParameterName or None) of every widget in the .ui file."""
    root = ElementTree.parse(UI_FILE).getroot()
    widgets = {}
    for element in root.iter("widget"):
        parameter = next((p.findtext("string") for p in element.findall("property")
                          if p.get("name") == "SlicerParameterName"), None)
        widgets[element.get("name")] = (element.get("class"), parameter)
    return widgets


# --- the .ui file against the code ----------------------------------------------------------------

def test_every_widget_the_code_uses_exists_in_the_ui_file_with_the_expected_class():
    tree = ast.parse(MODULE_FILE.read_text())
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    assert used == set(WIDGETS_USED_BY_CODE)
    widgets = ui_widgets()
    for name, expected_class in WIDGETS_USED_BY_CODE.items():
        assert name in widgets, f"{name} is used by the code but missing from the .ui file"
        assert widgets[name][0] == expected_class, f"{name} is a {widgets[name][0]}, the code needs {expected_class}"


def test_every_parameter_has_one_widget_of_a_class_slicer_can_connect(monkeypatch):
    module = import_module_file(monkeypatch)
    fields = module.PETPartialVolumeCorrectionParameterNode.allParameters
    bound = {parameter: (name, cls) for name, (cls, parameter) in ui_widgets().items() if parameter}
    assert set(bound) == set(fields)
    for parameter, (name, cls) in bound.items():
        assert cls in CONNECTABLE_WIDGETS[fields[parameter].kind], f"{name} ({cls}) cannot show {parameter}"


def test_ui_root_gives_its_scene_to_every_node_selector():
    root = ElementTree.parse(UI_FILE).getroot()
    assert root.find("widget").get("class") == "qMRMLWidget"
    selectors = {name for name, (cls, _) in ui_widgets().items() if cls == "qMRMLNodeComboBox"}
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)" and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert receivers == selectors and len(selectors) == 4


def test_module_says_what_it_does_its_limits_and_what_the_model_was_trained_on(monkeypatch):
    module = import_module_file(monkeypatch)
    parent = types.SimpleNamespace()
    module.PETPartialVolumeCorrection(parent)
    assert parent.title == "PET Partial Volume Correction" and parent.categories == ["Nuclear Medicine"]
    assert "not a medical device" in parent.helpText and "Rousset" in parent.acknowledgementText
    from PETPartialVolumeCorrectionLib.model import default_model_dir, read_model_card

    shipped_card = read_model_card(default_model_dir())  # the model shipped in this checkout
    assert support.model_card_summary(shipped_card) in parent.helpText
    assert f"{shipped_card['data']['train_subjects']} training subjects" in parent.helpText


def test_model_card_summary_names_the_target_and_the_data():
    card = {"name": "resunet3d-amyloid-pvc", "training_target": "Mueller-Gaertner inside grey matter",
            "data": {"source": "simulator", "psf_fwhm_mm_range": [4.0, 9.0], "train_subjects": 550}}
    assert support.model_card_summary(card) == (
        "The shipped model 'resunet3d-amyloid-pvc' was trained to reproduce Mueller-Gaertner inside grey "
        "matter on simulator, PSF 4-9 mm FWHM, 550 training subjects; its model card (Resources/Models) "
        "gives the data and the test scores.")


# --- the widget's wiring --------------------------------------------------------------------------

@pytest.fixture
def messages():
    return MessagesDouble()


@pytest.fixture
def module(monkeypatch):
    return import_module_file(monkeypatch)


@pytest.fixture
def widget(module, monkeypatch, messages, tmp_path):
    install_application(monkeypatch, messages, tmp_path)
    panel = module.PETPartialVolumeCorrectionWidget()
    panel.setup()
    yield panel
    panel.cleanup()


def add_phantom(module):
    phantom = support.amyloid_phantom()
    logic = module.PETPartialVolumeCorrectionLogic()
    pet = logic.addVolumeNode(slicer.mrmlScene, phantom["pet"], phantom["geometry"], "phantom")
    labels = logic.addVolumeNode(slicer.mrmlScene, phantom["labels"], phantom["geometry"], "labels",
                                 "vtkMRMLLabelMapVolumeNode")
    return pet, labels


def run_until_done(widget, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while widget._job is not None:
        assert time.monotonic() < deadline, "the background run did not end"
        widget._pollTimer.fire()
        time.sleep(0.05)


def test_apply_needs_an_input_and_the_regions_its_method_needs(module, widget):
    ui = widget.ui
    assert not ui.applyButton.enabled and ui.applyButton.toolTip == "Select an input PET volume"
    assert ui.methodComboBox.items == list(support.METHOD_LABELS)
    pet, labels = add_phantom(module)
    ui.inputVolumeSelector.userSets(pet)
    assert ui.applyButton.enabled
    assert ui.deepLearningCollapsibleButton.visible and not ui.classicalCollapsibleButton.visible

    ui.methodComboBox.userSets("RBV (regions)")
    assert ui.classicalCollapsibleButton.visible and not ui.deepLearningCollapsibleButton.visible
    assert not ui.sharpenVolumeSelector.enabled and ui.labelVolumeSelector.enabled
    assert not ui.applyButton.enabled and "regions" in ui.applyButton.toolTip
    ui.labelVolumeSelector.userSets(labels)
    assert ui.applyButton.enabled

    ui.methodComboBox.userSets("Van Cittert (PSF only)")
    assert not ui.labelVolumeSelector.enabled
    ui.labelVolumeSelector.userSets(None)
    assert ui.applyButton.enabled


def test_settings_reach_the_logic_as_library_options(module, widget):
    ui = widget.ui
    pet, _ = add_phantom(module)
    ui.inputVolumeSelector.userSets(pet)
    ui.deviceComboBox.userSets("cpu")
    ui.overlapSpinBox.userSets(48)
    ui.nativeGridCheckBox.userSets(True)
    ui.modelFolderLineEdit.userSets("  /models/amyloid  ")
    options = widget.correctionOptions()
    assert support.CorrectionOptions(**options) == support.CorrectionOptions(
        device="cpu", overlap=48, output_grid="native", model_folder="/models/amyloid")
    ui.tilingModeComboBox.userSets("study")
    assert not ui.overlapSpinBox.enabled and widget.correctionOptions()["overlap"] is None
    ui.methodComboBox.userSets("RBV (regions)")
    for axis, value in zip("XYZ", (5.0, 5.5, 7.0)):
        getattr(ui, f"psfFwhm{axis}SpinBox").userSets(value)
    assert widget.correctionOptions()["fwhm_mm"] == (5.0, 5.5, 7.0)
    assert widget.correctionOptions()["method"] == "rbv"


def test_gpu_advice_is_shown_for_the_chosen_backend_unless_the_cpu_is_chosen(module, widget, monkeypatch):
    ui = widget.ui
    monkeypatch.setattr(support, "installed_version", lambda name: None)
    ui.kerasBackendComboBox.userSets("torch")
    assert ui.gpuAdviceLabel.visible and "needs PyTorch" in ui.gpuAdviceLabel.text
    ui.deviceComboBox.userSets("cpu")
    assert not ui.gpuAdviceLabel.visible


def test_classical_run_from_the_panel_shows_the_result_side_by_side(module, widget, messages):
    ui = widget.ui
    pet, labels = add_phantom(module)
    ui.inputVolumeSelector.userSets(pet)
    ui.methodComboBox.userSets("RBV (regions)")
    ui.labelVolumeSelector.userSets(labels)
    ui.applyButton.click()
    assert not ui.applyButton.enabled and ui.cancelButton.enabled and ui.progressBar.visible
    assert widget._pollTimer.active
    run_until_done(widget)

    assert messages.errors == []
    assert ui.statusLabel.text.startswith("Done: phantom_RBV")
    assert "Warning: the regions leave" in ui.statusLabel.text  # the added background region
    assert ui.progressBar.value == 100 and not ui.cancelButton.enabled and ui.applyButton.enabled
    assert not widget._pollTimer.active
    corrected = slicer.mrmlScene.GetFirstNodeByName("phantom_RBV")
    logic = widget.logic
    assert slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLLayoutNode").GetViewArrangement() == logic.LAYOUT_ID
    assert logic.sliceCompositeNode(slicer.mrmlScene, logic.VIEW_NAMES[1]).GetBackgroundVolumeID() == corrected.GetID()
    assert slicer.app.layoutManager().reset_slice_views_calls == 1


def test_missing_model_is_one_clear_message(module, widget, messages, tmp_path):
    ui = widget.ui
    pet, _ = add_phantom(module)
    empty_folder = tmp_path / "not_a_model"
    empty_folder.mkdir()
    ui.modelFolderLineEdit.userSets(str(empty_folder))  # the worker process sees the same setting
    ui.inputVolumeSelector.userSets(pet)
    ui.applyButton.click()
    run_until_done(widget)
    assert len(messages.errors) == 1 and messages.errors[0].startswith(f"model folder {empty_folder} has no")
    assert "--model" not in messages.errors[0]
    assert ui.statusLabel.text == messages.errors[0]
    assert slicer.mrmlScene.GetFirstNodeByName("phantom_PVC") is None


def test_four_dimensional_input_is_refused_before_anything_runs(module, widget, messages):
    frames = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "dynamic PET")
    slicer.util.updateVolumeFromArray(frames, np.ones((6, 10, 12, 4), dtype=np.float32))
    widget.ui.inputVolumeSelector.userSets(frames)
    widget.ui.applyButton.click()
    assert widget._job is None and not widget._pollTimer.active
    assert messages.errors == ["dynamic PET has 4 values per voxel (a 4D or vector volume); select a single 3D "
                               "frame (e.g. from the Sequences module)"]


def test_cancel_stops_the_worker_and_creates_no_output(module, widget, messages, tmp_path):
    ui = widget.ui
    pet, _ = add_phantom(module)
    ui.inputVolumeSelector.userSets(pet)
    ui.deviceComboBox.userSets("cpu")
    ui.modelFolderLineEdit.userSets(str(save_tiny_model(tmp_path / "models" / "tiny", head_scale=0.0)))
    ui.applyButton.click()
    folder = widget._job.background.folder
    ui.cancelButton.click()
    assert ui.statusLabel.text == "Cancelling..."
    run_until_done(widget, timeout_s=30)
    assert ui.statusLabel.text == "Cancelled" and messages.errors == []
    assert not folder.exists()
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 2  # the phantom and its labels


def test_missing_packages_are_installed_only_after_the_user_agrees(module, widget, messages, monkeypatch):
    installed = []
    monkeypatch.setattr(widget.logic, "missingRequirements", lambda backend: ["tensorflow-cpu>=2.16,<2.22"])
    monkeypatch.setattr(slicer.util, "pip_install", installed.append)
    pet, _ = add_phantom(module)
    widget.ui.inputVolumeSelector.userSets(pet)
    widget.ui.methodComboBox.userSets("Van Cittert (PSF only)")

    messages.confirm = False
    widget.ui.applyButton.click()
    assert installed == [] and "cannot run without these Python packages" in messages.errors[-1]
    assert "tensorflow-cpu>=2.16,<2.22" in messages.confirmations[-1]
    assert widget._job is None

    messages.confirm = True
    widget.ui.applyButton.click()
    assert installed == [["tensorflow-cpu>=2.16,<2.22"]]
    run_until_done(widget)
    assert widget.ui.statusLabel.text.startswith("Done: phantom_VC")


def test_slicer_5_12_installs_through_pip_ensure_which_asks_itself(module, widget, messages, monkeypatch):
    asked = []

    def pip_ensure(requirements, requester=None):
        asked.append(([str(r) for r in requirements], requester))
        raise RuntimeError("User declined package installation")

    monkeypatch.setitem(sys.modules, "slicer.packaging", types.SimpleNamespace(pip_ensure=pip_ensure))
    monkeypatch.setattr(slicer, "packaging", sys.modules["slicer.packaging"], raising=False)
    monkeypatch.setattr(widget.logic, "missingRequirements", lambda backend: ["keras>=3.3,<4"])
    pet, _ = add_phantom(module)
    widget.ui.inputVolumeSelector.userSets(pet)
    widget.ui.applyButton.click()
    assert asked == [(["keras<4,>=3.3"], module.MODULE_TITLE)]
    assert messages.confirmations == [] and "User declined" in messages.errors[-1]
    assert widget._job is None


def test_torch_backend_without_pytorch_says_how_to_get_it(module, widget, messages, monkeypatch):
    monkeypatch.setattr(support, "installed_version", lambda name: None)
    pet, _ = add_phantom(module)
    widget.ui.inputVolumeSelector.userSets(pet)
    widget.ui.kerasBackendComboBox.userSets("torch")
    widget.ui.applyButton.click()
    assert "PyTorch Util extension" in messages.errors[-1] and widget._job is None


def test_model_folder_can_be_chosen_with_a_file_dialog(module, widget, monkeypatch):
    monkeypatch.setattr(QFileDialogDouble, "chosenDirectory", "/data/models/amyloid")
    widget.ui.modelFolderBrowseButton.click()
    assert widget._parameterNode.modelFolder == "/data/models/amyloid"
    assert widget.ui.modelFolderLineEdit.text == "/data/models/amyloid"


def test_settings_live_in_the_scene_and_come_back_when_the_module_is_entered_again(module, widget):
    pet, labels = add_phantom(module)
    widget.ui.inputVolumeSelector.userSets(pet)
    widget.ui.methodComboBox.userSets("Iterative Yang (regions)")
    widget.exit()
    parameterNode = widget.logic.getParameterNode()
    parameterNode.labelVolume = labels
    widget.enter()
    assert widget.ui.methodComboBox.currentText == "Iterative Yang (regions)"
    assert widget.ui.labelVolumeSelector.currentNode() is labels and widget.ui.applyButton.enabled
