"""Test doubles for the parts of 3D Slicer that exist only inside the Slicer application.

``slicer-core`` (PyPI) gives the real MRML scene, nodes, storage nodes and logics, used as they are.
What it lacks is the GUI side: Qt and its widgets, ``slicer.app`` (and its layout manager, which
creates a slice logic for every slice view of a layout), ``ScriptedLoadableModule`` and the
parameter node wrapper's GUI connections. The doubles below stand in for those, small and only as
far as the module uses them:

- :class:`FakeWidget` objects built from the module's real ``.ui`` file (class, name, properties);
  tests act as the user through :meth:`FakeWidget.click` and :meth:`FakeWidget.userSets`.
- :func:`parameterNodeWrapper`: typed fields stored in a real ``vtkMRMLScriptedModuleNode``, with
  ``connectGui`` that binds widgets by their ``SlicerParameterName`` and refuses a widget class
  Slicer's own connectors cannot bind (same table as Slicer's guiConnectors).
- :class:`SlicerApplicationDouble` with a :class:`LayoutManagerDouble` that, like Slicer's layout
  manager, creates a real ``vtkMRMLSliceLogic`` (hence the slice composite node) for every slice
  view a layout adds, sized as its widget, and fits the views as Slicer's ``resetSliceViews``.
- :class:`OffscreenSliceViews`: what the slice widgets draw (the slice logics' images, the
  controller bars, the layer names) in an offscreen OSMesa window, read back as pixels or a PNG.
"""

from __future__ import annotations

import builtins
import dataclasses
import importlib.util
import inspect
import logging
import os
import sys
import types
import typing
import unittest
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import slicer
import slicer.util
import vtk

MODULE_FILE = Path(__file__).resolve().parents[1] / "PETPartialVolumeCorrection" / "PETPartialVolumeCorrection.py"
UI_FILE = MODULE_FILE.parent / "Resources" / "UI" / "PETPartialVolumeCorrection.ui"


# --- Qt widgets ---------------------------------------------------------------------------------

#: Per widget class: the attribute holding its value and the signal a user change emits.
VALUE_SIGNALS = {
    "QCheckBox": ("checked", "toggled(bool)"),
    "QComboBox": ("currentIndex", "currentIndexChanged(int)"),
    "QSpinBox": ("value", "valueChanged(int)"),
    "QDoubleSpinBox": ("value", "valueChanged(double)"),
    "QLineEdit": ("text", "textChanged(QString)"),
    "qMRMLNodeComboBox": ("currentNodeValue", "currentNodeChanged(vtkMRMLNode*)"),
}


def _property_value(element):
    child = element[0]
    if child.tag == "bool":
        return child.text == "true"
    if child.tag == "number":
        return int(child.text)
    if child.tag == "double":
        return float(child.text)
    if child.tag == "stringlist":
        return [item.text for item in child]
    return child.text if child.text is not None else ""


def _positional_parameter_count(function, at_most: int) -> int:
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return at_most
    return min(at_most, sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters))


