"""The 3D ResUNet and the model folder: build, identity at init, save/load checks, devices."""

import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from PETPartialVolumeCorrectionLib import model as model_module
from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.model import (MODEL_CARD_NAME, WEIGHTS_FILE_NAME, ModelConfig,
                                                 build_model, default_model_dir, file_sha256,
                                                 find_model_dir, load_model, save_model, warm_start)

TINY = ModelConfig(depth=2, base_filters=4, max_filters=8, blocks_per_level=1, space_to_depth=2,
                   norm_groups=2)
CARD = {"name": "tiny-test", "training_target": "SPM GTM+MG PVC", "psf_fwhm_mm": [6.0, 8.0],
        "normalisation": "min-max to [0, 1], then crop at the 99th percentile"}


def tiny_card(config=TINY, **extra):
    return {**CARD, "architecture": config.to_dict(), **extra}


def randomise_head(keras_model, seed=0):
    """Give the zero-initialised head random weights so the model is no longer the identity."""
    head = keras_model.get_layer("head")
    rng = np.random.default_rng(seed)
    head.set_weights([0.05 * rng.standard_normal(w.shape).astype(np.float32) for w in head.get_weights()])


@pytest.fixture(scope="module")
def saved_tiny_model(tmp_path_factory):
    """A tiny model with a non-trivial head, saved through the real writer; (folder, keras model)."""
    keras_model = build_model(TINY)
    randomise_head(keras_model)
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model(keras_model, folder, tiny_card())
    return folder, keras_model


def copy_folder(source, target):
    target.mkdir()
    for name in (MODEL_CARD_NAME, WEIGHTS_FILE_NAME):
        (target / name).write_bytes((source / name).read_bytes())
    return target


def test_config_round_trips_and_rejects_unknown_or_invalid_values():
    assert ModelConfig.from_dict(TINY.to_dict()) == TINY
    assert ModelConfig.from_dict(json.loads(json.dumps(ModelConfig().to_dict()))) == ModelConfig()
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**TINY.to_dict(), "dropout": 0.1})
    for bad in ({"depth": 0}, {"base_filters": 2.5}, {"space_to_depth": 3}, {"normalization": "batch"},
                {"max_filters": 2}):
        with pytest.raises(ValueError):
            ModelConfig.from_dict({**TINY.to_dict(), **bad})


def test_level_filters_and_window_multiple():
    config = ModelConfig(depth=3, base_filters=32, max_filters=96, space_to_depth=2)
    assert [config.level_filters(level) for level in range(4)] == [32, 64, 96, 96]
    assert config.size_multiple == 16
    assert ModelConfig(depth=4, space_to_depth=1).size_multiple == 16
    assert config.groups_for(12) == 6 and config.groups_for(4) == 4


@pytest.mark.parametrize("config", [TINY, ModelConfig(depth=2, base_filters=4, max_filters=8,
                                                      space_to_depth=1, normalization="none")])
def test_untrained_model_is_the_identity_on_non_cubic_windows(config):
    keras_model = build_model(config)
    windows = np.random.default_rng(0).random((2, 16, 24, 32, 1), dtype=np.float32)
    np.testing.assert_array_equal(keras_model.predict_on_batch(windows), windows)
    assert keras_model.count_params() > 1000


def test_group_norm_layer_matches_keras_group_normalization():
    import keras

    group_norm = model_module._custom_layers()[0]
    x = (np.random.default_rng(1).random((2, 6, 5, 4, 12), dtype=np.float32) * 4 + 3)
    ours = group_norm(3)(x)
    reference = keras.layers.GroupNormalization(groups=3)(x)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(reference), atol=2e-5)


def test_space_to_depth_is_lossless_and_inverted_by_depth_to_space():
    _, space_to_depth, depth_to_space, _ = model_module._custom_layers()
    x = np.arange(2 * 4 * 6 * 8, dtype=np.float32).reshape(2, 4, 6, 8, 1)
    folded = np.asarray(space_to_depth(2)(x))
    assert folded.shape == (2, 2, 3, 4, 8)
    np.testing.assert_array_equal(folded[0, 0, 0, 0], x[0, :2, :2, :2, 0].ravel())
    np.testing.assert_array_equal(np.asarray(depth_to_space(2)(folded)), x)


