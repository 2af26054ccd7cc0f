"""The deep-learning correction, end to end: standard grid -> intensity -> patches -> units.

:func:`correct_volume` works on arrays (the Slicer module and the Python API use it);
:func:`correct_file` adds reading, writing and the settings record (the command line uses it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from . import __version__
from .baseline import sharpen
from .errors import PVCInputError
from .geometry import Geometry
from .grid import resample_to_native_grid, resample_to_standard_grid
from .input_checks import input_statistics, out_of_distribution_warnings
from .intensity import IntensityScaling
from .io import (image_stem, output_suffix, read_image, staged_outputs, validate_pet_volume,
                 write_staged_image)
from .progress import CancelCheck, ProgressCallback, raise_if_cancelled, report, scaled

OUTPUT_GRIDS = ("standard", "native")


@dataclass
class CorrectionResult:
    """Outputs of :func:`correct_volume`, all on ``geometry``'s grid, arrays ``[z, y, x]`` in the
    input's physical units."""

    corrected: np.ndarray
    sharpened: np.ndarray
    geometry: Geometry
    timings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)  # one line each: where the input lies outside training


def _resolve_model(model, device: str):
    from .model import PVCModel, find_model_dir, load_model

    if isinstance(model, PVCModel):
        return model
    return load_model(find_model_dir(model), device=device)


def _model_card(model) -> dict:
    """The card of ``model``, read before any work: a missing model folder, a folder without a
    readable card, or no shipped model is refused at once (the weights are checked when it loads)."""
    from .model import PVCModel, find_model_dir, read_model_card

    if isinstance(model, PVCModel):
        return model.card
    return read_model_card(find_model_dir(model))


def correct_volume(volume: np.ndarray, geometry: Geometry, *, model=None, mode: str = "gaussian",
                   overlap: Optional[int] = None, batch_size: int = 1, output_grid: str = "standard",
                   crop_fov: bool = False, device: str = "auto",
                   progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelCheck] = None) -> CorrectionResult:
    """Partial volume correction of one PET volume by the trained network, plus the sharpen baseline.

    Args:
        volume: PET activity ``[z, y, x]`` in physical units (Bq/mL, SUV, ...).
        geometry: its grid.
        model: a loaded ``PVCModel``, a model folder, or None for the shipped model.
        mode: "gaussian" (overlapping windows, Gaussian blending) or "study" (eight 128^3 tiles).
        overlap: window overlap in voxels for "gaussian" (None: the inference default).
        output_grid: "standard" (1 mm 256^3) or "native" (the input's grid).
        crop_fov: cut a field of view wider than 256 mm instead of refusing it.
        device: "auto" (GPU when present), "cpu" or "gpu".
    """
    from .inference import sliding_window_inference
    from .model import card_normalisation

    if output_grid not in OUTPUT_GRIDS:
        raise PVCInputError(f"output grid must be one of {OUTPUT_GRIDS}, not {output_grid!r}")
    validate_pet_volume(volume, geometry)
    card = _model_card(model)
    timings = {}
    start = time.perf_counter()
    # Everything that can refuse the input (field of view, a near-empty image) runs before the model loads.
    report(progress, 0.0, "resampling to the 1 mm 256^3 grid")
    standard, standard_geometry = resample_to_standard_grid(volume, geometry, crop_fov=crop_fov)
    scaling = IntensityScaling.fit(standard, method=card_normalisation(card))
    statistics = input_statistics(volume, geometry, standard, scaling)
    warnings = out_of_distribution_warnings(statistics, card.get("training_ranges"))
    timings["resample_s"] = time.perf_counter() - start
    raise_if_cancelled(cancel)

    step = time.perf_counter()
    pvc_model = _resolve_model(model, device)
    timings["load_model_s"] = time.perf_counter() - step

    step = time.perf_counter()
    window_options = {} if overlap is None else {"overlap": overlap}
    network_output = sliding_window_inference(
        scaling.normalise(standard), pvc_model.predict_batch, mode=mode, batch_size=batch_size,
        progress=scaled(progress, 0.05, 0.9), cancel=cancel, **window_options)
    corrected = scaling.restore(network_output, standard)
    timings["inference_s"] = time.perf_counter() - step

    report(progress, 0.9, "sharpen baseline")
    step = time.perf_counter()
    sharpened = sharpen(standard, standard_geometry.spacing)
    timings["sharpen_s"] = time.perf_counter() - step
    raise_if_cancelled(cancel)

    output_geometry = standard_geometry
    if output_grid == "native":
        report(progress, 0.95, "resampling back to the input grid")
        step = time.perf_counter()
        corrected, sharpened = (resample_to_native_grid(image, standard_geometry, volume.shape, geometry)
                                for image in (corrected, sharpened))
        output_geometry = geometry
        timings["resample_back_s"] = time.perf_counter() - step
    timings["total_s"] = time.perf_counter() - start
    report(progress, 1.0, "done")
    settings = {
        "method": "deep learning (3D ResUNet)", "model_name": pvc_model.card.get("name"),
        "model_sha256": pvc_model.card.get("weights_sha256"), "mode": mode, "overlap": overlap,
        "batch_size": batch_size, "output_grid": output_grid, "crop_fov": crop_fov,
        "device": pvc_model.device_name, "intensity_scaling": scaling.to_dict(), "input_statistics": statistics,
        "input_geometry": geometry.to_dict(), "input_shape_zyx": list(volume.shape),
        "software": f"PETPartialVolumeCorrectionLib {__version__}",
    }
    return CorrectionResult(corrected, sharpened, output_geometry, timings, settings, warnings)