class FakeWidget:
    """A widget of a ``.ui`` file: its class name, object name, properties and signal connections."""

    def __init__(self, className: str, objectName: str, properties: dict):
        self.className = className
        self.objectName = objectName
        self.dynamicProperties = {}
        self.enabled = True
        self.visible = True
        self.toolTip = ""
        self.text = ""
        self.value = 0
        self.checked = False
        self.currentIndex = -1
        self.items = []
        self.currentNodeValue = None
        self.mrmlScene = None
        self.sceneReceivers = []
        self._connections = {}
        for name, value in properties.items():
            setattr(self, name, value)

    def property(self, name):
        return self.dynamicProperties.get(name)

    def connect(self, signal: str, slot) -> None:
        self._connections.setdefault(signal, []).append(slot)

    def disconnect(self, signal: str, slot) -> None:
        self._connections[signal].remove(slot)

    def emit(self, signal: str, *arguments) -> None:
        """Call the connected slots; as PythonQt does, a slot may take fewer arguments than the signal."""
        for slot in list(self._connections.get(signal, [])):
            slot(*arguments[:_positional_parameter_count(slot, len(arguments))])

    def connectedSignals(self) -> set:
        return {signal for signal, slots in self._connections.items() if slots}

    # QComboBox
    def addItem(self, text):
        self.items.append(text)
        if self.currentIndex < 0:
            self.currentIndex = 0

    def clear(self):
        self.items, self.currentIndex = [], -1

    @builtins.property  # the class's own property() is Qt's QObject.property
    def currentText(self):
        return self.items[self.currentIndex] if 0 <= self.currentIndex < len(self.items) else ""

    # qMRMLNodeComboBox and qMRMLWidget
    def currentNode(self):
        return self.currentNodeValue

    def setCurrentNode(self, node):
        self.currentNodeValue = node

    def setMRMLScene(self, scene):
        self.mrmlScene = scene
        for receiver in self.sceneReceivers:
            receiver.setMRMLScene(scene)

    # the user
    def click(self):
        assert self.enabled and self.visible, f"{self.objectName} cannot be clicked now"
        self.emit("clicked(bool)", False)

    def userSets(self, value):
        """Change the widget's value as a user would (emits the class's change signal)."""
        attribute, signal = VALUE_SIGNALS[self.className]
        if self.className == "QComboBox":
            value = self.items.index(value)
        setattr(self, attribute, value)
        self.emit(signal, value)


class LayoutDouble:
    def __init__(self):
        self.widgets = []

    def addWidget(self, widget):
        self.widgets.append(widget)

    def addStretch(self, stretch=0):
        pass


def load_ui(path) -> FakeWidget:
    """The root widget of a ``.ui`` file, with every child widget as ``root.children[name]``."""
    root_element = ElementTree.parse(path).getroot().find("widget")
    widgets = {}
    for element in root_element.iter("widget"):
        properties = {}
        dynamic = {}
        for prop in element.findall("property"):
            target = dynamic if prop.get("stdset") == "0" else properties
            target[prop.get("name")] = _property_value(prop)
        widget = FakeWidget(element.get("class"), element.get("name"), properties)
        widget.dynamicProperties = dynamic
        widgets[widget.objectName] = widget
    root = widgets[root_element.get("name")]
    for connection in ElementTree.parse(path).getroot().iter("connection"):
        if connection.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)":
            widgets[connection.findtext("sender")].sceneReceivers.append(widgets[connection.findtext("receiver")])
    root.children = widgets
    return root


def child_widget_variables(root: FakeWidget):
    return types.SimpleNamespace(**{name: w for name, w in root.children.items() if w is not root})


class QTimerDouble:
    """A timer that fires when the test calls :meth:`fire`."""

    def __init__(self):
        self.interval = 0
        self.active = False
        self._slots = []

    def setInterval(self, milliseconds):
        self.interval = milliseconds

    def connect(self, signal, slot):
        assert signal == "timeout()"
        self._slots.append(slot)

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def fire(self):
        for slot in list(self._slots):
            slot()


class QFileDialogDouble:
    chosenDirectory = ""

    @classmethod
    def getExistingDirectory(cls, parent=None, caption="", directory=""):
        return cls.chosenDirectory


def qt_module():
    module = types.ModuleType("qt")
    module.QTimer = QTimerDouble
    module.QFileDialog = QFileDialogDouble
    return module


# --- the parameter node wrapper -----------------------------------------------------------------

@dataclasses.dataclass
class Choice:
    choices: list


@dataclasses.dataclass
class WithinRange:
    minimum: float
    maximum: float


#: The widget classes Slicer's guiConnectors can bind to each kind of parameter.
CONNECTABLE_WIDGETS = {
    "bool": {"QCheckBox", "QPushButton"},
    "int": {"QSpinBox", "QSlider"},
    "float": {"QDoubleSpinBox", "ctkSliderWidget"},
    "choice": {"QComboBox"},
    "str": {"QLineEdit", "QTextEdit"},
    "node": {"qMRMLNodeComboBox"},
}


