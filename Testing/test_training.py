"""Training: the study's normalisation and patches, fitting, resume, logs, the train command."""

import csv
import json

import numpy as np
import pytest

from PETPartialVolumeCorrectionLib.classical.psf import gaussian_blur
from PETPartialVolumeCorrectionLib.cli import main
from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.geometry import Geometry
from PETPartialVolumeCorrectionLib.intensity import IntensityScaling
from PETPartialVolumeCorrectionLib.io import write_image
from PETPartialVolumeCorrectionLib.model import ModelConfig, load_model
from PETPartialVolumeCorrectionLib.training.data import (TrainingPair, normalise_pair,
                                                         patches_of_pair)
from PETPartialVolumeCorrectionLib.training.fit import (TrainingHistory, TrainingSettings, fit,
                                                        next_learning_rate)

TINY = ModelConfig(depth=1, base_filters=4, max_filters=8, norm_groups=2)


def blurred_pair(name, rng, size=32):
    truth = np.zeros((size,) * 3, np.float32)
    c = size // 4
    truth[c:-c, c:-c, c:-c] = 1.0
    truth[c + 4:-c - 4, c + 4:-c - 4, c + 4:-c - 4] = 3.0
    truth *= rng.uniform(10.0, 1000.0)
    return TrainingPair(name, gaussian_blur(truth, 4.0, (1.0, 1.0, 1.0)), truth)


def test_pair_normalisation_uses_the_inputs_parameters():
    pair = blurred_pair("a", np.random.default_rng(0))
    normalised = normalise_pair(pair)
    scaling = IntensityScaling.fit(pair.source)
    np.testing.assert_array_equal(normalised.network_input, scaling.normalise(pair.source))
    np.testing.assert_allclose(scaling.restore(normalised.network_target, pair.source), pair.target,
                               rtol=1e-5, atol=1e-3 * pair.target.max())


def test_patches_are_the_grid_tiles_plus_random_ones_flipped_together():
    pair = normalise_pair(blurred_pair("a", np.random.default_rng(1)))
    patches = list(patches_of_pair(pair, 16, 5, np.random.default_rng(2)))
    assert len(patches) == 8 + 5
    assert all(source.shape == (16, 16, 16) for source, _ in patches)
    # Input and target are cut (and mirrored) at the same place: the target's brightest voxels
    # sit where the input's are.
    for source, target in patches:
        if source.max() > 0.5 * pair.network_input.max():
            assert np.corrcoef(source.ravel(), target.ravel())[0, 1] > 0.8


