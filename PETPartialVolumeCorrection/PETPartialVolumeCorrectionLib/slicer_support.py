"""Pure-Python helpers of the 3D Slicer module, testable without Slicer.

- Geometry: Slicer's IJK-to-RAS matrix <-> the library's :class:`~.geometry.Geometry` (LPS).
- The background worker: the ``pet-pvc`` command line for one run, a child process whose progress
  lines are read by a thread, cancel = end the process and its children, the result read back.
- Dependencies: which lines of ``Resources/requirements.txt`` apply to this Python, which are missing,
  and what to do when the GPU cannot be used.
- Display: one window/level range shared by the input and the outputs.
- The self-test phantom: a small amyloid-like head with known true activity.

Nothing here imports Slicer or Qt.
"""

from __future__ import annotations

import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import PVCInputError
from .geometry import Geometry
from .inference import DEFAULT_OVERLAP
from .inference import MODES as TILING_MODES
from .model import DEVICES
from .progress import CancelCheck, ProcessingCancelled, ProgressCallback, parse_progress_line, report

#: Flips x and y: maps LPS to RAS and back (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: The folder holding the ``PETPartialVolumeCorrectionLib`` package (put on the worker's PYTHONPATH).
LIBRARY_PARENT = Path(__file__).resolve().parents[1]

DEEP_LEARNING = "deep-learning"

#: The methods offered in the Slicer panel: label shown -> ``pet-pvc`` method (DEEP_LEARNING:
#: ``correct``; the others: ``classical --method``, whose every method the logic accepts).
METHOD_LABELS = {
    "Deep learning (no MRI needed)": DEEP_LEARNING,
    "GTM (regions filled with their values)": "gtm",
    "RBV (regions)": "rbv",
    "Iterative Yang (regions)": "iy",
    "Multi-target correction (regions)": "mtc",
    "Mueller-Gaertner (labels GM 1, WM 2, CSF 3)": "mg",
    "Van Cittert (PSF only)": "vc",
    "Richardson-Lucy (PSF only)": "rl",
}

#: The window overlap (voxels) the Slicer module starts with (that of the library's gaussian tiling).
DEFAULT_OVERLAP_VOXELS = DEFAULT_OVERLAP["gaussian"]

OUTPUT_GRIDS = ("standard", "native")  # the correction pipeline's (checked by the tests)
KERAS_BACKENDS = ("tensorflow", "torch")

#: Distributions that provide the ``tensorflow`` module; any of them satisfies a TensorFlow requirement.
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos")
#: Distributions only deep learning needs (the classical methods run without them).
DEEP_LEARNING_DISTRIBUTIONS = ("keras",) + TENSORFLOW_DISTRIBUTIONS

#: Command-line options named in library messages -> the same choice in the Slicer module.
SLICER_OPTION_NAMES = {
    "--crop-fov": "the option 'Cut a field of view wider than 256 mm' (Deep learning, advanced)",
    "--model": "the Model folder setting (Deep learning, advanced)",
    "--native-grid": "the option 'Output on the input's grid' (Deep learning, advanced)",
}

# --- geometry -------------------------------------------------------------------------------------

def geometry_from_ijk_to_ras(ijk_to_ras) -> Geometry:
    """The :class:`Geometry` (LPS) of a Slicer volume from its 4x4 IJK-to-RAS matrix.

    Slicer's ``arrayFromVolume`` gives the voxels as ``[k, j, i]``, the library's ``[z, y, x]``.
    Raises :class:`PVCInputError` for a singular matrix (a zero voxel size).
    """
    matrix = LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=float).reshape(4, 4)
    axes = matrix[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 0) or abs(np.linalg.det(axes)) < 1e-12:
        raise PVCInputError("the volume's IJK-to-RAS matrix is singular (a zero voxel size); "
                            "fix the spacing in the Volumes module")
    return Geometry(tuple(spacing), tuple(matrix[:3, 3]), axes / spacing)