@dataclasses.dataclass
class ParameterField:
    name: str
    base: object
    annotations: tuple
    default: object

    @property
    def nodeClasses(self):
        members = typing.get_args(self.base) if typing.get_origin(self.base) is typing.Union else (self.base,)
        if all(isinstance(m, type) and m.__name__.startswith("vtkMRML") for m in members):
            return members
        return None

    @property
    def choice(self):
        return next((a for a in self.annotations if isinstance(a, Choice)), None)

    @property
    def kind(self) -> str:
        if self.nodeClasses:
            return "node"
        if self.choice is not None:
            return "choice"
        return self.base.__name__

    def check(self, value):
        if self.nodeClasses:
            if value is not None and not any(value.IsA(c.__name__) for c in self.nodeClasses):
                raise ValueError(f"{self.name}: {value.GetClassName()} is not one of {self.nodeClasses}")
            return
        if self.choice is not None and value not in self.choice.choices:
            raise ValueError(f"{self.name}: {value!r} is not one of {self.choice.choices}")
        for annotation in self.annotations:
            if isinstance(annotation, WithinRange) and not annotation.minimum <= value <= annotation.maximum:
                raise ValueError(f"{self.name}: {value} is outside [{annotation.minimum}, {annotation.maximum}]")


def parameterNodeWrapper(cls):
    """Typed access to a ``vtkMRMLScriptedModuleNode`` (the double of Slicer's decorator)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {}
    for name, hint in hints.items():
        base, annotations = hint, ()
        if typing.get_origin(hint) is typing.Annotated:
            base, *annotations = typing.get_args(hint)
        fields[name] = ParameterField(name, base, tuple(annotations), getattr(cls, name, None))

    class Wrapper:
        allParameters = fields

        def __init__(self, parameterNode):
            self.parameterNode = parameterNode
            self._guiBindings = {}
            for field in fields.values():
                if not field.nodeClasses and not parameterNode.GetParameter(field.name):
                    self._write(field, field.default)

        def _write(self, field, value):
            field.check(value)
            if field.nodeClasses:
                self.parameterNode.SetNodeReferenceID(field.name, value.GetID() if value else None)
            else:
                self.parameterNode.SetParameter(field.name, str(value))

        def _read(self, field):
            if field.nodeClasses:
                return self.parameterNode.GetNodeReference(field.name)
            text = self.parameterNode.GetParameter(field.name)
            if field.base is bool:
                return text == "True"
            return field.base(text)

        def connectGui(self, ui):
            widgets = {w.property("SlicerParameterName"): w for w in vars(ui).values()
                       if w.property("SlicerParameterName")}
            bindings = []
            for name, widget in widgets.items():
                field = fields[name]
                if widget.className not in CONNECTABLE_WIDGETS[field.kind]:
                    raise RuntimeError(f"Unable to create GUI connector from {field.kind} '{name}' to "
                                       f"widget type '{widget.className}'")
                if field.kind == "choice":
                    widget.clear()
                    for choice in field.choice.choices:
                        widget.addItem(str(choice))
                attribute, signal = VALUE_SIGNALS[widget.className]

                def fromWidget(*arguments, field=field, widget=widget, attribute=attribute):
                    value = getattr(widget, attribute)
                    self._write(field, field.choice.choices[value] if field.kind == "choice" else value)

                widget.connect(signal, fromWidget)
                bindings.append((field, widget, attribute, signal, fromWidget))
            self._updateWidgets(bindings)
            observer = self.parameterNode.AddObserver("ModifiedEvent", lambda *a: self._updateWidgets(bindings))
            tag = object()
            self._guiBindings[tag] = (bindings, observer)
            return tag

        def _updateWidgets(self, bindings):
            for field, widget, attribute, _signal, _slot in bindings:
                value = self._read(field)
                setattr(widget, attribute, field.choice.choices.index(value) if field.kind == "choice" else value)

        def disconnectGui(self, tag):
            if tag not in self._guiBindings:  # as Slicer's: an unknown tag (None) is no error
                return
            bindings, observer = self._guiBindings.pop(tag)
            self.parameterNode.RemoveObserver(observer)
            for _field, widget, _attribute, signal, slot in bindings:
                widget.disconnect(signal, slot)

        def AddObserver(self, event, callback, priority=0.0):
            return self.parameterNode.AddObserver(event, callback, priority)

        def RemoveObserver(self, tag):
            self.parameterNode.RemoveObserver(tag)

        def StartModify(self):
            return self.parameterNode.StartModify()

        def EndModify(self, wasModified):
            self.parameterNode.EndModify(wasModified)

    for field in fields.values():
        setattr(Wrapper, field.name, property(lambda self, field=field: self._read(field),
                                              lambda self, value, field=field: self._write(field, value)))
    Wrapper.__name__ = Wrapper.__qualname__ = cls.__name__
    Wrapper.__doc__ = cls.__doc__
    return Wrapper


def parameter_node_wrapper_module():
    module = types.ModuleType("slicer.parameterNodeWrapper")
    module.parameterNodeWrapper = parameterNodeWrapper
    module.Choice = Choice
    module.WithinRange = WithinRange
    return module


# --- ScriptedLoadableModule ---------------------------------------------------------------------

class ModulePanelDouble:
    """What a module's ``parent`` offers (title, help text, ... and whether it is shown)."""

    isEntered = True


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent or ModulePanelDouble()
        self.moduleName = type(self).__name__[: -len("Widget")]

    def setup(self):
        self.layout = LayoutDouble()

    def resourcePath(self, filename):
        return str(Path(sys.modules[type(self).__module__].__file__).parent / "Resources" / filename)


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = type(self).__name__[: -len("Logic")]

    def getParameterNode(self):
        scene = slicer.mrmlScene
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetName(self.moduleName)
            node.SetSingletonTag(self.moduleName)
            node.SetAttribute("ModuleName", self.moduleName)
            node = scene.AddNode(node)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=None):
        logging.info(message)


