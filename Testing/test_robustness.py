"""Invariance checks needing no ground truth (training/robustness.py) on a small two-millimetre head:
each property is computed through the real resampling, and a correction that breaks one is caught."""

import numpy as np
import pytest
from scipy import ndimage

from PETPartialVolumeCorrectionLib.geometry import Geometry
from PETPartialVolumeCorrectionLib.grid import resample_to_standard_grid
from PETPartialVolumeCorrectionLib.model import ModelConfig, build_model, save_model
from PETPartialVolumeCorrectionLib.pipeline import correct_volume
from PETPartialVolumeCorrectionLib.simulation.regions import (CEREBELLAR_CORTEX, CEREBRAL_WM, HEAD_EXTRACEREBRAL,
                                                              cortical_ids)
from PETPartialVolumeCorrectionLib.training.robustness import (PROPERTIES, RobustnessCase, format_line,
                                                               subject_properties, summarise)

GEOMETRY = Geometry((2.0, 2.0, 2.0), (-95.0, -111.0, -80.0))
SHAPE = (80, 112, 96)  # [z, y, x]: 160 x 224 x 192 mm, the head in the upper part, a neck below


def ellipsoid(centre_mm, radii_mm):
    z, y, x = (np.arange(n)[:, None, None] * 2.0 for n in SHAPE)
    y, x = np.moveaxis(y, 0, 1), np.moveaxis(x, 0, 2)
    return (((z - centre_mm[0]) / radii_mm[0]) ** 2 + ((y - centre_mm[1]) / radii_mm[1]) ** 2
            + ((x - centre_mm[2]) / radii_mm[2]) ** 2) <= 1.0


@pytest.fixture(scope="module")
def case():
    labels = np.zeros(SHAPE, np.int16)
    labels[ellipsoid((100, 112, 96), (58, 90, 72))] = HEAD_EXTRACEREBRAL
    labels[ellipsoid((20, 118, 96), (40, 34, 34))] = HEAD_EXTRACEREBRAL     # the neck
    labels[ellipsoid((104, 112, 96), (48, 80, 62))] = cortical_ids()[0]
    labels[ellipsoid((104, 112, 96), (38, 70, 52))] = CEREBRAL_WM["left"]
    labels[ellipsoid((62, 150, 96), (12, 22, 40))] = CEREBELLAR_CORTEX["left"]
    activity = {HEAD_EXTRACEREBRAL: 300.0, cortical_ids()[0]: 1600.0, CEREBRAL_WM["left"]: 2000.0,
                CEREBELLAR_CORTEX["left"]: 1000.0}
    truth = np.zeros(SHAPE, np.float32)
    for label, value in activity.items():
        truth[labels == label] = value
    pet = ndimage.gaussian_filter(truth, 1.5) * np.random.default_rng(0).normal(1.0, 0.03, SHAPE)
    gm = np.isin(labels, [cortical_ids()[0], CEREBELLAR_CORTEX["left"]]).astype(np.float32)
    wm = (labels == CEREBRAL_WM["left"]).astype(np.float32)
    return RobustnessCase("phantom", pet.astype(np.float32), GEOMETRY, labels, gm, wm, GEOMETRY, True)


def standard_of(volume, geometry):
    return resample_to_standard_grid(volume, geometry, crop_fov=True)[0]


def test_every_property_but_the_suvr_rise_holds_for_the_identity_and_the_failure_is_reported(case):
    figures = subject_properties(standard_of, case)
    assert figures["hot_spot_below_cerebellum_mm"] == pytest.approx(30.0, abs=2.0)
    lines = summarise({"phantom": figures})
    assert [line["property"] for line in lines] == [name for name, _, _ in PROPERTIES]
    verdicts = {line["property"]: line["holds"] for line in lines}
    assert verdicts.pop("f_suvr_raised") is False  # the identity does not raise the SUVR as MG does
    assert all(verdicts.values()), lines
    assert figures["a_scale"] < 1e-5 and figures["d_flip"] < 1e-4 and figures["d_shift"] < 1e-4
    assert format_line(lines[-1]).startswith("FAIL f_suvr_raised: 1 (limit 0, 1 subjects)")


def test_a_correction_scaled_by_the_image_maximum_fails_the_hot_spot_check(case):
    def by_maximum(volume, geometry):  # the study's global min-max flaw: the hottest voxel sets the result
        standard = standard_of(volume, geometry)
        return standard * (1.0 + 0.5 * np.minimum(standard / standard.max(), 1.0))

    figures = subject_properties(by_maximum, case)
    assert figures["b_hot_spot_brain"] > 0.05 and figures["b_hot_spot_suvr"] > 0.005
    assert figures["a_scale"] < 1e-5 and figures["d_shift"] < 1e-4


def test_the_network_path_is_scale_equivariant_and_blind_to_a_distant_hot_spot(case, tmp_path):
    config = ModelConfig(depth=1, base_filters=4, max_filters=8, normalization="none")
    keras_model = build_model(config)
    rng = np.random.default_rng(1)
    for name in ("head", "refine_conv2"):  # a non-trivial network: its zero-initialised layers randomised
        layer = keras_model.get_layer(name)
        layer.set_weights([0.05 * rng.standard_normal(w.shape).astype(np.float32) for w in layer.get_weights()])
    save_model(keras_model, tmp_path / "model", {"name": "random", "architecture": config.to_dict()})

    def network(volume, geometry):
        return correct_volume(volume, geometry, model=tmp_path / "model", crop_fov=True, device="cpu").corrected

    figures = subject_properties(network, case)
    assert figures["a_scale"] < 1e-3
    assert figures["b_hot_spot_brain"] < 0.005 and figures["c_neck"] < 0.01
    assert abs(figures["suvr_network"] / figures["suvr_input"] - 1.0) > 1e-3  # the network does change the image


def test_training_ranges_and_the_out_of_distribution_lines():
    from PETPartialVolumeCorrectionLib.input_checks import out_of_distribution_warnings, training_ranges

    seen = [{"voxel_size_mm": 2.0, "crop_level": 0.7, "brain_volume_ml": None},
            {"voxel_size_mm": 2.5, "crop_level": 0.8, "brain_volume_ml": 1100.0}]
    ranges = training_ranges(seen)
    assert ranges == {"voxel_size_mm": [2.0, 2.5], "crop_level": [0.7, 0.8], "brain_volume_ml": [1100.0, 1100.0]}
    inside = {"voxel_size_mm": 2.7, "crop_level": 0.64, "brain_volume_ml": 1200.0, "brain_found": True,
              "brain_cut": False}  # within the 10 % margins
    assert out_of_distribution_warnings(inside, ranges) == []
    outside = {**inside, "crop_level": 0.5, "brain_found": False, "brain_cut": True}
    lines = out_of_distribution_warnings(outside, ranges)
    assert len(lines) == 3 and "crop level" in lines[2] and "0.50 lies outside the training range 0.70 to 0.80" in lines[2]
    assert "no clear brain" in lines[0] and "top or bottom of the field of view" in lines[1]