def ijk_to_ras_from_geometry(geometry: Geometry) -> np.ndarray:
    """Slicer's 4x4 IJK-to-RAS matrix for a :class:`Geometry` (LPS)."""
    return LPS_TO_RAS @ geometry.index_to_world()


# --- options and the worker's command line --------------------------------------------------------

@dataclass
class CorrectionOptions:
    """What one run does. Per-axis values in ``(x, y, z)`` order.

    Attributes:
        method: ``DEEP_LEARNING`` or a classical method (a value of :data:`METHOD_LABELS`).
        device: "auto" (GPU when present), "cpu" or "gpu" (deep learning).
        mode: "gaussian" (overlapping windows, Gaussian blending) or "study" (eight 128^3 tiles).
        overlap: window overlap in voxels for "gaussian" mode (None: the library's default).
        output_grid: "standard" (1 mm 256^3) or "native" (the input's grid); classical methods always
            work on the input's grid.
        crop_fov: cut a field of view wider than 256 mm (centred) instead of refusing it.
        model_folder: a model folder (None: the shipped model).
        fwhm_mm: PSF full width at half maximum in mm (classical methods).
        keras_backend: the Keras backend of the worker ("tensorflow" or "torch").
    """

    method: str = DEEP_LEARNING
    device: str = "auto"
    mode: str = "gaussian"
    overlap: Optional[int] = None
    output_grid: str = "standard"
    crop_fov: bool = False
    model_folder: Optional[str] = None
    fwhm_mm: tuple = (6.0, 6.0, 6.0)
    keras_backend: str = "tensorflow"

    def __post_init__(self):
        from .classical.command import METHODS
        from .classical.psf import check_fwhm

        choices = {"method": (DEEP_LEARNING,) + METHODS, "device": DEVICES, "mode": TILING_MODES,
                   "output_grid": OUTPUT_GRIDS, "keras_backend": KERAS_BACKENDS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise PVCInputError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        self.fwhm_mm = tuple(float(f) for f in check_fwhm(self.fwhm_mm, warn=False))

    @property
    def needs_labels(self) -> bool:
        """Whether the method needs a label map of the regions (Van Cittert and Richardson-Lucy do not)."""
        from .classical.command import MG_METHOD, REGION_METHODS, REGIONAL_METHODS

        return self.method in REGIONAL_METHODS + REGION_METHODS + (MG_METHOD,)


def worker_command(python_executable, input_path, output_dir, options: CorrectionOptions,
                   labels_path=None, label_names_path=None) -> list[str]:
    """The ``pet-pvc`` command line that does one run, printing progress lines.

    Args:
        python_executable: Slicer's ``PythonSlicer`` (or any Python that imports the library).
        input_path: the PET image file.
        output_dir: an empty folder for the results.
        labels_path: the label image on the input's grid (classical methods that need regions).
        label_names_path: a CSV ``label,name`` of the regions' names (they name the table's rows,
            and FreeSurfer or GM/WM/CSF names give MG its tissue classes).
    """
    command = [str(python_executable), "-m", "PETPartialVolumeCorrectionLib.cli"]
    if options.method == DEEP_LEARNING:
        command += ["correct", str(input_path), "-o", str(output_dir), "--device", options.device,
                    "--mode", options.mode]
        if options.overlap is not None:
            command += ["--overlap", str(int(options.overlap))]
        if options.output_grid == "native":
            command.append("--native-grid")
        if options.crop_fov:
            command.append("--crop-fov")
        if options.model_folder:
            command += ["--model", str(options.model_folder)]
    else:
        command += ["classical", "--method", options.method, "--psf", *(repr(f) for f in options.fwhm_mm)]
        if labels_path is not None:
            command += ["--labels", str(labels_path)]
        if label_names_path is not None:
            command += ["--label-names", str(label_names_path)]
        command += [str(input_path), "-o", str(output_dir)]
    return command + ["--progress", "lines"]


def worker_environment(options: CorrectionOptions, base: Optional[dict] = None) -> dict:
    """The worker's environment: the library importable, the chosen Keras backend, quiet TensorFlow."""
    environment = dict(os.environ if base is None else base)
    paths = [str(LIBRARY_PARENT)] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    environment["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    environment["KERAS_BACKEND"] = options.keras_backend
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return environment


def slicer_message(message: str) -> str:
    """A library message with the command-line options it names replaced by the Slicer controls."""
    import re

    for option, control in SLICER_OPTION_NAMES.items():
        message = re.sub(rf"{re.escape(option)}(?![\w-])(\s+DIR)?", control, message)
    return message


# --- the background worker ------------------------------------------------------------------------

class WorkerProcess:
    """A child process whose output lines (stdout and stderr together) a thread reads.

    :meth:`poll` hands progress lines (``PETVC-PROGRESS <fraction> <message>``) to a progress
    callback and keeps every other line in :attr:`log`; :meth:`cancel` ends the process with all its
    children (Slicer's ``PythonSlicer`` is a launcher that starts the real Python as a child).
    """

    #: Seconds a cancelled process is given to end after SIGTERM before it is killed.
    TERMINATE_GRACE_S = 5.0

    def __init__(self, command: Sequence[str], environment: Optional[dict] = None, cwd=None):
        options = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL,
                   "text": True, "errors": "replace", "bufsize": 1, "env": environment, "cwd": cwd}
        if os.name == "nt":
            options["creationflags"] = subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            options["start_new_session"] = True  # its own process group: cancel ends the children too
        self.command = list(command)
        self.log: list[str] = []
        self.cancelled = False
        self._lines: queue.Queue = queue.Queue()
        self._ended = False
        self._process = subprocess.Popen(self.command, **options)
        self._reader = threading.Thread(target=self._read_lines, daemon=True)
        self._reader.start()

    def _read_lines(self) -> None:
        for line in self._process.stdout:
            self._lines.put(line.rstrip("\r\n"))
        self._lines.put(None)

    def _handle(self, line: Optional[str], progress: Optional[ProgressCallback]) -> None:
        if line is None:
            self._process.wait()
            self._ended = True
            return
        parsed = parse_progress_line(line)
        if parsed is not None:
            report(progress, *parsed)
        else:
            self.log.append(line)

    def poll(self, progress: Optional[ProgressCallback] = None) -> bool:
        """Handle the lines printed so far, without waiting; True once the process has ended and all
        its output is read."""
        while not self._ended:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return False
            self._handle(line, progress)
        return True

    def wait(self, progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None,
             check_interval_s: float = 0.1) -> int:
        """Block until the process ends (cancelling it when ``cancel()`` turns True); its exit code."""
        while not self._ended:
            if cancel is not None and not self.cancelled and cancel():
                self.cancel()
            try:
                line = self._lines.get(timeout=check_interval_s)
            except queue.Empty:
                continue
            self._handle(line, progress)
        return self.returncode

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self._process.returncode

    @property
    def pid(self) -> int:
        return self._process.pid

    def cancel(self) -> None:
        """End the process and all its children (idempotent)."""
        self.cancelled = True
        if self._process.poll() is not None:
            return
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self._process.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            return
        self._signal_group(signal.SIGTERM)
        try:
            self._process.wait(timeout=self.TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self._process.wait()

    def _signal_group(self, signal_number) -> None:
        try:
            os.killpg(self._process.pid, signal_number)
        except ProcessLookupError:
            pass

    def error_message(self) -> str:
        """The one-line error the command line printed (``pet-pvc CMD: error: ...``), else the last
        lines of its output."""
        marker = ": error: "
        for line in reversed(self.log):
            if line.startswith("pet-pvc") and marker in line:
                return line.split(marker, 1)[1]
        tail = " | ".join(line for line in self.log[-5:] if line.strip())
        return f"the worker process stopped with exit code {self.returncode}: {tail}"


@dataclass
class CorrectionOutputs:
    """Results of one run, arrays ``[z, y, x]`` on ``geometry``'s grid, in the input's units.

    ``sharpened`` is None for classical methods (the sharpen baseline belongs to deep learning).
    """

    corrected: np.ndarray
    geometry: Geometry
    sharpened: Optional[np.ndarray] = None
    record: dict = field(default_factory=dict)


class BackgroundCorrection:
    """One correction in a background ``pet-pvc`` process, from arrays to arrays.

    The input (and the labels, resampled onto the input's grid) go to NRRD files in a new temporary
    folder, the worker writes its results there, :meth:`outputs` reads them back; the folder is
    removed once the results are read.
    """

    INPUT_NAME = "input.nrrd"
    LABELS_NAME = "labels.nrrd"
    LABEL_NAMES_NAME = "label_names.csv"

    def __init__(self, volume: np.ndarray, geometry: Geometry, options: CorrectionOptions, *,
                 labels: Optional[np.ndarray] = None, label_geometry: Optional[Geometry] = None,
                 label_names: Optional[dict] = None, python_executable=None, environment: Optional[dict] = None):
        from .io import validate_pet_volume, write_image

        validate_pet_volume(volume, geometry)
        self.options = options
        labels_on_pet = checked_labels(options, labels, label_geometry, volume.shape, geometry)
        self.folder = Path(tempfile.mkdtemp(prefix="PETPVC-"))
        try:
            self.input_path = write_image(volume.astype(np.float32, copy=False), geometry,
                                          self.folder / self.INPUT_NAME)
            labels_path = names_path = None
            if labels_on_pet is not None:
                labels_path = write_image(labels_on_pet, geometry, self.folder / self.LABELS_NAME)
                if label_names:
                    names_path = write_label_names(label_names, self.folder / self.LABEL_NAMES_NAME)
            self.output_dir = self.folder / "results"
            command = worker_command(python_executable or sys.executable, self.input_path,
                                     self.output_dir, options, labels_path, names_path)
            self.worker = WorkerProcess(command, worker_environment(options, environment))
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise

    def poll(self, progress: Optional[ProgressCallback] = None) -> bool:
        """True once the worker has ended (then call :meth:`outputs`)."""
        return self.worker.poll(progress)

    def wait(self, progress: Optional[ProgressCallback] = None,
             cancel: Optional[CancelCheck] = None) -> CorrectionOutputs:
        """Block until the worker ends; its outputs (raises as :meth:`outputs`)."""
        self.worker.wait(progress, cancel)
        return self.outputs()

    def cancel(self) -> None:
        self.worker.cancel()

    def outputs(self) -> CorrectionOutputs:
        """Read the results of the ended worker and remove the temporary folder.

        Raises:
            ProcessingCancelled: the run was cancelled.
            PVCInputError: the command line refused the input (its one-line message, reworded).
            RuntimeError: the worker failed otherwise (its last output lines).
        """
        try:
            if self.worker.cancelled:
                raise ProcessingCancelled("cancelled by the user")
            if self.worker.returncode == 2:
                raise PVCInputError(slicer_message(self.worker.error_message()))
            if self.worker.returncode != 0:
                raise RuntimeError(self.worker.error_message())
            return read_worker_outputs(self.output_dir, self.input_path, self.options)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def read_worker_outputs(output_dir, input_path, options: CorrectionOptions) -> CorrectionOutputs:
    """The results the worker wrote into ``output_dir`` for ``input_path``, with its JSON record."""
    import json

    from .io import read_image

    names = output_file_names(input_path, options)
    output_dir = Path(output_dir)
    corrected, geometry = read_image(output_dir / names["corrected"])
    sharpened = None
    if "sharpened" in names:
        sharpened, sharpened_geometry = read_image(output_dir / names["sharpened"])
        if not sharpened_geometry.matches(geometry):
            raise RuntimeError("the corrected and sharpened results are on different grids")
    record = json.loads((output_dir / names["settings"]).read_text())
    return CorrectionOutputs(corrected, geometry, sharpened, record)


def output_file_names(input_path, options: CorrectionOptions) -> dict:
    """File names (by role: corrected, sharpened, settings) the worker writes for ``input_path``."""
    if options.method == DEEP_LEARNING:
        from .pipeline import output_names

        return output_names(input_path)
    from .classical.command import output_names

    return output_names(input_path, options.method)


def checked_labels(options: CorrectionOptions, labels: Optional[np.ndarray], label_geometry: Optional[Geometry],
                   shape_zyx, geometry: Geometry) -> Optional[np.ndarray]:
    """The region labels on the PET's grid (int16 ``[z, y, x]``) when the method needs them, else None.

    A label map on another grid (e.g. an MRI segmentation) is resampled by nearest neighbour.
    """
    if not options.needs_labels:
        return None
    if labels is None:
        raise PVCInputError(f"{options.method} needs a label map of the regions; "
                            "choose a segmentation or label map")
    labels = np.asarray(labels)
    label_geometry = label_geometry or geometry
    if labels.shape != tuple(shape_zyx) or not label_geometry.matches(geometry):
        from .grid import resample_to_native_grid

        labels = np.rint(resample_to_native_grid(labels.astype(np.float32), label_geometry, shape_zyx,
                                                 geometry, interpolation="nearest"))
    if not np.any(labels):
        raise PVCInputError("the label map has no region inside the PET's field of view; "
                            "check that it is registered to the PET")
    return labels.astype(np.int16)


# --- dependencies ---------------------------------------------------------------------------------

class DependencyError(RuntimeError):
    """A Python package the chosen method needs is missing and was not installed."""


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def requirements_for_environment(requirements_text: str, environment: Optional[dict] = None,
                                 keras_backend: Optional[str] = "tensorflow") -> list[str]:
    """The requirement lines (markers removed) that apply to a Python environment.

    Args:
        requirements_text: a pip requirements file's text; environment markers pick versions per
            Python (Slicer 5.6-5.8 run Python 3.9, later ones 3.12).
        environment: marker variables to override (e.g. ``{"python_version": "3.9"}``); None = this one.
        keras_backend: with a backend other than TensorFlow, TensorFlow is not required; None (no
            deep learning, classical methods only) drops Keras too.
    """
    from packaging.requirements import Requirement

    picked = []
    for line in requirements_text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = _canonical(requirement.name)
        if keras_backend is None and name in DEEP_LEARNING_DISTRIBUTIONS:
            continue
        if keras_backend != "tensorflow" and name in TENSORFLOW_DISTRIBUTIONS:
            continue
        requirement.marker = None
        picked.append(str(requirement))
    return picked


def installed_version(distribution: str) -> Optional[str]:
    """The installed version of a distribution, or None."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def unsatisfied_requirements(requirements: Sequence[str], version_of=installed_version) -> list[str]:
    """The requirements not met by what is installed (``version_of(name) -> version or None``).

    Any TensorFlow distribution (tensorflow, tensorflow-cpu, ...) of a fitting version satisfies a
    TensorFlow requirement, so a GPU build the user installed is never replaced by the CPU one.
    """
    from packaging.requirements import Requirement

    missing = []
    for text in requirements:
        requirement = Requirement(text)
        name = _canonical(requirement.name)
        candidates = TENSORFLOW_DISTRIBUTIONS if name in TENSORFLOW_DISTRIBUTIONS else (name,)
        versions = [v for v in (version_of(candidate) for candidate in candidates) if v is not None]
        if not any(requirement.specifier.contains(v, prereleases=True) for v in versions):
            missing.append(text)
    return missing


def gpu_advice(keras_backend: str = "tensorflow", system: Optional[str] = None,
               version_of=installed_version) -> Optional[str]:
    """What to do for GPU computing with this backend on this system, or None when nothing is in
    the way (a CUDA GPU is then used when present)."""
    system = system or platform.system()
    torch_installed = version_of("torch") is not None
    if keras_backend == "torch":
        if not torch_installed:
            return ("the torch backend needs PyTorch: install it with the PyTorch Util extension "
                    "(choose a CUDA build for GPU computing)")
        return None
    if system == "Darwin":
        return "macOS has no CUDA GPU: TensorFlow computes on the CPU"
    if system == "Windows":
        advice = ("TensorFlow has no GPU support on native Windows, so it computes on the CPU; for GPU "
                  "computing choose the 'torch' backend under Advanced")
        if torch_installed:
            return advice + " (PyTorch is installed; it must be a CUDA build)"
        return advice + " after installing a CUDA build of PyTorch with the PyTorch Util extension"
    if version_of("tensorflow") is None and version_of("tensorflow-cpu") is not None:
        return ("the CPU-only TensorFlow build is installed; for an NVIDIA GPU run "
                "'PythonSlicer -m pip install tensorflow[and-cuda]' (after uninstalling tensorflow-cpu), "
                "or choose the 'torch' backend with a CUDA build of PyTorch")
    return None


# --- help ---------------------------------------------------------------------------------------

def model_card_summary(card: Optional[dict]) -> str:
    """One sentence for the module's help: what the shipped model was trained on, to do what."""
    if card is None:
        return ("No trained model is installed with this build: deep learning needs a model folder "
                "(Deep learning, advanced).")
    text = f"The shipped model '{card.get('name', 'unnamed')}'"
    if card.get("training_target"):
        text += f" was trained to reproduce {card['training_target']}"
    data = card.get("data") or {}
    if data:
        details = [str(data.get("source", "data of unknown source"))]
        if "psf_fwhm_mm_range" in data:
            details.append("PSF {:g}-{:g} mm FWHM".format(*data["psf_fwhm_mm_range"]))
        if "train_subjects" in data:
            details.append(f"{data['train_subjects']} training subjects")
        text += f" on {', '.join(details)}"
    return text + "; its model card (Resources/Models) gives the data and the test scores."


# --- display --------------------------------------------------------------------------------------

def shared_display_range(volumes: Sequence[np.ndarray], low_percentile: float = 0.5,
                         high_percentile: float = 99.5) -> tuple[float, float]:
    """One (low, high) intensity range that shows all ``volumes`` well (robust percentiles over
    every second voxel), so the input and the outputs are seen on the same scale."""
    samples = [np.asarray(v)[::2, ::2, ::2].ravel() for v in volumes if v is not None]
    low = min(float(np.percentile(s, low_percentile)) for s in samples)
    high = max(float(np.percentile(s, high_percentile)) for s in samples)
    if high <= low:
        high = low + 1.0
    return low, high


# --- the self-test phantom ------------------------------------------------------------------------

PHANTOM_LABELS = {"background": 0, "grey matter": 1, "white matter": 2, "CSF": 3, "scalp": 4}


def amyloid_phantom(shape_zyx=(48, 60, 52), spacing_mm=(3.0, 3.0, 3.0), fwhm_mm=(6.0, 6.0, 6.0),
                    noise_fraction: float = 0.02, seed: int = 0) -> dict:
    """A small amyloid-positive head: scalp, a cortical grey-matter ribbon with high tracer uptake,
    white matter with the non-specific uptake of amyloid tracers, ventricles, on an oblique grid.

    Returns a dict: ``truth`` (true activity, tracer units, ``[z, y, x]``), ``pet`` (truth blurred
    by the Gaussian PSF of ``fwhm_mm`` plus noise of ``noise_fraction`` of the maximum),
    ``labels`` (:data:`PHANTOM_LABELS`), ``geometry`` (10 degree oblique) and ``fwhm_mm``.
    """
    from .classical.psf import gaussian_blur

    angle = np.deg2rad(10.0)
    direction = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(angle), -np.sin(angle)],
                          [0.0, np.sin(angle), np.cos(angle)]])
    extent = np.asarray(shape_zyx[::-1], dtype=float) * np.asarray(spacing_mm, dtype=float)
    origin = -direction @ (extent / 2.0)
    geometry = Geometry(spacing_mm, tuple(origin), direction)

    k, j, i = np.meshgrid(*(np.arange(n) for n in shape_zyx), indexing="ij")
    offset = (np.stack([i, j, k], axis=-1) * np.asarray(spacing_mm)) - extent / 2.0  # mm from centre

    def inside(semi_axes_mm, centre_mm=(0.0, 0.0, 0.0)):
        return np.sum(((offset - np.asarray(centre_mm)) / np.asarray(semi_axes_mm)) ** 2, axis=-1) <= 1.0

    head, brain = inside((68, 84, 72)), inside((60, 76, 64))
    white = inside((48, 62, 50))
    ventricles = inside((8, 20, 10), (-12, 4, 6)) | inside((8, 20, 10), (12, 4, 6))
    labels = np.zeros(shape_zyx, dtype=np.int16)
    labels[head] = PHANTOM_LABELS["scalp"]
    labels[brain] = PHANTOM_LABELS["grey matter"]
    labels[white] = PHANTOM_LABELS["white matter"]
    labels[ventricles] = PHANTOM_LABELS["CSF"]
    activity = {"background": 0.0, "grey matter": 2.2, "white matter": 1.8, "CSF": 0.1, "scalp": 0.4}
    truth = np.zeros(shape_zyx, dtype=np.float32)
    for name, value in activity.items():
        truth[labels == PHANTOM_LABELS[name]] = value
    rng = np.random.default_rng(seed)
    blurred = gaussian_blur(truth, fwhm_mm, spacing_mm)
    pet = blurred + rng.normal(0.0, noise_fraction * float(truth.max()), shape_zyx).astype(np.float32)
    return {"truth": truth, "pet": pet.astype(np.float32), "labels": labels, "geometry": geometry,
            "fwhm_mm": tuple(float(f) for f in np.broadcast_to(fwhm_mm, (3,)))}