def scripted_loadable_module_module():
    module = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
                 "ScriptedLoadableModuleTest"):
        setattr(module, name, globals()[name])
    return module


# --- Slicer's CMake package --------------------------------------------------------------------

#: Slicer_QTSCRIPTEDMODULES_LIB_DIR of the CMake double (a Slicer 5.8 layout).
SCRIPTED_MODULES_DIR = "lib/Slicer-5.8/qt-scripted-modules"

SLICER_CMAKE_FILES = {
    "SlicerConfig.cmake": """
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
""",
    "Empty.cmake": "",
    "UseSlicer.cmake": f"""
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR {SCRIPTED_MODULES_DIR})
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR ${{Slicer_QTSCRIPTEDMODULES_LIB_DIR}})
set(BUILD_TESTING ON)
# As Slicer's macro: scripts and resources keep their paths under the scripted-modules folder.
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MODULE "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${{ARGN}})
  foreach(file IN LISTS MODULE_SCRIPTS MODULE_RESOURCES)
    if(NOT EXISTS ${{CMAKE_CURRENT_SOURCE_DIR}}/${{file}})
      message(FATAL_ERROR "listed but missing: ${{file}}")
    endif()
    configure_file(${{CMAKE_CURRENT_SOURCE_DIR}}/${{file}}
      ${{CMAKE_BINARY_DIR}}/${{Slicer_QTSCRIPTEDMODULES_LIB_DIR}}/${{file}} COPYONLY)
    get_filename_component(subdir ${{file}} DIRECTORY)
    install(FILES ${{CMAKE_CURRENT_SOURCE_DIR}}/${{file}} DESTINATION ${{Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}}/${{subdir}})
  endforeach()
  message(STATUS "scripted module ${{MODULE_NAME}} generic tests: ${{MODULE_WITH_GENERIC_TESTS}}")
endmacro()
function(slicer_add_python_unittest)
  cmake_parse_arguments(TEST "" "SCRIPT" "" ${{ARGN}})
  message(STATUS "python unittest: ${{TEST_SCRIPT}}")
endfunction()
""",
}