def test_linear_upsampling_interpolates_between_voxel_centres_and_has_no_nyquist_response():
    upsample = model_module._custom_layers()[3]()
    ramp = np.arange(4, dtype=np.float32)
    field = (ramp[:, None, None] + 10 * ramp[None, :, None] + 100 * ramp[None, None, :])[None, ..., None]
    upsampled = np.asarray(upsample(field))[0, ..., 0]
    assert upsampled.shape == (8, 8, 8)
    centres = np.clip((np.arange(8) - 0.5) / 2, 0, 3)  # fine voxel centres in coarse voxel units, clamped
    expected = centres[:, None, None] + 10 * centres[None, :, None] + 100 * centres[None, None, :]
    np.testing.assert_allclose(upsampled, expected, atol=1e-4)
    noise = np.random.default_rng(3).standard_normal((1, 8, 8, 8, 2)).astype(np.float32)
    noise[:, :, :, -1] = noise[:, :, :, 0]  # with clamped edges the coefficient is (first - last) / 2
    fine = np.asarray(upsample(noise))[0, ..., 0]
    alternating = (-1.0) ** np.arange(16)
    assert np.abs(np.tensordot(fine, alternating, axes=([2], [0]))).max() < 1e-4
    assert np.abs(fine).max() > 0.5


def test_trilinear_head_warm_started_from_depth_to_space_weights_gives_the_block_averaged_correction(tmp_path):
    old_config = ModelConfig(depth=2, base_filters=4, max_filters=8, output_head="depth_to_space",
                             normalization="none")
    old = build_model(old_config)
    randomise_head(old)
    save_model(old, tmp_path / "old", tiny_card(config=old_config))
    new = build_model(ModelConfig(depth=2, base_filters=4, max_filters=8, normalization="none"))
    copied = warm_start(new, tmp_path / "old")
    assert "head" in copied and "stem" in copied
    assert not {"head_mix", "refine_conv1", "refine_conv2"} & set(copied)
    windows = np.random.default_rng(4).random((1, 16, 16, 16, 1), dtype=np.float32)
    old_correction = old.predict_on_batch(windows)[0, ..., 0] - windows[0, ..., 0]
    block_mean = old_correction.reshape(8, 2, 8, 2, 8, 2).mean(axis=(1, 3, 5))[None, ..., None]
    expected = np.asarray(model_module._custom_layers()[3]()(block_mean))[0, ..., 0]
    np.testing.assert_allclose(new.predict_on_batch(windows)[0, ..., 0] - windows[0, ..., 0], expected, atol=1e-5)


def test_format_1_cards_load_with_the_depth_to_space_head_and_newer_formats_are_refused(saved_tiny_model, tmp_path):
    folder, _ = saved_tiny_model
    old_config = ModelConfig(**{**TINY.to_dict(), "output_head": "depth_to_space"})
    keras_model = build_model(old_config)
    randomise_head(keras_model)
    save_model(keras_model, tmp_path / "v1", tiny_card(config=old_config))
    card_path = tmp_path / "v1" / MODEL_CARD_NAME
    card = json.loads(card_path.read_text())
    del card["architecture"]["output_head"], card["intensity_normalisation"]
    card_path.write_text(json.dumps({**card, "format_version": 1}))
    loaded = load_model(tmp_path / "v1", device="cpu")
    assert loaded.config == old_config
    assert model_module.card_normalisation(loaded.card) == "global_minmax"
    assert model_module.card_normalisation(load_model(folder, device="cpu").card) == "brain_percentile"
    card_path.write_text(json.dumps({**card, "format_version": model_module.CARD_FORMAT_VERSION + 1}))
    with pytest.raises(PVCInputError, match="format version"):
        load_model(tmp_path / "v1", device="cpu")


def test_saved_model_loads_through_the_real_loader_and_predicts_like_the_original(saved_tiny_model):
    folder, keras_model = saved_tiny_model
    loaded = load_model(folder, device="cpu")
    assert loaded.config == TINY and loaded.device_name == "cpu:0"
    windows = np.random.default_rng(2).random((3, 16, 16, 24), dtype=np.float32)
    corrected = loaded.predict_batch(windows)
    assert corrected.shape == windows.shape and corrected.dtype == np.float32
    assert np.all(np.isfinite(corrected))
    np.testing.assert_allclose(corrected, keras_model.predict_on_batch(windows[..., None])[..., 0], atol=1e-6)
    assert np.abs(corrected - windows).max() > 1e-3  # the random head changes the output


