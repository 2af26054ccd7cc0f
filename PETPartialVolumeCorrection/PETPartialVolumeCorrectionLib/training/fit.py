"""Fitting the 3D ResUNet: the founding study's recipe (MSE, Adam, batch 4, 128^3 patches).

Each epoch draws, from every training subject, the study's eight 128^3 grid patches (when the patch
size tiles the volume and ``grid_patches`` is on) plus ``random_patches`` patches centred on random
head voxels, mirrored left-right at random. Validation uses fixed patches of the validation subjects
(same rule, fixed seed). When the validation loss has not improved for ``lr_reduce_patience`` epochs
the learning rate is multiplied by ``lr_reduce_factor`` (down to ``min_learning_rate``); early
stopping keeps the best weights. Every epoch writes the last weights (with Adam's state) and a state
file so a run can be resumed, a loss log (CSV) and a learning-curve PNG (train and validation loss,
as the study's figure 5).
"""

from __future__ import annotations

import csv
import io
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import PVCInputError
from ..io import atomic_file, write_text_atomic
from ..progress import CancelCheck, ProgressCallback, raise_if_cancelled, report
from .data import NormalisedPair, patches_of_pair

BEST_WEIGHTS = "best.weights.h5"
LAST_WEIGHTS = "last.weights.h5"
STATE_FILE = "training_state.json"
LOSS_LOG = "loss_log.csv"
LEARNING_CURVE = "learning_curve.png"