def write_slicer_cmake_package(folder: Path) -> Path:
    """A stand-in for Slicer's CMake package (find_package(Slicer)): the variables and the two macros
    an extension of scripted modules uses. Returns the folder to pass as ``Slicer_DIR``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in SLICER_CMAKE_FILES.items():
        (folder / name).write_text(text)
    return folder


# --- the application ----------------------------------------------------------------------------

class LayoutManagerDouble:
    """Creates a real slice logic (and so a slice composite node) for every slice view a layout adds,
    as Slicer's layout manager does when it makes the slice widgets, sized as a widget of
    ``view_size`` (width, height) pixels would size it, and known to the application logic (which the
    slice link logic asks for the slice logics of linked views)."""

    def __init__(self, scene, application_logic, view_size=(256, 256)):
        self.scene = scene
        self.application_logic = application_logic
        self.view_size = tuple(view_size)
        self.slice_logics = {}  # slice node ID -> its slice logic
        self._slice_logic_collection = vtk.vtkCollection()
        application_logic.SetSliceLogics(self._slice_logic_collection)
        self.reset_slice_views_calls = 0
        scene.AddObserver(scene.NodeAddedEvent, self._on_node_added)

    def _on_node_added(self, caller, event):
        for index in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
            slice_node = self.scene.GetNthNodeByClass(index, "vtkMRMLSliceNode")
            if slice_node.GetID() in self.slice_logics:
                continue
            logic = slicer.vtkMRMLSliceLogic()
            self.slice_logics[slice_node.GetID()] = logic  # before SetSliceNode, which adds nodes
            logic.SetMRMLApplicationLogic(self.application_logic)
            logic.SetMRMLScene(self.scene)
            logic.SetSliceNode(slice_node)
            logic.ResizeSliceNode(*self.view_size)
            self._slice_logic_collection.AddItem(logic)

    def sliceLogic(self, view_name):
        """The slice logic of the slice view named ``view_name`` (its layout name)."""
        return self.application_logic.GetSliceLogicByLayoutName(view_name)

    def resetSliceViews(self):
        """As Slicer's: every slice view fits its slice to the volumes it shows (the slice
        controller's fitSliceToBackground, an interaction that linked views follow)."""
        self.reset_slice_views_calls += 1
        for logic in self.slice_logics.values():
            logic.StartSliceNodeInteraction(slicer.vtkMRMLSliceNode.ResetFieldOfViewFlag)
            logic.FitSliceToAll()
            logic.GetSliceNode().UpdateMatrices()
            logic.EndSliceNodeInteraction()


