"""3D Slicer module: partial volume correction (PVC) of brain amyloid PET.

A thin face over ``PETPartialVolumeCorrectionLib``: the logic turns MRML volume nodes into arrays
plus geometry and back, runs the library (in a background ``pet-pvc`` process, or in this process),
and shows input | corrected | sharpen side by side. The logic holds no Qt objects, so it is
scriptable from Slicer's Python console::

    logic = slicer.util.getModuleLogic("PETPartialVolumeCorrection")
    corrected, sharpened = logic.process(getNode("PET"), device="cpu")
"""

import logging
import os
import shutil
import sys
from typing import Annotated, Optional, Union

import numpy as np
import qt
import vtk

import slicer
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from PETPartialVolumeCorrectionLib import slicer_support as support
from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.progress import ProcessingCancelled
from PETPartialVolumeCorrectionLib.quantification import TRACERS
from PETPartialVolumeCorrectionLib.quantification import tables as quantificationTables

MODULE_TITLE = "PET Partial Volume Correction"

#
# PETPartialVolumeCorrection
#


class PETPartialVolumeCorrection(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel and Help & Acknowledgement section."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = MODULE_TITLE
        self.parent.categories = ["Nuclear Medicine"]
        self.parent.dependencies = []
        self.parent.contributors = ["PETPartialVolumeCorrection contributors "
                                    "(https://github.com/PETPartialVolumeCorrection/SlicerPETPartialVolumeCorrection)"]
        self.parent.helpText = f"""
<p>Partial volume correction (PVC) of brain amyloid PET. PET's limited resolution (point spread
function, PSF, about 4-9 mm FWHM) spills activity across tissue borders, so thin grey matter (GM)
looks weaker than it is and white matter (WM) uptake leaks into it. PVC restores the regional
values.</p>
<p><b>Deep learning (no MRI needed)</b>: a 3D ResUNet maps the PET to its PVC version in seconds.
The image is resampled to a 1 mm 256<sup>3</sup> grid (field of view up to 256 mm: crop to the
head), min-max scaled and cropped at the 99th percentile as in training, corrected in overlapping
windows, and returned in the input's units, on that grid or on the input's grid. The
<i>sharpen</i> output is the baseline of the founding study (blur, then unsharp mask): it shows
that PVC is not mere sharpening.</p>
<p><b>Classical methods</b> (GTM, RBV, iterative Yang, Mueller-Gaertner, Van Cittert,
Richardson-Lucy) need the scanner's PSF FWHM and, except Van Cittert and Richardson-Lucy, a
segmentation or label map of the regions on the PET (usually from a co-registered MRI).</p>
<p><b>Limits</b>: {shippedModelSummary()} Results on other tracers, scanners or non-brain images
are not validated. <b>This is research software, not a medical device: not for diagnosis or
treatment.</b></p>
<p>Long runs work in a background process (Cancel stops it). The first run asks to install the
Python packages the module needs (TensorFlow or PyTorch with Keras 3).</p>
"""
        self.parent.acknowledgementText = """
<p>Follows the founding study "Partial Volume Effect Correction Algorithm from PET scan" (3D
ResUNet replacing SPM's GTM + Mueller-Gaertner; OHBM 2021). Classical methods as defined by
Rousset et al. 1998 (GTM, J Nucl Med 39:904), Mueller-Gaertner et al. 1992 (J Cereb Blood Flow
Metab 12:571), Thomas et al. 2011 (RBV, Eur J Nucl Med Mol Imaging 38:1104), Erlandsson et al. 2012
(iterative Yang, Phys Med Biol 57:R119) and matched against PETPVC (Thomas et al. 2016, Phys Med
Biol 61:7975). Built with 3D Slicer, Keras, TensorFlow, SimpleITK, SciPy and scikit-image.</p>
"""


def shippedModelSummary() -> str:
    """What the installed model was trained on, from its card."""
    from PETPartialVolumeCorrectionLib.model import default_model_dir, read_model_card

    folder = default_model_dir()
    if folder is None:
        return support.model_card_summary(None)
    try:
        return support.model_card_summary(read_model_card(folder))
    except PVCInputError as error:
        return f"The shipped model cannot be used: {error}."


#
# Parameter node
#

METHOD_CHOICES = list(support.METHOD_LABELS)


@parameterNodeWrapper
class PETPartialVolumeCorrectionParameterNode:
    """The module's settings, saved with the scene.

    inputVolume - the PET to correct (a 3D scalar volume, any units).
    correctedVolume, sharpenVolume - outputs; empty: new volumes are created on each Apply.
    method - a label of ``support.METHOD_LABELS``.
    labelVolume - regions for the classical methods (label map or segmentation on the PET).
    psfFwhmX/Y/Z - PSF full width at half maximum in mm along the image axes (classical methods).
    device, tilingMode, overlap, nativeGrid, cropFieldOfView, modelFolder, kerasBackend - deep learning.
    overlayOnInput - show the outputs over the input (input as background).
    quantify, tracer - after Apply, regional SUVR and Centiloid of input and correction (table, chart).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    correctedVolume: vtkMRMLScalarVolumeNode
    sharpenVolume: vtkMRMLScalarVolumeNode
    method: Annotated[str, Choice(METHOD_CHOICES)] = METHOD_CHOICES[0]
    labelVolume: Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode]
    psfFwhmX: Annotated[float, WithinRange(0.5, 20.0)] = 6.0
    psfFwhmY: Annotated[float, WithinRange(0.5, 20.0)] = 6.0
    psfFwhmZ: Annotated[float, WithinRange(0.5, 20.0)] = 6.0
    device: Annotated[str, Choice(list(support.DEVICES))] = "auto"
    tilingMode: Annotated[str, Choice(list(support.TILING_MODES))] = "gaussian"
    overlap: Annotated[int, WithinRange(0, 120)] = support.DEFAULT_OVERLAP_VOXELS
    nativeGrid: bool = False
    cropFieldOfView: bool = False
    modelFolder: str = ""
    kerasBackend: Annotated[str, Choice(list(support.KERAS_BACKENDS))] = "tensorflow"
    overlayOnInput: bool = False
    quantify: bool = False
    tracer: Annotated[str, Choice(list(TRACERS))] = "florbetapir"


#
# PETPartialVolumeCorrectionWidget
#


class PETPartialVolumeCorrectionWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: inputs, method, advanced settings, Apply/Cancel, progress and status."""

    #: Milliseconds between checks of the background worker's output.
    POLL_INTERVAL_MS = 200

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._pollTimer = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PETPartialVolumeCorrection.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = PETPartialVolumeCorrectionLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.modelFolderBrowseButton.connect("clicked(bool)", self.onBrowseModelFolder)

        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(self.POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self.onPollWorker)

        self._setRunning(False)
        self.initializeParameterNode()

    def cleanup(self):
        if self._job is not None:
            self._job.cancel()
            try:
                self._job.wait()  # removes the run's temporary folder
            except ProcessingCancelled:
                pass
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        # the GUI follows the parameter node again when the module is entered
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode and not firstVolumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None):
        """Show the settings that apply to the chosen method and say why Apply is disabled."""
        parameters = self._parameterNode
        if parameters is None:
            return
        options = self._methodOptions()
        deepLearning = options.method == support.DEEP_LEARNING
        self.ui.classicalCollapsibleButton.visible = not deepLearning
        self.ui.labelVolumeSelector.enabled = options.needs_labels
        self.ui.deepLearningCollapsibleButton.visible = deepLearning
        self.ui.sharpenVolumeSelector.enabled = deepLearning
        self.ui.overlapSpinBox.enabled = parameters.tilingMode == "gaussian"
        advice = self.logic.gpuAdvice(parameters.kerasBackend) if deepLearning and parameters.device != "cpu" else None
        self.ui.gpuAdviceLabel.text = advice or ""
        self.ui.gpuAdviceLabel.visible = advice is not None

        missing = self._missingInputReason()
        self.ui.applyButton.enabled = self._job is None and missing is None
        self.ui.applyButton.toolTip = missing or "Run the partial volume correction"

    def _methodOptions(self) -> support.CorrectionOptions:
        """The method-dependent part of the settings (no validation of the numbers)."""
        return support.CorrectionOptions(method=support.METHOD_LABELS[self._parameterNode.method])

    def _missingInputReason(self) -> Optional[str]:
        parameters = self._parameterNode
        if not parameters.inputVolume:
            return "Select an input PET volume"
        if self._methodOptions().needs_labels and not parameters.labelVolume:
            return "Select a segmentation or label map of the regions (this method needs regions)"
        return None

    def correctionOptions(self) -> dict:
        """The settings of the panel as keyword arguments of the logic's ``process``."""
        parameters = self._parameterNode
        return {
            "method": support.METHOD_LABELS[parameters.method],
            "device": parameters.device,
            "mode": parameters.tilingMode,
            "overlap": parameters.overlap if parameters.tilingMode == "gaussian" else None,
            "output_grid": "native" if parameters.nativeGrid else "standard",
            "crop_fov": parameters.cropFieldOfView,
            "model_folder": parameters.modelFolder.strip() or None,
            "fwhm_mm": (parameters.psfFwhmX, parameters.psfFwhmY, parameters.psfFwhmZ),
            "keras_backend": parameters.kerasBackend,
        }

    def onApplyButton(self):
        parameters = self._parameterNode
        options = self.correctionOptions()
        try:
            self._job = self.logic.startProcessing(
                parameters.inputVolume, parameters.correctedVolume, parameters.sharpenVolume,
                labelNode=parameters.labelVolume, overlay=parameters.overlayOnInput, **options)
        except (PVCInputError, support.DependencyError) as error:
            self._showError(str(error))
            return
        except Exception as error:
            logging.exception("PET partial volume correction could not start")
            self._showError(f"Could not start the correction: {error}")
            return
        self._setRunning(True)
        self.onProgress(0.0, "Starting the worker process")
        self._pollTimer.start()

    def onCancelButton(self):
        if self._job is not None:
            self.ui.statusLabel.text = "Cancelling..."
            self._job.cancel()

    def onPollWorker(self):
        """Hand the worker's progress to the GUI; when it has ended, load and show the results."""
        if self._job is None or not self._job.poll(self.onProgress):
            return
        self._pollTimer.stop()
        job, self._job = self._job, None
        try:
            corrected, sharpened = job.finish()
            names = ", ".join(node.GetName() for node in (corrected, sharpened) if node is not None)
            self.ui.statusLabel.text = "\n".join([f"Done: {names}"] + [f"Warning: {w}" for w in job.warnings])
            self.ui.progressBar.value = 100
            if self._parameterNode.quantify:
                self.showQuantification(corrected)
        except ProcessingCancelled:
            self.ui.statusLabel.text = "Cancelled"
        except PVCInputError as error:
            self._showError(str(error))
        except Exception as error:
            logging.exception("PET partial volume correction failed")
            self._showError(f"The correction failed: {error}")
        finally:
            self._setRunning(False)

    def showQuantification(self, correctedVolumeNode):
        """Quantify input and correction (in this process); fill the table, the chart and the panel."""
        parameters = self._parameterNode
        method = support.METHOD_LABELS[parameters.method]
        try:
            result = self.logic.quantify(parameters.inputVolume, correctedVolumeNode, tracer=parameters.tracer,
                                         correctionName="network" if method == support.DEEP_LEARNING else method)
        except PVCInputError as error:
            self.ui.quantificationLabel.text = f"Not quantified: {error}"
            return
        _, chartNode = self.logic.showQuantification(result)
        self.ui.quantificationLabel.text = quantificationTables.summary_text(result)
        slicer.modules.plots.logic().ShowChartInLayout(chartNode)

    def onProgress(self, fraction: float, message: str):
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message

    def onBrowseModelFolder(self):
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), "Model folder (model.weights.h5 + model_card.json)")
        if folder:
            self._parameterNode.modelFolder = folder

    def _setRunning(self, running: bool):
        self.ui.cancelButton.enabled = running
        self.ui.progressBar.visible = running
        if self._parameterNode is not None:
            self.updateGUIFromParameterNode()

    def _showError(self, message: str):
        self.ui.statusLabel.text = message
        slicer.util.errorDisplay(message, windowTitle=MODULE_TITLE)