def test_fit_lowers_validation_loss_and_resumes(tmp_path):
    rng = np.random.default_rng(3)
    train = [normalise_pair(blurred_pair(f"t{i}", rng)) for i in range(4)]
    val = [normalise_pair(blurred_pair("v", rng))]
    settings = TrainingSettings(patch_size=16, random_patches=4, batch_size=4, max_epochs=4, patience=10,
                                learning_rate=3e-3)
    history = fit(TINY, train, val, settings, tmp_path)
    assert history.epochs == [1, 2, 3, 4]
    assert history.best_val_loss < min(history.val_loss[0], history.initial_val_loss)
    with open(tmp_path / "loss_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000

    assert [float(r["learning_rate"]) for r in rows] == [3e-3] * 4

    # A state written before the learning rate was recorded resumes at that run's rate.
    state = json.loads((tmp_path / "training_state.json").read_text())
    del state["history"]["learning_rate"]
    (tmp_path / "training_state.json").write_text(json.dumps(state))
    settings.max_epochs = 6
    resumed = fit(TINY, train, val, settings, tmp_path, resume=True)
    assert resumed.epochs == [1, 2, 3, 4, 5, 6]
    assert resumed.val_loss[:4] == history.val_loss
    assert resumed.initial_val_loss == history.initial_val_loss
    assert len(resumed.learning_rate) == 6 and resumed.learning_rate[:4] == [3e-3] * 4


def history_of(val_losses, rates):
    return TrainingHistory(epochs=list(range(1, len(val_losses) + 1)), train_loss=list(val_losses),
                           val_loss=list(val_losses), seconds=[1.0] * len(val_losses), learning_rate=list(rates))


def test_learning_rate_halves_after_a_plateau_then_waits_and_stops_at_the_floor():
    settings = TrainingSettings(learning_rate=1e-3, lr_reduce_patience=3, lr_reduce_factor=0.5,
                                min_learning_rate=2e-4)
    improving = history_of([5, 4, 3, 2], [1e-3] * 4)
    assert next_learning_rate(improving, settings) == 1e-3
    stalled = history_of([2, 3, 3, 3], [1e-3] * 4)  # best at epoch 1, three epochs without improvement
    assert next_learning_rate(stalled, settings) == 5e-4
    just_reduced = history_of([2, 3, 3, 3, 3], [1e-3] * 4 + [5e-4])  # wait three epochs at the new rate
    assert next_learning_rate(just_reduced, settings) == 5e-4
    waited = history_of([2, 3, 3, 3, 3, 3, 3], [1e-3] * 4 + [5e-4] * 3)
    assert next_learning_rate(waited, settings) == 2.5e-4
    at_floor = history_of([2] + [3] * 9, [1e-3] * 4 + [5e-4] * 3 + [2.5e-4] * 3)
    assert next_learning_rate(at_floor, settings) == 2.5e-4  # 1.25e-4 would be below the floor
    never = TrainingSettings(learning_rate=1e-3, lr_reduce_patience=0)
    assert next_learning_rate(stalled, never) == 1e-3


@pytest.mark.parametrize("bad", [{"lr_reduce_factor": 1.5}, {"lr_reduce_factor": 0.0}, {"learning_rate": -1e-3},
                                 {"min_learning_rate": -1.0}, {"lr_reduce_patience": -2}])
def test_a_learning_rate_schedule_that_cannot_work_is_refused_in_one_line(bad, tmp_path, capsys):
    with pytest.raises(PVCInputError, match="reduce factor"):
        TrainingSettings(**bad)
    code = main(["train", "-o", str(tmp_path / "run"), "--simulate-train", "1",
                 *(f"--{name.replace('_', '-')}={value}" for name, value in bad.items()), "--progress", "none"])
    assert code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_train_command_on_a_folder_of_real_pairs_writes_a_verified_model(tmp_path):
    rng = np.random.default_rng(4)
    geometry = Geometry((2.0, 2.0, 2.0))
    for split, count in (("train", 2), ("val", 1)):
        for index in range(count):
            pair = blurred_pair(f"{split}{index}", rng, size=48)
            folder = tmp_path / split / f"subject{index}"
            folder.mkdir(parents=True)
            write_image(pair.source, geometry, folder / "input.nii.gz")
            write_image(pair.target, geometry, folder / "target.nii.gz")
    run = tmp_path / "run"
    code = main(["train", "-o", str(run), "--train-data", str(tmp_path / "train"), "--val-data",
                 str(tmp_path / "val"), "--depth", "1", "--base-filters", "4", "--max-filters", "8",
                 "--patch-size", "32", "--no-grid-patches", "--random-patches", "2", "--max-epochs", "2",
                 "--progress", "none"])
    assert code == 0
    model = load_model(run / "model", device="cpu")
    card = json.loads((run / "model" / "model_card.json").read_text())
    assert card["data"]["train_subjects"] == 2 and card["training"]["epochs_run"] == 2
    assert "Mueller-Gaertner" in card["training_target"]
    window = np.random.default_rng(5).random((1, 32, 32, 32), dtype=np.float32)
    assert np.all(np.isfinite(model.predict_batch(window)))
    # A second run into the same folder is refused unless resumed or forced.
    assert main(["train", "-o", str(run), "--train-data", str(tmp_path / "train"), "--val-data",
                 str(tmp_path / "val"), "--progress", "none"]) == 2


def test_a_warm_started_run_starts_from_the_given_model(tmp_path):
    rng = np.random.default_rng(6)
    geometry = Geometry((2.0, 2.0, 2.0))
    for split, count in (("train", 1), ("val", 1)):
        pair = blurred_pair(f"{split}0", rng, size=48)
        folder = tmp_path / split / "subject0"
        folder.mkdir(parents=True)
        write_image(pair.source, geometry, folder / "input.nii.gz")
        write_image(pair.target, geometry, folder / "target.nii.gz")
    common = ["--train-data", str(tmp_path / "train"), "--val-data", str(tmp_path / "val"), "--depth", "1",
              "--base-filters", "4", "--max-filters", "8", "--patch-size", "32", "--no-grid-patches",
              "--random-patches", "2", "--max-epochs", "2", "--learning-rate", "3e-3", "--progress", "none"]
    assert main(["train", "-o", str(tmp_path / "first"), *common]) == 0
    assert main(["train", "-o", str(tmp_path / "second"), "--warm-start", str(tmp_path / "first" / "model"),
                 *common]) == 0
    first = json.loads((tmp_path / "first" / "model" / "model_card.json").read_text())["training"]
    second = json.loads((tmp_path / "second" / "model" / "model_card.json").read_text())["training"]
    assert first["warm_start"] is None and second["warm_start"]["layers_new"] == []
    assert "head" in second["warm_start"]["layers_copied"]
    # The same validation patches: before training, the warm-started network is the first run's best.
    assert second["warm_start"]["val_loss_before_training"] == pytest.approx(first["best_val_mse"], rel=1e-5)
    assert second["input_val_mse"] == pytest.approx(first["input_val_mse"], rel=1e-6)