class OffscreenSliceViews:
    """Slice views side by side in an offscreen render window (VTK's OSMesa window), drawn as
    Slicer's slice widgets draw them: the slice logic's RGBA image in a 2D renderer (ctkVTKSliceView:
    a ``vtkImageMapper`` at window 255, level 127.5, in a ``vtkActor2D``), under the slice controller's
    bar (the view label on the view colour, and the slice offset), with the names of the layers shown
    in the lower-left corner (as the DataProbe's slice annotations).

    Needs libOSMesa (Debian ``libosmesa6``).
    """

    #: Height (pixels) of the slice controller's bar above each view.
    BAR_HEIGHT = 24
    #: Slice offset axis per orientation, as the slice controller writes it.
    OFFSET_AXIS = {"Axial": "S", "Sagittal": "R", "Coronal": "A"}

    @staticmethod
    def load_osmesa():
        """Load libOSMesa binding its symbols to its own libraries first (``RTLD_DEEPBIND``): an
        imported TensorFlow exports its own LLVM to every library loaded after it, and Mesa's
        llvmpipe crashes calling into that LLVM instead of its own."""
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("OSMesa")
        if name is None:
            raise RuntimeError("offscreen rendering needs libOSMesa (Debian: apt-get install libosmesa6)")
        ctypes.CDLL(name, mode=os.RTLD_DEEPBIND | os.RTLD_NOW | os.RTLD_LOCAL)

    def __init__(self, layout_manager: LayoutManagerDouble, view_names, annotations: bool = True):
        """``annotations``: draw the layer names (as DataProbe's slice annotations, which can be off)."""
        from vtkmodules.vtkRenderingOpenGL2 import vtkOSOpenGLRenderWindow

        self.load_osmesa()
        self.logics = [layout_manager.sliceLogic(name) for name in view_names]
        self.view_width, self.view_height = layout_manager.view_size
        self.window = vtkOSOpenGLRenderWindow()
        self.window.SetOffScreenRendering(True)
        self.window.SetSize(self.view_width * len(self.logics), self.view_height + self.BAR_HEIGHT)
        self.annotations = annotations
        self._texts = [self._add_view(index, logic) for index, logic in enumerate(self.logics)]

    def _viewport(self, index, bottom, top):
        total_height = self.view_height + self.BAR_HEIGHT
        return (index / len(self.logics), bottom / total_height, (index + 1) / len(self.logics), top / total_height)

    def _add_view(self, index, logic):
        image_mapper = vtk.vtkImageMapper()
        image_mapper.SetInputConnection(logic.GetImageDataConnection())
        image_mapper.SetColorWindow(255)
        image_mapper.SetColorLevel(127.5)
        image_actor = vtk.vtkActor2D()
        image_actor.SetMapper(image_mapper)
        view = vtk.vtkRenderer()
        view.SetViewport(*self._viewport(index, 0, self.view_height))
        view.SetBackground(0, 0, 0)
        view.AddViewProp(image_actor)
        layers = self._text_actor(view, (6, 6), font_size=13, colour=(1.0, 1.0, 1.0))

        slice_node = logic.GetSliceNode()
        bar = vtk.vtkRenderer()
        bar.SetViewport(*self._viewport(index, self.view_height, self.view_height + self.BAR_HEIGHT))
        bar.SetBackground(*slice_node.GetLayoutColor())
        title = self._text_actor(bar, (8, 5), font_size=14, colour=(0.0, 0.0, 0.0), bold=True)
        title.SetInput(slice_node.GetLayoutLabel())
        offset = self._text_actor(bar, (self.view_width - 8, 5), font_size=13, colour=(0.0, 0.0, 0.0))
        offset.GetTextProperty().SetJustificationToRight()
        for renderer in (view, bar):
            self.window.AddRenderer(renderer)
        return layers, offset

    @staticmethod
    def _text_actor(renderer, position, font_size, colour, bold=False):
        actor = vtk.vtkTextActor()
        actor.SetPosition(*position)  # pixels from the renderer's lower-left corner
        properties = actor.GetTextProperty()
        properties.SetFontSize(font_size)
        properties.SetColor(*colour)
        properties.SetBold(bold)
        renderer.AddViewProp(actor)
        return actor

    def _update_texts(self):
        for logic, (layers, offset) in zip(self.logics, self._texts):
            composite = logic.GetSliceCompositeNode()
            scene = logic.GetMRMLScene()
            lines = []
            for letter, node_id, opacity in (("L", composite.GetLabelVolumeID(), None),
                                             ("F", composite.GetForegroundVolumeID(), composite.GetForegroundOpacity()),
                                             ("B", composite.GetBackgroundVolumeID(), None)):
                node = scene.GetNodeByID(node_id) if node_id else None
                if node is not None:
                    lines.append(f"{letter}: {node.GetName()}" + (f" ({opacity:.0%})" if opacity is not None else ""))
            layers.SetInput("\n".join(lines) if self.annotations else "")
            axis = self.OFFSET_AXIS.get(logic.GetSliceNode().GetOrientation(), "")
            offset.SetInput(f"{axis}: {logic.GetSliceOffset():.1f} mm")

    def _grab(self):
        """Draw the views; the window's image (``vtkImageData``, RGB, bottom row first)."""
        self._update_texts()
        self.window.Render()
        grabber = vtk.vtkWindowToImageFilter()
        grabber.SetInput(self.window)
        grabber.SetInputBufferTypeToRGB()
        grabber.ReadFrontBufferOff()
        grabber.Update()
        return grabber.GetOutput()

    def render(self):
        """Draw the views; the window's pixels, uint8 ``[row, column, RGB]``, the top row first."""
        from vtkmodules.util.numpy_support import vtk_to_numpy

        image = self._grab()
        width, height, _ = image.GetDimensions()
        return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, 3)[::-1].copy()

    def view_pixels(self, pixels, index):
        """The slice image area of view ``index`` in ``render``'s pixels (top row first): pixel
        ``[row, column]`` shows the slice node's XY point ``(column, view_height - 1 - row)``."""
        return pixels[self.BAR_HEIGHT:, index * self.view_width:(index + 1) * self.view_width]

    def save_png(self, path):
        """Draw the views and write the window to a PNG file."""
        writer = vtk.vtkPNGWriter()
        writer.SetFileName(str(path))
        writer.SetInputData(self._grab())
        writer.Write()