#
# PETPartialVolumeCorrectionLogic
#


class PETPartialVolumeCorrectionJob:
    """One correction of volume nodes running in a background process.

    Call :meth:`poll` (e.g. from a timer) until it returns True, then :meth:`finish`, which puts the
    results into the output nodes (created when None) and shows them; or :meth:`wait` for both.
    """

    def __init__(self, logic, background: support.BackgroundCorrection, inputVolumeNode,
                 correctedVolumeNode, sharpenVolumeNode, labelNode, showResult: bool, overlay: bool):
        self.logic = logic
        self.background = background
        self.inputVolumeNode = inputVolumeNode
        self.correctedVolumeNode = correctedVolumeNode
        self.sharpenVolumeNode = sharpenVolumeNode
        self.labelNode = labelNode
        self.showResult = showResult
        self.overlay = overlay
        self.warnings = []

    def poll(self, progress=None) -> bool:
        return self.background.poll(progress)

    def cancel(self):
        self.background.cancel()

    def finish(self):
        """Load the results into the output nodes; returns (corrected node, sharpen node or None)."""
        outputs = self.background.outputs()
        self.warnings = outputs.record.get("warnings", [])
        return self.logic.storeOutputs(outputs, self.inputVolumeNode, self.correctedVolumeNode,
                                       self.sharpenVolumeNode, self.background.options, self.labelNode,
                                       self.showResult, self.overlay)

    def wait(self, progress=None, cancel=None):
        self.background.worker.wait(progress, cancel)
        return self.finish()


