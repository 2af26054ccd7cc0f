"""The evaluation harness: the study's table on a simulated subject, scored per method and reference."""

import json

import numpy as np
import pytest

from PETPartialVolumeCorrectionLib.model import ModelConfig, build_model, save_model
from PETPartialVolumeCorrectionLib.training.evaluate import (evaluate_on_simulated, format_table,
                                                            write_evaluation)


@pytest.fixture(scope="module")
def identity_model_dir(tmp_path_factory):
    """An untrained ResUNet: its zero-initialised head makes it exactly the identity."""
    config = ModelConfig(depth=1, base_filters=4, max_filters=8, norm_groups=2)
    folder = tmp_path_factory.mktemp("models") / "identity"
    save_model(build_model(config), folder, {"name": "identity", "architecture": config.to_dict()})
    return folder


def test_identity_network_scores_exactly_as_its_input(tmp_path, identity_model_dir):
    table = evaluate_on_simulated(identity_model_dir, [11], device="cpu", processes=1,
                                  figure_path=tmp_path / "figure6.png")
    summary = table.summary()
    assert summary["subjects"] == 1
    for reference in ("mg_target", "truth"):
        cells = summary["table"][reference]
        # The identity network returns the input: the same scores, to float rounding.
        assert cells["network"]["mean_ssim"] == pytest.approx(cells["input"]["mean_ssim"], abs=1e-5)
        assert cells["network"]["mean_rmse"] == pytest.approx(cells["input"]["mean_rmse"], rel=1e-4)
        # The sharpen filter changes the image, so it scores differently.
        assert cells["sharpen"]["mean_rmse"] != pytest.approx(cells["input"]["mean_rmse"], rel=1e-3)
        assert 0.0 < cells["input"]["mean_ssim"] < 1.0
    # PVE lowers cortical SUVR: the uncorrected input is off the true SUVR by more than rounding.
    assert summary["table"]["truth"]["input"]["median_abs_suvr_error"] > 0.01
    assert (tmp_path / "figure6.png").stat().st_size > 10_000

    write_evaluation(table, tmp_path, "Held-out test set")
    saved = json.loads((tmp_path / "held_out_test_set.json").read_text())
    assert saved["subjects"] == ["seed11"]
    markdown = (tmp_path / "held_out_test_set.md").read_text()
    assert markdown == format_table(summary, "Held-out test set") + "\n"
    assert "| average SSIM |" in markdown and "3D-ResUNet" in markdown
    assert np.isfinite(saved["summary"]["mean_seconds_per_subject"])


def test_metrics_recorded_in_the_card_keep_the_model_loadable(identity_model_dir):
    from argparse import Namespace

    from PETPartialVolumeCorrectionLib.model import load_model, read_model_card
    from PETPartialVolumeCorrectionLib.training.command import record_metrics_in_card

    weights_before = (identity_model_dir / "model.weights.h5").read_bytes()
    summaries = {"Held-out test set": {"subjects": 1, "table": {"mg_target": {"network": {"mean_ssim": 0.5}}}}}
    record_metrics_in_card(identity_model_dir, summaries,
                           Namespace(n=1, out_of_range_n=0, seed=0, mode="gaussian"))
    card = read_model_card(identity_model_dir)
    assert card["metrics"]["evaluation"] == summaries
    assert card["metrics"]["command"].startswith("pet-pvc evaluate --n 1")
    assert (identity_model_dir / "model.weights.h5").read_bytes() == weights_before
    assert load_model(identity_model_dir, device="cpu").card["metrics"]["evaluation"] == summaries