class SlicerApplicationDouble:
    """``slicer.app``: a layout manager (slice views of ``view_size`` pixels); a scene set up as
    Slicer's (layout, colours, orientations)."""

    def __init__(self, view_size=(256, 256)):
        self.scene = slicer.vtkMRMLScene()
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene)
        self.application_logic = slicer.vtkMRMLApplicationLogic()
        self.application_logic.SetMRMLScene(self.scene)
        self.color_logic = slicer.vtkMRMLColorLogic()
        self.color_logic.SetMRMLScene(self.scene)
        self._layout_manager = LayoutManagerDouble(self.scene, self.application_logic, view_size)
        self.layout_logic = slicer.vtkMRMLLayoutLogic()
        self.layout_logic.SetMRMLApplicationLogic(self.application_logic)
        self.layout_logic.SetMRMLScene(self.scene)

    def layoutManager(self):
        return self._layout_manager

    def mainWindow(self):
        return None

    def processEvents(self):
        pass


class PlotsModuleDouble:
    """``slicer.modules.plots``: its logic records the charts the module asks to show in the layout."""

    def __init__(self):
        self.shown_chart_ids = []

    def logic(self):
        return self

    def ShowChartInLayout(self, chartNode):
        self.shown_chart_ids.append(chartNode.GetID())


class MessagesDouble:
    """Records the messages the module shows; answers confirmations with ``confirm``."""

    def __init__(self, confirm=True):
        self.errors = []
        self.confirmations = []
        self.confirm = confirm

    def errorDisplay(self, text, windowTitle=None, **kwargs):
        self.errors.append(text)

    def confirmOkCancelDisplay(self, text, windowTitle=None, **kwargs):
        self.confirmations.append(text)
        return self.confirm


def import_module_file(monkeypatch, name="PETPartialVolumeCorrectionUnderTest", path=MODULE_FILE):
    """Import the Slicer module file with the doubles of what only Slicer provides."""
    monkeypatch.setitem(sys.modules, "qt", qt_module())
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted_loadable_module_module())
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", parameter_node_wrapper_module())
    monkeypatch.setattr(slicer, "ScriptedLoadableModule", sys.modules["slicer.ScriptedLoadableModule"], raising=False)
    monkeypatch.setattr(slicer, "parameterNodeWrapper", sys.modules["slicer.parameterNodeWrapper"], raising=False)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def install_application(monkeypatch, messages: MessagesDouble, bin_folder: Path,
                        view_size=(256, 256)) -> SlicerApplicationDouble:
    """Give ``slicer`` an application (``slicer.app``, ``slicer.mrmlScene``; slice views of
    ``view_size`` pixels) and GUI utilities, and put a ``PythonSlicer`` launcher (running this
    Python) on the PATH, as Slicer does."""
    launcher = bin_folder / "PythonSlicer"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    launcher.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    application = SlicerApplicationDouble(view_size)
    monkeypatch.setattr(slicer, "app", application, raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", application.scene, raising=False)
    monkeypatch.setattr(slicer.util, "loadUI", load_ui)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", child_widget_variables)
    monkeypatch.setattr(slicer.util, "errorDisplay", messages.errorDisplay)
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", messages.confirmOkCancelDisplay)
    monkeypatch.setattr(slicer.util, "mainWindow", application.mainWindow)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(plots=PlotsModuleDouble()), raising=False)
    return application