@dataclass
class TrainingSettings:
    """How to fit. Patch sizes in voxels of the 1 mm grid; time in minutes."""

    patch_size: int = 128
    grid_patches: bool = True
    random_patches: int = 8
    batch_size: int = 4
    learning_rate: float = 1e-3
    lr_reduce_patience: int = 5  # epochs without improvement before the learning rate drops; 0: never
    lr_reduce_factor: float = 0.5
    min_learning_rate: float = 1e-5
    max_epochs: int = 300
    patience: int = 10
    max_minutes: Optional[float] = None
    seed: int = 0

    def __post_init__(self):
        if not (self.learning_rate > 0 and 0 < self.lr_reduce_factor < 1 and self.min_learning_rate >= 0
                and self.lr_reduce_patience >= 0):
            raise PVCInputError(f"learning rate {self.learning_rate} must be > 0, its reduce factor "
                                f"{self.lr_reduce_factor} in (0, 1), its floor {self.min_learning_rate} >= 0 "
                                f"and the reduce patience {self.lr_reduce_patience} >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingHistory:
    """Per-epoch losses (MSE in normalised units) and wall time."""

    initial_val_loss: Optional[float] = None  # the input itself as the prediction (an untrained network)
    warm_start: Optional[dict] = None  # model folder, weights sha256, layers copied, validation loss before training
    epochs: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    learning_rate: list = field(default_factory=list)  # Adam's learning rate during each epoch

    @property
    def best_epoch(self) -> Optional[int]:
        return self.epochs[int(np.argmin(self.val_loss))] if self.val_loss else None

    @property
    def training_seconds(self) -> float:
        """Training time of the whole run so far (all sessions of a resumed run), s."""
        return float(sum(self.seconds))

    @property
    def best_val_loss(self) -> float:
        return float(min(self.val_loss)) if self.val_loss else float("inf")

    def to_dict(self) -> dict:
        return asdict(self)


def next_learning_rate(history: TrainingHistory, settings: TrainingSettings) -> float:
    """The learning rate for the epoch after the last one in ``history`` (reduce on plateau).

    It drops by ``lr_reduce_factor`` when neither an improvement nor a drop happened in the last
    ``lr_reduce_patience`` epochs, and never below ``min_learning_rate``.
    """
    current = history.learning_rate[-1] if history.learning_rate else settings.learning_rate
    patience = settings.lr_reduce_patience
    if patience <= 0 or len(history.epochs) < patience:
        return current
    recent = history.learning_rate[-patience:]
    stalled = history.epochs[-1] - history.best_epoch >= patience and all(rate == current for rate in recent)
    if stalled and current * settings.lr_reduce_factor >= settings.min_learning_rate * (1 - 1e-9):
        return current * settings.lr_reduce_factor
    return current


def epoch_patches(pairs: Sequence[NormalisedPair], settings: TrainingSettings,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """All patches of one epoch, shuffled: inputs and targets ``[n, z, y, x]`` float32."""
    sources, targets = [], []
    for pair in pairs:
        grid = settings.grid_patches and all(s % settings.patch_size == 0 for s in pair.network_input.shape)
        for source, target in patches_of_pair(pair, settings.patch_size, settings.random_patches, rng,
                                              grid_patches=grid):
            sources.append(source)
            targets.append(target)
    order = rng.permutation(len(sources))
    return np.stack(sources)[order], np.stack(targets)[order]


def _batches(sources: np.ndarray, targets: np.ndarray, batch_size: int):
    for start in range(0, len(sources), batch_size):
        yield sources[start:start + batch_size, ..., None], targets[start:start + batch_size, ..., None]


def validation_loss(keras_model, sources: np.ndarray, targets: np.ndarray, batch_size: int) -> float:
    """Mean squared error over all validation voxels (normalised units)."""
    total, count = 0.0, 0
    for source, target in _batches(sources, targets, batch_size):
        prediction = np.asarray(keras_model.predict_on_batch(source), dtype=np.float64)
        total += float(np.sum((prediction - target) ** 2))
        count += target.size
    return total / count


def write_loss_log(history: TrainingHistory, path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["epoch", "train_mse", "val_mse", "seconds", "learning_rate"])
    writer.writerows(zip(history.epochs, history.train_loss, history.val_loss, history.seconds,
                         history.learning_rate))
    write_text_atomic(path, buffer.getvalue(), force=True)


def plot_learning_curve(history: TrainingHistory, path: Path) -> None:
    """Train and validation loss per epoch (log scale), best epoch marked. Where matplotlib is not
    installed (a bare GPU machine) it says so and leaves the loss log as the record."""
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: no {path.name}; plot {LOSS_LOG} elsewhere", flush=True)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(history.epochs, history.train_loss, label="training loss")
    axes.plot(history.epochs, history.val_loss, label="validation loss")
    if history.initial_val_loss is not None:
        axes.axhline(history.initial_val_loss, color="grey", linestyle="--", label="validation loss of the input")
    if history.best_epoch is not None:
        axes.axvline(history.best_epoch, color="grey", linestyle=":", label=f"best epoch ({history.best_epoch})")
    rate_changes = [epoch for epoch, before, after in zip(history.epochs[1:], history.learning_rate,
                                                          history.learning_rate[1:]) if after != before]
    for index, epoch in enumerate(rate_changes):
        axes.axvline(epoch, color="tab:green", linewidth=0.8, alpha=0.6,
                     label="learning rate lowered" if index == 0 else None)
    axes.set_xlabel("epoch")
    axes.set_ylabel("MSE (normalised units)")
    axes.set_yscale("log")
    axes.set_title("3D ResUNet learning curves")
    axes.legend()
    figure.tight_layout()
    with atomic_file(path, force=True) as temporary:
        figure.savefig(temporary, dpi=120)
    plt.close(figure)


def hardware_description() -> str:
    from ..model import import_keras

    keras = import_keras()
    backend = keras.config.backend()
    gpu = "none"
    if backend == "torch":
        import torch
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    elif backend == "tensorflow":
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        gpu = gpus[0].name if gpus else "none"
    import os
    return f"{platform.machine()} {os.cpu_count()} CPU cores, GPU: {gpu}, Keras backend {backend}"


def fit(model_config, train_pairs: Sequence[NormalisedPair], val_pairs: Sequence[NormalisedPair],
        settings: TrainingSettings, output_dir, resume: bool = False, warm_start_dir=None,
        progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None) -> TrainingHistory:
    """Train a ResUNet of ``model_config`` and keep the best weights in ``output_dir``.

    ``warm_start_dir``: a model folder whose layers of the same name and shape start the new network
    (:func:`model.warm_start`; ignored when resuming). Returns the history; ``output_dir`` holds
    best/last weights, the state file, the loss log and the learning curve.
    """
    from ..model import build_model, import_keras, read_model_card, warm_start

    if not train_pairs or not val_pairs:
        raise PVCInputError("training needs at least one training and one validation subject")
    keras = import_keras()
    keras.utils.set_random_seed(settings.seed)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    keras_model = build_model(model_config)
    keras_model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss="mse")

    history, start_epoch = TrainingHistory(), 1
    state_path = output_dir / STATE_FILE
    if resume:
        if not state_path.is_file():
            raise PVCInputError(f"{output_dir}: nothing to resume (no {STATE_FILE})")
        state = json.loads(state_path.read_text())
        history = TrainingHistory(**state["history"])
        if len(history.learning_rate) < len(history.epochs):  # a run from before the schedule was recorded
            history.learning_rate = [state["settings"]["learning_rate"]] * len(history.epochs)
        keras_model.optimizer.build(keras_model.trainable_variables)  # so Adam's moments load too
        keras_model.load_weights(str(output_dir / LAST_WEIGHTS))
        start_epoch = history.epochs[-1] + 1

    val_rng = np.random.default_rng(settings.seed + 1_000_003)
    val_sources, val_targets = epoch_patches(val_pairs, settings, val_rng)
    if not resume:
        history.initial_val_loss = float(np.mean((val_sources.astype(np.float64) - val_targets) ** 2))
        if warm_start_dir is not None:
            copied = warm_start(keras_model, warm_start_dir)
            history.warm_start = {
                "model_dir": str(warm_start_dir), "weights_sha256": read_model_card(warm_start_dir).get("weights_sha256"),
                "layers_copied": copied, "layers_new": [layer.name for layer in keras_model.layers
                                                        if layer.weights and layer.name not in copied],
                "val_loss_before_training": validation_loss(keras_model, val_sources, val_targets,
                                                            settings.batch_size)}
    rng = np.random.default_rng([settings.seed, start_epoch])
    for epoch in range(start_epoch, settings.max_epochs + 1):
        epoch_start = time.perf_counter()
        learning_rate = next_learning_rate(history, settings)
        keras_model.optimizer.learning_rate = learning_rate  # after loading, which restores the old rate
        sources, targets = epoch_patches(train_pairs, settings, rng)
        losses = []
        n_batches = -(-len(sources) // settings.batch_size)
        for index, (source, target) in enumerate(_batches(sources, targets, settings.batch_size)):
            raise_if_cancelled(cancel)
            losses.append(float(np.asarray(keras_model.train_on_batch(source, target))))
            report(progress, (index + 1) / n_batches, f"epoch {epoch}: training loss {np.mean(losses):.3g}")
        val_mse = validation_loss(keras_model, val_sources, val_targets, settings.batch_size)
        history.epochs.append(epoch)
        history.train_loss.append(float(np.mean(losses)))
        history.val_loss.append(val_mse)
        history.seconds.append(time.perf_counter() - epoch_start)
        history.learning_rate.append(learning_rate)
        for name in ((BEST_WEIGHTS, LAST_WEIGHTS) if val_mse <= history.best_val_loss else (LAST_WEIGHTS,)):
            with atomic_file(output_dir / name, force=True) as temporary:
                keras_model.save_weights(str(temporary))
        write_text_atomic(state_path, json.dumps({"history": history.to_dict(), "settings": settings.to_dict(),
                                                  "architecture": model_config.to_dict()}, indent=2), force=True)
        write_loss_log(history, output_dir / LOSS_LOG)
        report(progress, 1.0, f"epoch {epoch}: train {history.train_loss[-1]:.3g}, validation {val_mse:.3g}, "
                              f"learning rate {learning_rate:.3g}")
        if epoch - history.best_epoch >= settings.patience:
            break
        if settings.max_minutes is not None and history.training_seconds / 60.0 >= settings.max_minutes:
            break
    plot_learning_curve(history, output_dir / LEARNING_CURVE)
    return history