def test_card_keeps_the_training_record_and_adds_checksum_and_versions(saved_tiny_model):
    folder, _ = saved_tiny_model
    card = json.loads((folder / MODEL_CARD_NAME).read_text())
    assert {key: card[key] for key in CARD} == CARD
    assert card["architecture"] == TINY.to_dict()
    assert card["weights_sha256"] == file_sha256(folder / WEIGHTS_FILE_NAME)
    assert card["keras_backend"] == "tensorflow" and card["keras_version"] and card["backend_version"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tiny"]  # no staging left behind


def test_save_refuses_an_existing_folder_unless_forced(saved_tiny_model, tmp_path):
    folder, keras_model = saved_tiny_model
    target = copy_folder(folder, tmp_path / "model")
    with pytest.raises(PVCInputError, match="already exists"):
        save_model(keras_model, target, tiny_card())
    save_model(keras_model, target, tiny_card(name="replaced"), force=True)
    assert json.loads((target / MODEL_CARD_NAME).read_text())["name"] == "replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_save_refuses_a_card_that_does_not_describe_the_model(saved_tiny_model, tmp_path):
    _, keras_model = saved_tiny_model
    other = ModelConfig(depth=2, base_filters=8, max_filters=8, norm_groups=2)
    with pytest.raises(PVCInputError, match="do not fit"):
        save_model(keras_model, tmp_path / "model", tiny_card(config=other))
    with pytest.raises(PVCInputError, match="architecture"):
        save_model(keras_model, tmp_path / "model", dict(CARD))
    assert not any(tmp_path.iterdir())


def test_missing_folder_card_or_weights_are_input_errors(saved_tiny_model, tmp_path):
    folder, _ = saved_tiny_model
    with pytest.raises(PVCInputError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    target = copy_folder(folder, tmp_path / "no_card")
    (target / MODEL_CARD_NAME).unlink()
    with pytest.raises(PVCInputError, match=f"has no {MODEL_CARD_NAME}"):
        load_model(target)
    target = copy_folder(folder, tmp_path / "no_weights")
    (target / WEIGHTS_FILE_NAME).unlink()
    with pytest.raises(PVCInputError, match=f"has no {WEIGHTS_FILE_NAME}"):
        load_model(target)


def test_unparsable_card_is_an_input_error(saved_tiny_model, tmp_path):
    target = copy_folder(saved_tiny_model[0], tmp_path / "model")
    (target / MODEL_CARD_NAME).write_text("{\"architecture\": ")
    with pytest.raises(PVCInputError, match="not valid JSON"):
        load_model(target)
    (target / MODEL_CARD_NAME).write_text("[1, 2]")
    with pytest.raises(PVCInputError, match="JSON object"):
        load_model(target)


def test_corrupt_weights_or_wrong_checksum_are_input_errors(saved_tiny_model, tmp_path):
    target = copy_folder(saved_tiny_model[0], tmp_path / "corrupt")
    weights = bytearray((target / WEIGHTS_FILE_NAME).read_bytes())
    weights[len(weights) // 2] ^= 0xFF
    (target / WEIGHTS_FILE_NAME).write_bytes(bytes(weights))
    with pytest.raises(PVCInputError, match="do not match the checksum in the card: file corrupt or replaced"):
        load_model(target)

    target = copy_folder(saved_tiny_model[0], tmp_path / "wrong_sha")
    card = json.loads((target / MODEL_CARD_NAME).read_text())
    card["weights_sha256"] = "0" * 64
    (target / MODEL_CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(PVCInputError, match="checksum"):
        load_model(target)
    del card["weights_sha256"]
    (target / MODEL_CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(PVCInputError, match="weights_sha256"):
        load_model(target)


@pytest.mark.parametrize("architecture, message", [
    ({**TINY.to_dict(), "depth": -1}, "invalid architecture"),
    ({**TINY.to_dict(), "kernel": 5}, "invalid architecture"),
    ("resunet", "invalid architecture"),
    ({**TINY.to_dict(), "base_filters": 8}, "do not fit the architecture"),
])
def test_bad_architecture_in_the_card_is_an_input_error(saved_tiny_model, tmp_path, architecture, message):
    target = copy_folder(saved_tiny_model[0], tmp_path / "model")
    card = json.loads((target / MODEL_CARD_NAME).read_text())
    card["architecture"] = architecture
    (target / MODEL_CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(PVCInputError, match=message):
        load_model(target)


def test_windows_that_do_not_fit_the_network_are_input_errors(saved_tiny_model):
    loaded = load_model(saved_tiny_model[0], device="cpu")
    with pytest.raises(PVCInputError, match="multiples of 8"):
        loaded.predict_batch(np.zeros((1, 16, 16, 12), np.float32))
    with pytest.raises(PVCInputError, match=r"\[n, z, y, x\]"):
        loaded.predict_batch(np.zeros((16, 16, 16), np.float32))


def test_device_choice(saved_tiny_model):
    with pytest.raises(PVCInputError, match="unknown device"):
        load_model(saved_tiny_model[0], device="tpu")
    if model_module._backend_sees_gpu():
        assert load_model(saved_tiny_model[0], device="gpu").on_gpu
    else:
        assert load_model(saved_tiny_model[0], device="auto").device_name == "cpu:0"
        with pytest.raises(PVCInputError, match="GPU was requested"):
            load_model(saved_tiny_model[0], device="gpu")


def test_shipped_model_lookup(monkeypatch, tmp_path, saved_tiny_model):
    first, second = tmp_path / "source_tree" / "m", tmp_path / "package_data" / "m"
    monkeypatch.setattr(model_module, "shipped_model_locations", lambda name="m": (first, second))
    assert default_model_dir() is None
    with pytest.raises(PVCInputError, match="no trained model is installed"):
        find_model_dir(None)
    second.parent.mkdir()
    copy_folder(saved_tiny_model[0], second)
    assert default_model_dir() == second
    assert find_model_dir(None) == second
    assert find_model_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_shipped_model_locations_include_source_tree_and_package_data():
    locations = model_module.shipped_model_locations("name")
    library = os.path.dirname(os.path.abspath(model_module.__file__))
    assert locations[1] == model_module.Path(library) / "shipped_models" / "name"
    repo_root = model_module.Path(library).parents[1]
    assert locations[0] == repo_root / "Resources" / "Models" / "name"


def test_network_code_uses_keras_layers_and_ops_only():
    source = inspect.getsource(model_module._custom_layers) + inspect.getsource(build_model)
    for backend_name in ("tensorflow", "import tf", "torch", "jax", "numpy", "np."):
        assert backend_name not in source


def test_library_modules_import_without_keras():
    code = ("import sys; import PETPartialVolumeCorrectionLib.model, PETPartialVolumeCorrectionLib.inference; "
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


def test_production_config_fits_the_default_windows_and_the_weight_size_limit():
    from PETPartialVolumeCorrectionLib.inference import DEFAULT_PATCH_SIZE

    production = ModelConfig()
    assert all(side % production.size_multiple == 0 for side in DEFAULT_PATCH_SIZE.values())
    parameters = build_model(production).count_params()
    assert 2_000_000 < parameters and 4 * parameters <= 16 * 2 ** 20  # float32 weights <= 16 MiB


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_weights_saved_under_tensorflow_give_the_same_output_on_another_backend(saved_tiny_model, tmp_path,
                                                                                backend):
    import importlib.util

    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    folder, keras_model = saved_tiny_model
    windows = np.random.default_rng(4).random((1, 16, 16, 16), dtype=np.float32)
    np.save(tmp_path / "windows.npy", windows)
    code = ("import sys, numpy as np; from PETPartialVolumeCorrectionLib.model import load_model; "
            f"m = load_model(sys.argv[1], 'cpu'); np.save(sys.argv[3], m.predict_batch(np.load(sys.argv[2])))")
    subprocess.run([sys.executable, "-c", code, str(folder), str(tmp_path / "windows.npy"),
                    str(tmp_path / "out.npy")], check=True, env={**os.environ, "KERAS_BACKEND": backend})
    expected = keras_model.predict_on_batch(windows[..., None])[..., 0]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)