def phantom_mg_target(phantom: dict) -> np.ndarray:
    """The deep-learning training target for the phantom: MG (WM/CSF values from GTM) inside grey
    matter and the PET elsewhere, from the phantom's own tissue labels and PSF (the simulator's
    definition, :func:`..simulation.subject.mg_target`)."""
    from .simulation.subject import mg_target

    labels = phantom["labels"]
    gm, wm, csf = (np.asarray(labels == PHANTOM_LABELS[name], dtype=np.float32)
                   for name in ("grey matter", "white matter", "CSF"))
    return mg_target(phantom["pet"], gm, wm, csf, phantom["fwhm_mm"], phantom["geometry"].spacing)


def write_label_names(names: dict, path) -> Path:
    """``{label: name}`` as the CSV ``label,name`` that ``pet-pvc classical --label-names`` reads."""
    import csv
    import io

    from .io import write_text_atomic

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["label", "name"])
    writer.writerows(sorted(names.items()))
    return write_text_atomic(path, buffer.getvalue())


def run_in_process(volume: np.ndarray, geometry: Geometry, options: CorrectionOptions, *,
                   labels: Optional[np.ndarray] = None, label_geometry: Optional[Geometry] = None,
                   label_names: Optional[dict] = None, progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelCheck] = None) -> CorrectionOutputs:
    """The worker's correction, in this process (scripts, self-test, tests): the same library calls.
    ``label_names`` ``{label: name}`` name the regions (and, when FreeSurfer's, MG's tissues)."""
    from .io import validate_pet_volume

    validate_pet_volume(volume, geometry)
    if options.method == DEEP_LEARNING:
        from .pipeline import correct_volume

        result = correct_volume(volume, geometry, model=options.model_folder, mode=options.mode,
                                overlap=options.overlap, output_grid=options.output_grid,
                                crop_fov=options.crop_fov, device=options.device,
                                progress=progress, cancel=cancel)
        return CorrectionOutputs(result.corrected, result.geometry, result.sharpened,
                                 {"timings": result.timings, "settings": result.settings,
                                  "warnings": result.warnings})
    from .classical.command import correct_classical

    labels_on_pet = checked_labels(options, labels, label_geometry, volume.shape, geometry)
    corrected, record = correct_classical(volume, geometry, options.method, labels=labels_on_pet,
                                          fwhm_mm=options.fwhm_mm, names=label_names or None,
                                          progress=progress, cancel=cancel)
    return CorrectionOutputs(corrected, geometry, None, record)