class PETPartialVolumeCorrectionLogic(ScriptedLoadableModuleLogic):
    """Node <-> array conversion, running the library, showing the results; no GUI objects."""

    #: A layout id of our own (Slicer's built-in layouts use small numbers).
    LAYOUT_ID = 8642
    VIEW_NAMES = ("PETPVCInput", "PETPVCCorrected", "PETPVCSharpen")
    VIEW_LABELS = ("Input", "PVC", "Sharpen")
    PET_COLOR_NODE_ID = "vtkMRMLPETProceduralColorNodePET-Heat"
    #: Foreground opacity of an output shown over the input.
    OVERLAY_OPACITY = 0.5

    def getParameterNode(self):
        return PETPartialVolumeCorrectionParameterNode(super().getParameterNode())

    # --- nodes <-> arrays -------------------------------------------------------------------------

    @staticmethod
    def ijkToWorldMatrix(volumeNode) -> np.ndarray:
        """The 4x4 matrix from voxel (i, j, k) to world RAS, parent transforms included.

        Raises :class:`PVCInputError` when the volume is under a non-linear transform.
        """
        ijkToRAS = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRAS)
        matrix = slicer.util.arrayFromVTKMatrix(ijkToRAS)
        transformNode = volumeNode.GetParentTransformNode()
        if transformNode is not None:
            if not transformNode.IsTransformToWorldLinear():
                raise PVCInputError(f"{volumeNode.GetName()} is under a non-linear transform; harden it "
                                    "first (Transforms module, Harden transform)")
            toWorld = vtk.vtkMatrix4x4()
            transformNode.GetMatrixTransformToWorld(toWorld)
            matrix = slicer.util.arrayFromVTKMatrix(toWorld) @ matrix
        return matrix

    @classmethod
    def arrayAndGeometryFromVolumeNode(cls, volumeNode):
        """The voxels (float32 ``[z, y, x]``, copied) and world geometry (LPS) of a scalar volume.

        Raises :class:`PVCInputError` for no volume, no voxels, vector or 4D (multi-frame) volumes.
        """
        if volumeNode is None:
            raise PVCInputError("no input volume: select the PET volume to correct")
        if not volumeNode.IsA("vtkMRMLScalarVolumeNode"):
            raise PVCInputError(f"{volumeNode.GetName()} is not a scalar volume; select a PET image volume")
        imageData = volumeNode.GetImageData()
        if imageData is None or imageData.GetNumberOfPoints() == 0:
            raise PVCInputError(f"{volumeNode.GetName()} has no voxels; load the PET image first")
        components = imageData.GetNumberOfScalarComponents()
        if components != 1:
            raise PVCInputError(f"{volumeNode.GetName()} has {components} values per voxel (a 4D or "
                                "vector volume); select a single 3D frame (e.g. from the Sequences module)")
        volume = np.array(slicer.util.arrayFromVolume(volumeNode), dtype=np.float32)
        return volume, support.geometry_from_ijk_to_ras(cls.ijkToWorldMatrix(volumeNode))

    @staticmethod
    def updateVolumeNodeFromArray(volumeNode, volume: np.ndarray, geometry):
        """Set a volume node's voxels (``[z, y, x]``) and IJK-to-RAS from ``geometry`` (LPS); the node
        is taken out of any transform, so it lies where ``geometry`` says in world coordinates."""
        slicer.util.updateVolumeFromArray(volumeNode, volume)
        volumeNode.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(support.ijk_to_ras_from_geometry(geometry)))
        volumeNode.SetAndObserveTransformNodeID(None)
        if volumeNode.GetDisplayNode() is None:
            volumeNode.CreateDefaultDisplayNodes()

    @classmethod
    def addVolumeNode(cls, scene, volume: np.ndarray, geometry, name: str,
                      className: str = "vtkMRMLScalarVolumeNode"):
        """A new volume node in ``scene`` holding ``volume`` on ``geometry``."""
        volumeNode = scene.AddNewNodeByClass(className, scene.GenerateUniqueName(name))
        cls.updateVolumeNodeFromArray(volumeNode, volume, geometry)
        return volumeNode

    @classmethod
    def labelsAndGeometryFromNode(cls, labelNode, referenceVolumeNode):
        """Region numbers (int ``[z, y, x]``) and geometry from a label map, or from a segmentation
        (visible segments numbered 1, 2, ... in their order, on the reference volume's grid)."""
        if labelNode is None:
            raise PVCInputError("this method needs regions: select a segmentation or label map")
        if labelNode.IsA("vtkMRMLSegmentationNode"):
            scene = referenceVolumeNode.GetScene()
            labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
            try:
                if not slicer.vtkSlicerSegmentationsModuleLogic.ExportVisibleSegmentsToLabelmapNode(
                        labelNode, labelmap, referenceVolumeNode):
                    raise PVCInputError(f"{labelNode.GetName()}: no visible segment could be exported")
                return cls.labelsAndGeometryFromNode(labelmap, referenceVolumeNode)
            finally:
                scene.RemoveNode(labelmap)
        if labelNode.GetImageData() is None:
            raise PVCInputError(f"{labelNode.GetName()} has no voxels")
        labels = np.array(slicer.util.arrayFromVolume(labelNode), dtype=np.int32)
        return labels, support.geometry_from_ijk_to_ras(cls.ijkToWorldMatrix(labelNode))

    @staticmethod
    def labelNamesFromNode(labelNode) -> dict:
        """Region names by label number: a segmentation's visible segments (1, 2, ... in their
        order, as :meth:`labelsAndGeometryFromNode` numbers them), or the names a label map's colour
        table gives its labels. FreeSurfer names (or GM/WM/CSF) there give MG its tissue classes."""
        if labelNode is None:
            return {}
        if labelNode.IsA("vtkMRMLSegmentationNode"):
            segmentIds = vtk.vtkStringArray()
            labelNode.GetDisplayNode().GetVisibleSegmentIDs(segmentIds)
            segmentation = labelNode.GetSegmentation()
            return {n + 1: segmentation.GetSegment(segmentIds.GetValue(n)).GetName()
                    for n in range(segmentIds.GetNumberOfValues())}
        displayNode = labelNode.GetDisplayNode()
        colorNode = displayNode.GetColorNode() if displayNode is not None else None
        if colorNode is None or labelNode.GetImageData() is None:
            return {}
        present = np.unique(slicer.util.arrayFromVolume(labelNode))
        names = {int(value): colorNode.GetColorName(int(value)) for value in present if value > 0}
        return {value: name for value, name in names.items() if name and name != "(none)"}

    # --- processing -------------------------------------------------------------------------------

    def process(self, inputVolumeNode, correctedVolumeNode=None, sharpenVolumeNode=None, *,
                labelNode=None, inProcess: bool = False, showResult: bool = True, overlay: bool = False,
                progress=None, cancel=None, **options):
        """Correct ``inputVolumeNode``; returns (corrected node, sharpen node or None).

        Args:
            correctedVolumeNode, sharpenVolumeNode: output nodes, created when None (the sharpen
                baseline only for deep learning).
            labelNode: label map or segmentation of the regions (classical methods that need them).
            inProcess: run the library in this process (blocks Slicer) instead of a background
                ``pet-pvc`` process (the GUI stays responsive, cancel ends the process).
            showResult: show input | corrected | sharpen side by side.
            overlay: show each output over the input (input as background).
            progress: ``progress(fraction, message)``; cancel: ``cancel() -> bool``.
            options: :class:`support.CorrectionOptions` fields (method, device, mode, overlap,
                output_grid, crop_fov, model_folder, fwhm_mm, keras_backend).
        """
        if not inProcess:
            job = self.startProcessing(inputVolumeNode, correctedVolumeNode, sharpenVolumeNode,
                                       labelNode=labelNode, showResult=showResult, overlay=overlay, **options)
            return job.wait(progress, cancel)
        correctionOptions = support.CorrectionOptions(**options)
        self.ensureDependencies(self._kerasBackend(correctionOptions))
        volume, geometry = self.arrayAndGeometryFromVolumeNode(inputVolumeNode)
        labels, labelGeometry = self._labelsIfNeeded(correctionOptions, labelNode, inputVolumeNode)
        outputs = support.run_in_process(volume, geometry, correctionOptions, labels=labels,
                                         label_geometry=labelGeometry, label_names=self.labelNamesFromNode(labelNode),
                                         progress=progress, cancel=cancel)
        return self.storeOutputs(outputs, inputVolumeNode, correctedVolumeNode, sharpenVolumeNode,
                                 correctionOptions, labelNode, showResult, overlay)

    def startProcessing(self, inputVolumeNode, correctedVolumeNode=None, sharpenVolumeNode=None, *,
                        labelNode=None, showResult: bool = True, overlay: bool = False,
                        **options) -> PETPartialVolumeCorrectionJob:
        """Start the correction in a background ``pet-pvc`` process (after installing the Python
        packages it needs, if the user agrees); returns the job to poll."""
        correctionOptions = support.CorrectionOptions(**options)
        self.ensureDependencies(self._kerasBackend(correctionOptions))
        volume, geometry = self.arrayAndGeometryFromVolumeNode(inputVolumeNode)
        labels, labelGeometry = self._labelsIfNeeded(correctionOptions, labelNode, inputVolumeNode)
        background = support.BackgroundCorrection(volume, geometry, correctionOptions, labels=labels,
                                                  label_geometry=labelGeometry,
                                                  label_names=self.labelNamesFromNode(labelNode),
                                                  python_executable=self.workerPythonExecutable())
        return PETPartialVolumeCorrectionJob(self, background, inputVolumeNode, correctedVolumeNode,
                                             sharpenVolumeNode, labelNode, showResult, overlay)

    @staticmethod
    def _kerasBackend(options) -> Optional[str]:
        """The Keras backend a run needs (None: no deep learning)."""
        return options.keras_backend if options.method == support.DEEP_LEARNING else None

    def _labelsIfNeeded(self, options, labelNode, inputVolumeNode):
        if not options.needs_labels:
            return None, None
        return self.labelsAndGeometryFromNode(labelNode, inputVolumeNode)

    @staticmethod
    def workerPythonExecutable() -> str:
        """PythonSlicer inside the Slicer application (whose own executable is the GUI), else the
        running Python (PythonSlicer itself, or a plain Python with slicer-core)."""
        if hasattr(slicer, "app"):
            pythonSlicer = shutil.which("PythonSlicer")
            if pythonSlicer is None:
                raise RuntimeError("PythonSlicer was not found on the PATH of this Slicer")
            return pythonSlicer
        return sys.executable

    def quantify(self, inputVolumeNode, correctedVolumeNode=None, *, tracer: Optional[str] = None,
                 correctionName: str = "network", **options):
        """Regional SUVR and Centiloid of the input and its correction, from the PET alone (in this
        process, seconds); ``options`` are those of the library's ``quantify_volume``."""
        from PETPartialVolumeCorrectionLib.quantification import quantify_volume

        volume, geometry = self.arrayAndGeometryFromVolumeNode(inputVolumeNode)
        corrected = {}
        if correctedVolumeNode is not None:
            corrected[correctionName] = self.arrayAndGeometryFromVolumeNode(correctedVolumeNode)
        return quantify_volume(volume, geometry, corrected, tracer=tracer, **options)

    #: Bar colours of the chart's series (RGB 0-1): the input grey, the corrections orange, blue.
    SERIES_COLORS = ((0.55, 0.55, 0.55), (0.95, 0.55, 0.1), (0.2, 0.45, 0.8))

    def showQuantification(self, result, scene=None, name: str = "Amyloid SUVR"):
        """A table node (regions x SUVR per image and differences) and a bar chart of regional SUVR
        per image (plot series on that table); returns ``(tableNode, chartNode)``."""
        scene = scene or slicer.mrmlScene
        tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
        for columnName, values in quantificationTables.table_columns(result):
            column = vtk.vtkStringArray() if isinstance(values[0], str) else vtk.vtkDoubleArray()
            column.SetName(columnName)
            for value in values:
                column.InsertNextValue(value)
            tableNode.AddColumn(column)
        chartNode = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(f"{name} chart"))
        chartNode.SetTitle("Regional SUVR (PET-only normalisation)")
        chartNode.SetXAxisTitle("Region")
        chartNode.SetYAxisTitle(f"SUVR (reference: {result.reference.replace('_', ' ')})")
        for index, (seriesName, columnName) in enumerate(quantificationTables.chart_series(result).items()):
            seriesNode = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(seriesName))
            seriesNode.SetAndObserveTableNodeID(tableNode.GetID())
            seriesNode.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeBar)
            seriesNode.SetLabelColumnName(quantificationTables.REGION_COLUMN)
            seriesNode.SetYColumnName(columnName)
            seriesNode.SetColor(*self.SERIES_COLORS[index % len(self.SERIES_COLORS)])
            chartNode.AddAndObservePlotSeriesNodeID(seriesNode.GetID())
        return tableNode, chartNode

    def storeOutputs(self, outputs: support.CorrectionOutputs, inputVolumeNode, correctedVolumeNode,
                     sharpenVolumeNode, options, labelNode=None, showResult: bool = True, overlay: bool = False):
        """Put a run's outputs into nodes (created when None); returns (corrected, sharpen or None)."""
        for warning in outputs.record.get("warnings", []):
            logging.warning("%s: %s", MODULE_TITLE, warning)
        scene = inputVolumeNode.GetScene()
        suffix = "PVC" if options.method == support.DEEP_LEARNING else options.method.upper().replace("+", "_")
        if correctedVolumeNode is None:
            correctedVolumeNode = scene.AddNewNodeByClass(
                "vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(f"{inputVolumeNode.GetName()}_{suffix}"))
        self.updateVolumeNodeFromArray(correctedVolumeNode, outputs.corrected, outputs.geometry)
        self._copyUnits(inputVolumeNode, correctedVolumeNode)
        if outputs.sharpened is None:
            sharpenVolumeNode = None
        else:
            if sharpenVolumeNode is None:
                sharpenVolumeNode = scene.AddNewNodeByClass(
                    "vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(f"{inputVolumeNode.GetName()}_sharpen"))
            self.updateVolumeNodeFromArray(sharpenVolumeNode, outputs.sharpened, outputs.geometry)
            self._copyUnits(inputVolumeNode, sharpenVolumeNode)
        if showResult:
            self.showResults(inputVolumeNode, correctedVolumeNode, sharpenVolumeNode, labelNode, overlay)
        return correctedVolumeNode, sharpenVolumeNode

    @staticmethod
    def _copyUnits(sourceNode, targetNode):
        """The outputs are in the input's units (Bq/mL, SUV, ...)."""
        targetNode.SetVoxelValueQuantity(sourceNode.GetVoxelValueQuantity())
        targetNode.SetVoxelValueUnits(sourceNode.GetVoxelValueUnits())

    # --- display ----------------------------------------------------------------------------------

    def layoutDescription(self) -> str:
        """Three axial slice views side by side, in one view group (linked)."""
        views = "".join(f"""
 <item><view class="vtkMRMLSliceNode" singletontag="{name}">
  <property name="orientation" action="default">Axial</property>
  <property name="viewlabel" action="default">{label}</property>
  <property name="viewcolor" action="default">{color}</property>
  <property name="viewgroup" action="default">0</property>
 </view></item>""" for name, label, color in zip(self.VIEW_NAMES, self.VIEW_LABELS,
                                              ("#F34A33", "#EDD54C", "#6EB04B")))
        return f'<layout type="horizontal">{views}\n</layout>'

    def showResults(self, inputVolumeNode, correctedVolumeNode, sharpenVolumeNode=None, labelNode=None,
                    overlay: bool = False):
        """Input | corrected | sharpen side by side, slices linked, one PET colour map and one
        window/level for all; with ``overlay`` each output is shown over the input (as background).
        Without a sharpen volume the third view shows the input with the label map, if one is given."""
        scene = inputVolumeNode.GetScene()
        volumes = [node for node in (inputVolumeNode, correctedVolumeNode, sharpenVolumeNode) if node is not None]
        low, high = support.shared_display_range([slicer.util.arrayFromVolume(node) for node in volumes])
        colorNode = scene.GetNodeByID(self.PET_COLOR_NODE_ID)
        if colorNode is None:
            logging.warning("PET colour map %s is not in the scene; keeping the current colours", self.PET_COLOR_NODE_ID)
        for node in volumes:
            if node.GetDisplayNode() is None:
                node.CreateDefaultDisplayNodes()
            displayNode = node.GetDisplayNode()
            if colorNode is not None:
                displayNode.SetAndObserveColorNodeID(colorNode.GetID())
            displayNode.AutoWindowLevelOff()
            displayNode.SetWindowLevelMinMax(low, high)

        layoutNode = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
        if layoutNode is None:
            return  # no views (e.g. PythonSlicer without the application)
        if not layoutNode.IsLayoutDescription(self.LAYOUT_ID):
            layoutNode.AddLayoutDescription(self.LAYOUT_ID, self.layoutDescription())
        layoutNode.SetViewArrangement(self.LAYOUT_ID)

        labelVolumeNode = labelNode if labelNode is not None and labelNode.IsA("vtkMRMLLabelMapVolumeNode") else None
        background = inputVolumeNode if overlay else None
        views = [(inputVolumeNode, None, None),
                 (background or correctedVolumeNode, correctedVolumeNode if overlay else None, None)]
        if sharpenVolumeNode is not None:
            views.append((background or sharpenVolumeNode, sharpenVolumeNode if overlay else None, None))
        else:
            views.append((inputVolumeNode, None, labelVolumeNode))
        for viewName, (backgroundNode, foregroundNode, labelsNode) in zip(self.VIEW_NAMES, views):
            compositeNode = self.sliceCompositeNode(scene, viewName)
            if compositeNode is None:
                logging.warning("slice view %s was not created by the application", viewName)
                continue
            compositeNode.SetBackgroundVolumeID(backgroundNode.GetID())
            compositeNode.SetForegroundVolumeID(foregroundNode.GetID() if foregroundNode else None)
            compositeNode.SetForegroundOpacity(self.OVERLAY_OPACITY if foregroundNode else 0.0)
            compositeNode.SetLabelVolumeID(labelsNode.GetID() if labelsNode else None)
            compositeNode.SetLinkedControl(True)
            compositeNode.SetHotLinkedControl(True)
        if hasattr(slicer, "app"):
            slicer.util.resetSliceViews()

    @staticmethod
    def sliceCompositeNode(scene, viewName):
        """The slice composite node of a view (None when the view does not exist)."""
        className = "vtkMRMLSliceCompositeNode"
        for index in range(scene.GetNumberOfNodesByClass(className)):
            compositeNode = scene.GetNthNodeByClass(index, className)
            if compositeNode.GetLayoutName() == viewName:
                return compositeNode
        return None

    # --- dependencies -----------------------------------------------------------------------------

    @staticmethod
    def requirementsPath() -> str:
        """``requirements.txt``: in the module's Resources once built or installed, in the extension's
        top-level Resources in the source tree."""
        return resourceFile("requirements.txt")

    def missingRequirements(self, kerasBackend: Optional[str] = "tensorflow") -> list:
        """Requirement strings not installed in Slicer's Python (``kerasBackend`` None: no deep learning)."""
        with open(self.requirementsPath()) as handle:
            requirements = support.requirements_for_environment(handle.read(), keras_backend=kerasBackend)
        return support.unsatisfied_requirements(requirements)

    def ensureDependencies(self, kerasBackend: Optional[str] = "tensorflow"):
        """Install the missing Python packages after asking (Slicer >= 5.12: slicer.packaging's
        pip_ensure, which asks; older: a confirmation, then slicer.util.pip_install).

        Raises :class:`support.DependencyError` when the user declines or the backend is missing.
        """
        if kerasBackend == "torch" and support.installed_version("torch") is None:
            raise support.DependencyError(support.gpu_advice("torch"))
        missing = self.missingRequirements(kerasBackend)
        if not missing:
            return
        try:
            import slicer.packaging as packaging
            ensure = packaging.pip_ensure
        except (ImportError, AttributeError):
            ensure = None
        if ensure is not None:
            from packaging.requirements import Requirement

            try:
                ensure([Requirement(text) for text in missing], requester=MODULE_TITLE)
            except RuntimeError as error:
                raise support.DependencyError(f"Python packages not installed ({error}): {', '.join(missing)}")
            return
        if not slicer.util.confirmOkCancelDisplay(
                f"{MODULE_TITLE} needs these Python packages, which will be installed now (this may take "
                "several minutes):\n\n" + "\n".join(missing), windowTitle=MODULE_TITLE):
            raise support.DependencyError("the module cannot run without these Python packages: " + ", ".join(missing))
        slicer.util.pip_install(missing)

    @staticmethod
    def gpuAdvice(kerasBackend: str = "tensorflow") -> Optional[str]:
        """What stands in the way of GPU computing, and what to do (None: nothing)."""
        return support.gpu_advice(kerasBackend)


def resourceFile(relativePath: str) -> str:
    """A file of the module's Resources (built/installed tree), or of the extension's top-level
    Resources (source tree, where the module folder has only UI and Icons)."""
    moduleFolder = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(moduleFolder, "Resources", relativePath),
                  os.path.join(os.path.dirname(moduleFolder), "Resources", relativePath)]
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(f"{relativePath} is in neither of {candidates}")


#
# PETPartialVolumeCorrectionTest
#


class PETPartialVolumeCorrectionTest(ScriptedLoadableModuleTest):
    """Self-test on a synthetic amyloid-like phantom (no download)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_PhantomCorrection()

    def chooseMethod(self, logic) -> tuple:
        """The method and the reference it must come closer to than the input: deep learning with the
        shipped model (when it and its packages are installed) against the phantom's MG target, the
        correction the network is trained to reproduce; else RBV with the phantom's own labels and PSF
        against the true activity (logged)."""
        from PETPartialVolumeCorrectionLib.model import default_model_dir

        if default_model_dir() is not None and not logic.missingRequirements("tensorflow"):
            logging.info("Self-test: deep learning with the shipped model, scored against the phantom's "
                         "MG target (GTM + Mueller-Gaertner with its own tissue labels)")
            return {"method": support.DEEP_LEARNING, "output_grid": "native", "device": "cpu"}, "MG target"
        logging.info("Self-test: no shipped model (or its Python packages) installed; "
                     "testing the classical RBV method with the phantom's own labels")
        return {"method": "rbv"}, "true activity"

    def test_PhantomCorrection(self):
        self.delayDisplay("Building a synthetic amyloid phantom")
        phantom = support.amyloid_phantom()
        logic = PETPartialVolumeCorrectionLogic()
        scene = slicer.mrmlScene
        petNode = logic.addVolumeNode(scene, phantom["pet"], phantom["geometry"], "phantom PET")
        labelNode = logic.addVolumeNode(scene, phantom["labels"], phantom["geometry"], "phantom labels",
                                        "vtkMRMLLabelMapVolumeNode")
        options, referenceName = self.chooseMethod(logic)
        reference = support.phantom_mg_target(phantom) if referenceName == "MG target" else phantom["truth"]

        self.delayDisplay(f"Correcting with {options['method']}")
        correctedNode, _ = logic.process(petNode, labelNode=labelNode, fwhm_mm=phantom["fwhm_mm"], **options)

        self.assertEqual(correctedNode.GetImageData().GetDimensions(), petNode.GetImageData().GetDimensions())
        np.testing.assert_allclose(logic.ijkToWorldMatrix(correctedNode), logic.ijkToWorldMatrix(petNode), atol=1e-4)
        corrected = slicer.util.arrayFromVolume(correctedNode)
        self.assertTrue(np.all(np.isfinite(corrected)))
        brain = np.isin(phantom["labels"], (1, 2, 3))
        errorBefore = float(np.sqrt(np.mean((phantom["pet"][brain] - reference[brain]) ** 2)))
        errorAfter = float(np.sqrt(np.mean((corrected[brain] - reference[brain]) ** 2)))
        logging.info(f"Self-test: RMSE to the {referenceName} in the brain {errorBefore:.4f} -> {errorAfter:.4f}")
        self.assertLess(errorAfter, errorBefore)
        self.delayDisplay("Test passed")
