"""The 3D ResUNet that corrects partial volume effects, and the model folder format.

The network maps a normalised PET window ``[n, z, y, x, 1]`` (channels last, float32) to the
corrected window of the same shape. It is built from ``keras.layers`` and ``keras.ops`` only, so
the same weights run on the TensorFlow (default), torch and JAX backends. Keras is imported lazily
inside functions; importing this module does not import Keras.

Architecture (see docs/model.md for the measured choice):
- space-to-depth stem: each 2x2x2 block of voxels becomes 8 channels (lossless), so the first
  level works on a half-resolution grid with ``base_filters`` channels;
- encoder: per level ``blocks_per_level`` pre-activation residual blocks (GroupNorm, ReLU, 3x3x3
  conv, twice, plus the shortcut), then a 2x2x2 stride-2 convolution;
- decoder: 2x2x2 stride-2 transposed convolution, concatenation with the encoder's skip, residual
  blocks; a zero-initialised head gives ``b^3`` half-resolution correction channels;
- output head ``"trilinear"`` (format version 2 cards): the head's channels are averaged into one
  half-resolution correction and upsampled trilinearly, plus a full-resolution refinement (two
  3x3x3 convolutions of the input and the trilinearly upsampled head channels, the last one
  zero-initialised). Trilinear upsampling has no response at the Nyquist frequency, so the output
  has no 2-voxel periodic pattern. ``"depth_to_space"`` (format version 1 cards): each head channel
  becomes one voxel of every 2x2x2 block, which leaves such a pattern;
- global residual: output = input + correction, so an untrained network is the identity.

It is fully convolutional: any window whose sides are multiples of
:attr:`ModelConfig.size_multiple` works.

A model folder holds ``model.weights.h5`` (weights only) and ``model_card.json`` (architecture,
normalisation, training target, PSF range, data, metrics, training time and hardware, versions and
the sha256 of the weights). :func:`load_model` checks all of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import PVCInputError

MODEL_CARD_NAME = "model_card.json"
WEIGHTS_FILE_NAME = "model.weights.h5"
CARD_FORMAT_VERSION = 2

#: What a card of each older format version implies that it does not say (format 1: the
#: depth-to-space head and the founding study's global min-max normalisation).
FORMAT_1_ARCHITECTURE = {"output_head": "depth_to_space"}
FORMAT_1_NORMALISATION = "global_minmax"

#: Folder name of the model shipped with the extension (Resources/Models/<name>/).
SHIPPED_MODEL_NAME = "resunet3d-amyloid-pvc"

DEVICES = ("auto", "cpu", "gpu")
NORMALIZATIONS = ("group", "none")
OUTPUT_HEADS = ("trilinear", "depth_to_space")

#: Channels of the full-resolution refinement of the "trilinear" head.
REFINE_FILTERS = 8

#: GroupNorm epsilon (Keras' default), added to the variance of unit-free normalised activations.
GROUP_NORM_EPSILON = 1e-3


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the 3D ResUNet.

    Attributes:
        depth: number of stride-2 downsamplings after the stem.
        base_filters: channels of the first level; each deeper level doubles them ...
        max_filters: ... up to this many.
        blocks_per_level: residual blocks per level, in the encoder and in the decoder.
        space_to_depth: edge of the voxel blocks folded into channels by the stem (1 = none, 2).
        normalization: "group" (GroupNorm) or "none".
        norm_groups: GroupNorm groups (fewer when a level has fewer channels).
        output_head: "trilinear" or "depth_to_space" (see the module docstring; only used when
            ``space_to_depth`` is 2).
    """

    depth: int = 3
    base_filters: int = 32
    max_filters: int = 96
    blocks_per_level: int = 1
    space_to_depth: int = 2
    normalization: str = "group"
    norm_groups: int = 8
    output_head: str = "trilinear"

    def __post_init__(self):
        for name in ("depth", "base_filters", "max_filters", "blocks_per_level", "space_to_depth",
                     "norm_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if self.space_to_depth not in (1, 2):
            raise ValueError(f"space_to_depth must be 1 or 2, not {self.space_to_depth}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, not {self.normalization!r}")
        if self.output_head not in OUTPUT_HEADS:
            raise ValueError(f"output_head must be one of {OUTPUT_HEADS}, not {self.output_head!r}")
        if self.max_filters < self.base_filters:
            raise ValueError(f"max_filters ({self.max_filters}) is below base_filters ({self.base_filters})")

    def level_filters(self, level: int) -> int:
        """Channels at encoder/decoder level ``level`` (0 = finest)."""
        return min(self.base_filters * 2 ** level, self.max_filters)

    def groups_for(self, channels: int) -> int:
        """GroupNorm groups for a tensor with ``channels`` channels (a divisor of it)."""
        groups = min(self.norm_groups, channels)
        while channels % groups:
            groups -= 1
        return groups

    @property
    def size_multiple(self) -> int:
        """Window sides (voxels) must be multiples of this."""
        return self.space_to_depth * 2 ** self.depth

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> "ModelConfig":
        """The config from a card's ``architecture`` record; unknown keys are an error."""
        if not isinstance(record, dict):
            raise ValueError(f"architecture must be a JSON object, not {type(record).__name__}")
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise ValueError(f"unknown architecture keys {unknown}; known: {sorted(known)}")
        return cls(**record)


def import_keras():
    """Import Keras with TensorFlow as the default backend (``KERAS_BACKEND`` overrides it)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    return keras


def _custom_layers():
    """The four layers the network needs beyond Keras' own, defined once Keras is imported."""
    keras = import_keras()
    from keras import ops

    class ChannelGroupNorm(keras.layers.Layer):
        """GroupNorm over channels-last 3D tensors ``[n, z, y, x, c]``.

        Same result as ``keras.layers.GroupNormalization`` (contiguous channel groups), computed
        from per-channel spatial means, which is ~3x faster on the TensorFlow CPU backend.
        """

        def __init__(self, groups: int, epsilon: float = GROUP_NORM_EPSILON, **kwargs):
            super().__init__(**kwargs)
            self.groups = groups
            self.epsilon = epsilon

        def build(self, input_shape):
            channels = input_shape[-1]
            self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
            self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

        def call(self, x):
            channels = x.shape[-1]
            per_group = channels // self.groups

            def group_mean(per_channel):  # [n, c] -> [n, 1, 1, 1, c], averaged within groups
                grouped = ops.mean(ops.reshape(per_channel, (-1, self.groups, per_group)), axis=-1)
                return ops.reshape(ops.repeat(grouped, per_group, axis=-1), (-1, 1, 1, 1, channels))

            mean = group_mean(ops.mean(x, axis=(1, 2, 3)))
            variance = group_mean(ops.mean(ops.square(x - mean), axis=(1, 2, 3)))
            scale = ops.rsqrt(variance + self.epsilon) * self.gamma
            return x * scale + (self.beta - mean * scale)

        def get_config(self):
            return {**super().get_config(), "groups": self.groups, "epsilon": self.epsilon}

    class SpaceToDepth3D(keras.layers.Layer):
        """``[n, z, y, x, c]`` -> ``[n, z/b, y/b, x/b, b^3 c]``: each b^3 block becomes channels."""

        def __init__(self, block: int, **kwargs):
            super().__init__(**kwargs)
            self.block = block

        def call(self, x):
            b, shape = self.block, ops.shape(x)
            z, y, w, c = shape[1] // b, shape[2] // b, shape[3] // b, shape[4]
            x = ops.reshape(x, (-1, z, b, y, b, w, b, c))
            x = ops.transpose(x, (0, 1, 3, 5, 2, 4, 6, 7))
            return ops.reshape(x, (-1, z, y, w, b ** 3 * c))

        def compute_output_shape(self, input_shape):
            def shrink(side):
                return None if side is None else side // self.block
            n, z, y, x, c = input_shape
            return (n, shrink(z), shrink(y), shrink(x), c * self.block ** 3)

        def get_config(self):
            return {**super().get_config(), "block": self.block}

    class DepthToSpace3D(keras.layers.Layer):
        """The inverse of :class:`SpaceToDepth3D`."""

        def __init__(self, block: int, **kwargs):
            super().__init__(**kwargs)
            self.block = block

        def call(self, x):
            b, shape = self.block, ops.shape(x)
            z, y, w, c = shape[1], shape[2], shape[3], x.shape[-1] // b ** 3
            x = ops.reshape(x, (-1, z, y, w, b, b, b, c))
            x = ops.transpose(x, (0, 1, 4, 2, 5, 3, 6, 7))
            return ops.reshape(x, (-1, z * b, y * b, w * b, c))

        def compute_output_shape(self, input_shape):
            def grow(side):
                return None if side is None else side * self.block
            n, z, y, x, c = input_shape
            return (n, grow(z), grow(y), grow(x), c // self.block ** 3)

        def get_config(self):
            return {**super().get_config(), "block": self.block}

    class LinearUpsample3D(keras.layers.Layer):
        """``[n, z, y, x, c]`` -> ``[n, 2z, 2y, 2x, c]`` by trilinear interpolation (half-voxel
        centres, edges clamped): along each axis ``out[2i] = 3/4 f[i] + 1/4 f[i-1]`` and
        ``out[2i+1] = 3/4 f[i] + 1/4 f[i+1]``."""

        @staticmethod
        def _along(x, axis):
            def part(start, stop):
                return x[(slice(None),) * axis + (slice(start, stop),)]
            before = ops.concatenate([part(0, 1), part(None, -1)], axis=axis)
            after = ops.concatenate([part(1, None), part(-1, None)], axis=axis)
            interleaved = ops.stack([0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after], axis=axis + 1)
            shape = ops.shape(x)
            sides = [shape[1], shape[2], shape[3]]
            sides[axis - 1] = sides[axis - 1] * 2
            return ops.reshape(interleaved, (-1, *sides, x.shape[-1]))

        def call(self, x):
            for axis in (1, 2, 3):
                x = self._along(x, axis)
            return x

        def compute_output_shape(self, input_shape):
            n, z, y, x, c = input_shape
            return (n, *(None if side is None else 2 * side for side in (z, y, x)), c)

    return ChannelGroupNorm, SpaceToDepth3D, DepthToSpace3D, LinearUpsample3D


def build_model(config: ModelConfig):
    """A freshly initialised Keras model for ``config`` taking ``[n, z, y, x, 1]`` float32 windows."""
    keras = import_keras()
    layers = keras.layers
    ChannelGroupNorm, SpaceToDepth3D, DepthToSpace3D, LinearUpsample3D = _custom_layers()

    def norm_relu(x, name):
        if config.normalization == "group":
            x = ChannelGroupNorm(config.groups_for(x.shape[-1]), name=f"{name}_norm")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    def conv(filters, kernel, name, **kwargs):
        return layers.Conv3D(filters, kernel, padding="same", name=name, **kwargs)

    def residual_block(x, filters, name):
        shortcut = x if x.shape[-1] == filters else conv(filters, 1, f"{name}_shortcut")(x)
        y = conv(filters, 3, f"{name}_conv1")(norm_relu(x, f"{name}_pre1"))
        y = conv(filters, 3, f"{name}_conv2")(norm_relu(y, f"{name}_pre2"))
        return layers.Add(name=f"{name}_add")([shortcut, y])

    block = config.space_to_depth
    inputs = keras.Input(shape=(None, None, None, 1), name="pet_window")
    x = SpaceToDepth3D(block, name="space_to_depth")(inputs) if block > 1 else inputs
    x = conv(config.level_filters(0), 3, "stem")(x)

    skips = []
    for level in range(config.depth):
        for index in range(config.blocks_per_level):
            x = residual_block(x, config.level_filters(level), f"enc{level}_block{index}")
        skips.append(x)
        x = layers.Conv3D(config.level_filters(level + 1), 2, strides=2, name=f"down{level}")(x)
    for index in range(config.blocks_per_level):
        x = residual_block(x, config.level_filters(config.depth), f"bottom_block{index}")
    for level in reversed(range(config.depth)):
        x = layers.Conv3DTranspose(config.level_filters(level), 2, strides=2, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        for index in range(config.blocks_per_level):
            x = residual_block(x, config.level_filters(level), f"dec{level}_block{index}")

    x = conv(block ** 3, 3, "head", kernel_initializer="zeros")(norm_relu(x, "head_pre"))
    if block == 1:
        correction = x
    elif config.output_head == "depth_to_space":
        correction = DepthToSpace3D(block, name="depth_to_space")(x)
    else:
        correction = trilinear_head(x, inputs, conv, layers, LinearUpsample3D)
    outputs = layers.Add(name="global_residual")([inputs, correction])
    return keras.Model(inputs, outputs, name="pvc_resunet3d")


def trilinear_head(phases, inputs, conv, layers, LinearUpsample3D):
    """The "trilinear" output head: the mean of the 8 half-resolution head channels upsampled
    trilinearly, plus a zero-initialised full-resolution refinement of the input and the upsampled
    head channels. With the weights of a depth-to-space model the mean is that model's correction
    averaged over each 2x2x2 block, so such weights are a close warm start."""
    keras = import_keras()
    coarse = layers.Conv3D(1, 1, use_bias=False, name="head_mix",
                           kernel_initializer=keras.initializers.Constant(1.0 / phases.shape[-1]))(phases)
    upsampled_phases = LinearUpsample3D(name="upsample_head")(phases)
    refine = layers.Concatenate(name="refine_input")([inputs, upsampled_phases])
    refine = conv(REFINE_FILTERS, 3, "refine_conv1", activation="relu")(refine)
    detail = conv(1, 3, "refine_conv2", kernel_initializer="zeros")(refine)
    upsampled = LinearUpsample3D(name="upsample_correction")(coarse)
    return layers.Add(name="correction")([upsampled, detail])


# ----------------------------------------------------------------------------------------------
# Devices


def _backend_sees_gpu() -> bool:
    """True when the active Keras backend can use a GPU."""
    backend = import_keras().config.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        import torch
        return torch.cuda.is_available()
    if backend == "jax":
        import jax
        return any(device.platform == "gpu" for device in jax.devices())
    return False


def _hide_tensorflow_gpus() -> None:
    """Keep TensorFlow off the GPUs (possible only before TensorFlow first uses them)."""
    if import_keras().config.backend() != "tensorflow":
        return
    import tensorflow as tf
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # already initialised: the CPU device scope still places the work
        pass


def resolve_device(device: str = "auto") -> str:
    """The Keras device name (``"gpu:0"`` or ``"cpu:0"``) for ``device`` in :data:`DEVICES`."""
    if device not in DEVICES:
        raise PVCInputError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if device == "cpu":
        _hide_tensorflow_gpus()
        return "cpu:0"
    has_gpu = _backend_sees_gpu()
    if device == "gpu" and not has_gpu:
        backend = import_keras().config.backend()
        raise PVCInputError(f"a GPU was requested but the Keras backend '{backend}' sees none; "
                            "use device 'auto' or 'cpu', or install a GPU build of the backend")
    return "gpu:0" if has_gpu else "cpu:0"


# ----------------------------------------------------------------------------------------------
# The model folder


class PVCModel:
    """A loaded, verified model: its card, its architecture and a batch predictor on one device."""

    def __init__(self, keras_model, config: ModelConfig, card: dict, folder: Path, device_name: str):
        self.keras_model = keras_model
        self.config = config
        self.card = card
        self.folder = folder
        self.device_name = device_name

    @property
    def on_gpu(self) -> bool:
        return self.device_name.startswith("gpu")

    def predict_batch(self, patches: np.ndarray) -> np.ndarray:
        """Corrected windows for normalised windows ``[n, z, y, x]`` float32 (same shape back).

        Window sides must be multiples of ``config.size_multiple``.
        """
        patches = np.asarray(patches, dtype=np.float32)
        if patches.ndim != 4:
            raise PVCInputError(f"predict_batch takes windows shaped [n, z, y, x], not {patches.shape}")
        multiple = self.config.size_multiple
        if any(side % multiple for side in patches.shape[1:]):
            raise PVCInputError(f"window sides {patches.shape[1:]} must be multiples of {multiple} "
                                "for this model")
        keras = import_keras()
        with keras.device(self.device_name):
            corrected = self.keras_model.predict_on_batch(patches[..., np.newaxis])
        return np.asarray(corrected, dtype=np.float32)[..., 0]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _backend_versions() -> dict:
    keras = import_keras()
    backend = keras.config.backend()
    module = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}.get(backend)
    version = __import__(module).__version__ if module else "unknown"
    return {"keras_version": keras.__version__, "keras_backend": backend, "backend_version": version}


def card_format_version(card: dict, where: str) -> int:
    """The card's format version; a version newer than this code reads is refused."""
    version = card.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= CARD_FORMAT_VERSION:
        raise PVCInputError(f"{where} has format version {version!r}; this software reads versions 1 to "
                            f"{CARD_FORMAT_VERSION} (update PETPartialVolumeCorrection)")
    return version


def card_normalisation(card: dict) -> str:
    """The intensity normalisation method (:data:`intensity.METHODS`) a model was trained with:
    format 1 cards imply the founding study's global min-max."""
    if card_format_version(card, "the model card") == 1:
        return FORMAT_1_NORMALISATION
    record = card.get("intensity_normalisation")
    from .intensity import METHODS

    if not isinstance(record, dict) or record.get("method") not in METHODS:
        raise PVCInputError(f"the model card's 'intensity_normalisation' must be an object whose 'method' is "
                            f"one of {', '.join(METHODS)}")
    return record["method"]


def _config_from_card(card: dict, where: str) -> ModelConfig:
    if "architecture" not in card:
        raise PVCInputError(f"{where} has no 'architecture' record; it cannot say which network to build")
    record = card["architecture"]
    if card_format_version(card, where) == 1 and isinstance(record, dict):
        record = {**FORMAT_1_ARCHITECTURE, **record}
    try:
        return ModelConfig.from_dict(record)
    except (TypeError, ValueError) as error:
        raise PVCInputError(f"{where} has an invalid architecture: {error}") from None


def save_model(keras_model, folder, card: dict, force: bool = False) -> Path:
    """Write ``keras_model``'s weights and ``card`` as the model folder ``folder`` (atomically).

    ``card`` must hold ``architecture`` (a :class:`ModelConfig` dict) matching ``keras_model``; the
    weights' sha256, file name, format and Keras/backend versions are added, and the intensity
    normalisation record (:func:`intensity.normalisation_record`) unless the card has one. Everything else in the
    card (normalisation, training target, PSF range, data, metrics, training time/hardware) is kept.
    """
    folder = Path(folder)
    if folder.exists() and not force:
        raise PVCInputError(f"model folder {folder} already exists; choose another or use --force")
    config = _config_from_card({**card, "format_version": CARD_FORMAT_VERSION}, "the model card to save")
    reference = build_model(config)
    if [tuple(w.shape) for w in reference.weights] != [tuple(w.shape) for w in keras_model.weights]:
        raise PVCInputError("the model's weights do not fit the architecture in the card; "
                            "save the card of the config the model was built from")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        weights_path = staging / WEIGHTS_FILE_NAME
        keras_model.save_weights(str(weights_path))
        from .intensity import normalisation_record

        full_card = {"intensity_normalisation": normalisation_record(), **card,
                     "format_version": CARD_FORMAT_VERSION, "architecture": config.to_dict(),
                     "weights_file": WEIGHTS_FILE_NAME, "weights_sha256": file_sha256(weights_path),
                     **_backend_versions()}
        (staging / MODEL_CARD_NAME).write_text(json.dumps(full_card, indent=2) + "\n")
        if folder.exists():
            replaced = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
            os.replace(folder, replaced / folder.name)
            os.replace(staging, folder)
            shutil.rmtree(replaced)
        else:
            os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def read_model_card(folder) -> dict:
    """The parsed ``model_card.json`` of a model folder (no weight checks)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PVCInputError(f"model folder {folder} does not exist or is not a folder")
    card_path = folder / MODEL_CARD_NAME
    if not card_path.is_file():
        raise PVCInputError(f"model folder {folder} has no {MODEL_CARD_NAME}; "
                            f"a model folder holds {WEIGHTS_FILE_NAME} and {MODEL_CARD_NAME}")
    try:
        card = json.loads(card_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PVCInputError(f"{card_path} is not valid JSON ({error}); the model folder is damaged") from None
    if not isinstance(card, dict):
        raise PVCInputError(f"{card_path} must hold a JSON object, not {type(card).__name__}")
    return card


def load_model(folder, device: str = "auto") -> PVCModel:
    """Load and verify the model folder ``folder`` onto ``device`` ("auto", "cpu" or "gpu").

    Checks, each failing with a one-line :class:`PVCInputError`: the folder and its card exist, the
    card parses, the weights' sha256 matches the card, the architecture builds, the weights load.
    """
    folder = Path(folder)
    card = read_model_card(folder)
    card_path = folder / MODEL_CARD_NAME
    weights_path = folder / WEIGHTS_FILE_NAME
    if not weights_path.is_file():
        raise PVCInputError(f"model folder {folder} has no {WEIGHTS_FILE_NAME}")
    expected = card.get("weights_sha256")
    if not isinstance(expected, str):
        raise PVCInputError(f"{card_path} has no 'weights_sha256'; the weights cannot be verified")
    if file_sha256(weights_path) != expected.lower():
        raise PVCInputError(f"weights {weights_path} do not match the checksum in the card: "
                            "file corrupt or replaced")
    config = _config_from_card(card, str(card_path))
    device_name = resolve_device(device)
    keras = import_keras()
    with keras.device(device_name):
        keras_model = build_model(config)
        try:
            with warnings.catch_warnings():  # a mismatch warns once per layer before it raises
                warnings.simplefilter("ignore")
                keras_model.load_weights(str(weights_path))
        except Exception as error:  # Keras/h5py raise many types; all mean the same to the user
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise PVCInputError(f"weights {weights_path} do not fit the architecture in the card "
                                f"({reason[:200]})") from None
    return PVCModel(keras_model, config, card, folder, device_name)


# ----------------------------------------------------------------------------------------------
# The shipped model


def shipped_model_locations(name: str = SHIPPED_MODEL_NAME) -> tuple[Path, ...]:
    """Where the shipped model folder may be, in search order.

    The extension's Resources/Models/<name> in the source tree; the library's package data
    (``shipped_models/<name>``, pip install); the Slicer module's Resources/Models/<name>.
    """
    library = Path(__file__).resolve().parent
    return (library.parents[1] / "Resources" / "Models" / name,
            library / "shipped_models" / name,
            library.parent / "Resources" / "Models" / name)


def default_model_dir(name: str = SHIPPED_MODEL_NAME) -> Optional[Path]:
    """The installed shipped model folder, or None when no trained model is installed."""
    for location in shipped_model_locations(name):
        if (location / MODEL_CARD_NAME).is_file():
            return location
    return None


def find_model_dir(model_dir=None) -> Path:
    """``model_dir`` if given, else the shipped model; a clear error when there is none."""
    if model_dir is not None:
        return Path(model_dir)
    found = default_model_dir()
    if found is None:
        raise PVCInputError("no trained model is installed (the shipped weights are not part of this "
                            "build yet); pass the folder of a trained model with --model")
    return found


def warm_start(keras_model, model_dir) -> list[str]:
    """Copy into ``keras_model`` the weights of every layer of the model folder ``model_dir`` whose
    name and weight shapes are the same (a "trilinear" model from a "depth_to_space" one keeps all
    but the new head layers). Returns the names of the layers copied."""
    source = load_model(model_dir, device="cpu").keras_model
    source_layers = {layer.name: layer for layer in source.layers}
    copied = []
    for layer in keras_model.layers:
        match = source_layers.get(layer.name)
        if match is None or not layer.weights:
            continue
        if [tuple(w.shape) for w in match.weights] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(match.get_weights())
            copied.append(layer.name)
    return copied