def output_names(input_path) -> dict:
    """File names of ``correct``'s outputs for ``input_path``: corrected, sharpened, settings."""
    stem, suffix = image_stem(input_path), output_suffix(input_path)
    return {"corrected": f"{stem}_pvc{suffix}", "sharpened": f"{stem}_sharpen{suffix}",
            "settings": f"{stem}_pvc.json"}


def correct_file(input_path, output_dir, *, force: bool = False, **options) -> dict:
    """Correct one PET file; write the corrected and sharpened volumes (input's format) and a JSON of
    timings, settings and warnings into ``output_dir``. Returns the written paths by role.

    ``options`` are those of :func:`correct_volume`. Nothing is written when anything fails.
    """
    names = output_names(input_path)
    output_dir = Path(output_dir)
    start = time.perf_counter()
    volume, geometry = read_image(input_path)
    read_s = time.perf_counter() - start
    with staged_outputs(output_dir, names.values(), force=force, protected=[input_path]) as staging:
        result = correct_volume(volume, geometry, **options)
        write_staged_image(result.corrected, result.geometry, staging, names["corrected"])
        write_staged_image(result.sharpened, result.geometry, staging, names["sharpened"])
        record = {"input": str(Path(input_path).resolve()), "outputs": names, "warnings": result.warnings,
                  "timings": {"read_s": read_s, **result.timings}, "settings": result.settings}
        (staging / names["settings"]).write_text(json.dumps(record, indent=2, allow_nan=False))
    return {role: output_dir / name for role, name in names.items()}


def sharpen_file(input_path, output_dir, *, output_grid: str = "standard", crop_fov: bool = False,
                 force: bool = False) -> Path:
    """Write the sharpen baseline of one PET file (input's format) on the standard or native grid."""
    if output_grid not in OUTPUT_GRIDS:
        raise PVCInputError(f"output grid must be one of {OUTPUT_GRIDS}, not {output_grid!r}")
    volume, geometry = read_image(input_path)
    name = output_names(input_path)["sharpened"]
    with staged_outputs(output_dir, [name], force=force, protected=[input_path]) as staging:
        if output_grid == "native":
            result, result_geometry = sharpen(volume, geometry.spacing), geometry
        else:
            standard, result_geometry = resample_to_standard_grid(volume, geometry, crop_fov=crop_fov)
            result = sharpen(standard, result_geometry.spacing)
        write_staged_image(result, result_geometry, staging, name)
    return Path(output_dir) / name
