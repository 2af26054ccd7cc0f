"""The quantification's outputs: the CSV table, the JSON record and the QC figure (PNG)."""

from __future__ import annotations

import csv
import importlib.util
import io
import json

import numpy as np

from ..errors import PVCInputError
from .quantify import INPUT, QuantificationResult
from .regions import GLOBAL_CORTEX


def csv_text(result: QuantificationResult) -> str:
    """One row per region: region, kind, voxels, then per image its mean and SUVR, the SUVR
    difference of each correction from the input, and Centiloid per image on the global cortex row."""
    others = [name for name in result.images if name != INPUT]
    header = (["region", "kind", "voxels"] + [f"mean_{n}" for n in result.images] + [f"suvr_{n}" for n in result.images]
              + [f"suvr_{n}_minus_input" for n in others] + [f"centiloid_{n}" for n in result.images])
    centiloid = result.centiloid
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in result.rows:
        on_global = row.region == GLOBAL_CORTEX and result.equation is not None
        writer.writerow([row.region, row.kind, row.voxels] + [f"{row.mean[n]:.6g}" for n in result.images]
                        + [f"{row.suvr[n]:.4f}" for n in result.images]
                        + [f"{row.suvr[n] - row.suvr[INPUT]:+.4f}" for n in others]
                        + [f"{centiloid[n]:.1f}" if on_global else "" for n in result.images])
    return buffer.getvalue()


def json_text(result: QuantificationResult, extra: dict) -> str:
    """The JSON record: :meth:`QuantificationResult.to_dict` plus ``extra`` (input paths, outputs)."""
    return json.dumps({**extra, **result.to_dict()}, indent=2)


def require_matplotlib() -> None:
    """Raise :class:`PVCInputError` unless matplotlib (for the QC figure) is installed."""
    if importlib.util.find_spec("matplotlib") is None:
        raise PVCInputError("the QC figure needs matplotlib: pip install pet-partial-volume-correction[quantification]")


def write_qc_figure(path, pet_mni: np.ndarray, brain_mask: np.ndarray, cortex_mask: np.ndarray, title: str) -> None:
    """Three planes of the normalised PET (MNI 2 mm grid, ``[z, y, x]``) with the template's brain
    outline (cyan) and the GAAIN cortical target's (yellow); radiological view (subject's right on
    the left of the axial and coronal planes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    z, y, x = (int(i) for i in np.array(pet_mni.shape) // 2)
    planes = [("axial", pet_mni[z], brain_mask[z], cortex_mask[z]),
              ("coronal", pet_mni[:, y], brain_mask[:, y], cortex_mask[:, y]),
              ("sagittal", pet_mni[:, :, x][:, ::-1], brain_mask[:, :, x][:, ::-1], cortex_mask[:, :, x][:, ::-1])]
    figure = Figure(figsize=(10.5, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    vmax = float(np.percentile(pet_mni[brain_mask], 99.5)) if np.any(brain_mask) else float(pet_mni.max())
    for index, (name, image, brain, cortex) in enumerate(planes, start=1):
        axes = figure.add_subplot(1, 3, index)
        axes.imshow(image, cmap="gray", origin="lower", vmin=0.0, vmax=vmax, interpolation="nearest")
        axes.contour(brain.astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
        axes.contour(cortex.astype(float), levels=[0.5], colors="yellow", linewidths=0.6)
        axes.set_title(name, fontsize=9)
        axes.set_axis_off()
    figure.suptitle(title, fontsize=9)
    figure.savefig(path, format="png")
