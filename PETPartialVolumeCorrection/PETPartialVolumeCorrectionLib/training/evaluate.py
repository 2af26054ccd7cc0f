"""The founding study's table on held-out simulated subjects, plus regional SUVR error.

Each subject goes through the path a user's scan takes: its scanner-grid PET into
:func:`~..pipeline.correct_volume`, which brings it to the 1 mm 256^3 standard grid (the subject's
own grid: input, targets and truth lie on it voxel for voxel) and corrects it. Three images are
scored there, the study's columns: the input (the PET on the standard grid, before PVC), the sharpen
baseline and the 3D ResUNet output; each against two references: the MG target (the study's
reference, SPM-like GTM + Mueller-Gaertner) and the true activity. Scores: SSIM and RMSE over the
whole volume, as the study reports them, and the absolute relative error of the SUVR of every
cortical parcel (cerebellar grey matter reference) inside the scanner's field of view.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..metrics import rmse, ssim
from ..progress import ProgressCallback, report

METHODS = ("input", "sharpen", "network")
REFERENCES = ("mg_target", "truth")
METHOD_TITLES = {"input": "Input", "sharpen": "Sharpen filter", "network": "3D-ResUNet"}


@dataclass
class EvaluationTable:
    """Per-subject scores: ``scores[reference][method][metric]`` lists, one value per subject."""

    subjects: list = field(default_factory=list)
    scores: dict = field(default_factory=lambda: {
        r: {m: {"ssim": [], "rmse": [], "suvr_abs_error": []} for m in METHODS} for r in REFERENCES})
    seconds_per_subject: list = field(default_factory=list)

    def summary(self) -> dict:
        """Mean SSIM, mean RMSE and median absolute regional SUVR error (fraction) per cell."""
        table = {}
        for reference, by_method in self.scores.items():
            table[reference] = {}
            for method, metrics in by_method.items():
                suvr_errors = np.concatenate(metrics["suvr_abs_error"]) if metrics["suvr_abs_error"] else np.array([np.nan])
                table[reference][method] = {
                    "mean_ssim": float(np.mean(metrics["ssim"])), "mean_rmse": float(np.mean(metrics["rmse"])),
                    "median_abs_suvr_error": float(np.median(suvr_errors)),
                    "p90_abs_suvr_error": float(np.percentile(suvr_errors, 90))}
        return {"subjects": len(self.subjects), "table": table,
                "mean_seconds_per_subject": float(np.mean(self.seconds_per_subject))}


def parcel_suvr(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """SUVR of every cortical parcel (cerebellar grey matter reference), in label order."""
    from ..simulation.regions import cortical_ids, regional_suvr

    present = [i for i in cortical_ids() if np.any(labels == i)]
    suvr = regional_suvr(image, labels, groups={str(i): [i] for i in present})
    return np.array([suvr[str(i)] for i in present])


def score_images(images: dict, references: dict, labels: np.ndarray) -> dict:
    """``scores[reference][method]``: SSIM, RMSE and per-parcel absolute relative SUVR errors."""
    scores = {}
    for reference_name, reference in references.items():
        reference_suvr = parcel_suvr(reference, labels)
        scores[reference_name] = {
            method: {"ssim": ssim(image, reference), "rmse": rmse(image, reference),
                     "suvr_abs_error": np.abs(parcel_suvr(image, labels) / reference_suvr - 1.0)}
            for method, image in images.items()}
    return scores


_LOADED_MODELS: dict = {}


def evaluate_subject(job) -> dict:
    """Worker: simulate one test subject, correct it, score it. ``job`` = (model folder, device, seed,
    simulation settings, inference mode, keep figure slices). The model is loaded once per
    process."""
    from ..model import load_model
    from ..pipeline import correct_volume
    from ..simulation import simulate_subject

    model_dir, device, seed, settings, mode, keep_slices = job
    if (model_dir, device) not in _LOADED_MODELS:
        _LOADED_MODELS[(model_dir, device)] = load_model(model_dir, device=device)
    subject = simulate_subject(seed, settings)
    start = time.perf_counter()
    result = correct_volume(subject.pet_scanner, subject.scanner_geometry, model=_LOADED_MODELS[(model_dir, device)],
                            mode=mode, crop_fov=True)
    seconds = time.perf_counter() - start
    if not result.geometry.matches(subject.geometry, tolerance_mm=1e-6):
        raise RuntimeError(f"seed {seed}: the standard grid of correct is not the subject's grid")
    images = {"input": subject.pet_1mm, "sharpen": result.sharpened, "network": result.corrected}
    scored = {"name": f"seed{seed}", "seconds": seconds, "status": subject.status,
              "scores": score_images(images, {"mg_target": subject.mg_target, "truth": subject.truth},
                                     subject.labels_in_field_of_view())}
    if keep_slices:
        axial = int(np.argmax(np.count_nonzero(subject.gm > 0.5, axis=(1, 2))))  # most grey matter
        scored["slices"] = {**{m: image[axial] for m, image in images.items()}, "target": subject.mg_target[axial]}
    return scored


def evaluate_on_simulated(model_dir, seeds: Sequence[int], settings=None, mode: str = "gaussian",
                          device: str = "auto", processes: int = 1,
                          progress: Optional[ProgressCallback] = None, figure_path=None) -> EvaluationTable:
    """Score the model in ``model_dir`` on the simulated subjects of ``seeds``, ``processes`` at a time.

    ``settings``: the simulation's (default: :meth:`~..simulation.SimulationSettings.held_out`, the
    training ranges on the anatomy training does not use). With ``figure_path``, also draws the
    study's figure 6 for the first subject.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ..simulation import SimulationSettings

    settings = settings if settings is not None else SimulationSettings.held_out()
    jobs = [(str(model_dir), device, seed, settings, mode, figure_path is not None and index == 0)
            for index, seed in enumerate(seeds)]
    table = EvaluationTable()
    with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        for index, scored in enumerate(pool.map(evaluate_subject, jobs)):
            table.subjects.append(scored["name"])
            table.seconds_per_subject.append(scored["seconds"])
            for reference, by_method in scored["scores"].items():
                for method, metrics in by_method.items():
                    for metric, value in metrics.items():
                        table.scores[reference][method][metric].append(value)
            if "slices" in scored:
                plot_comparison(scored["slices"], figure_path, title=f"simulated subject {scored['name']} "
                                                                      f"(amyloid {scored['status']})")
            report(progress, (index + 1) / len(jobs), f"evaluated {index + 1}/{len(jobs)} subjects")
    return table


def format_table(summary: dict, title: str) -> str:
    """The study's table as Markdown: one block per reference."""
    lines = [f"### {title} ({summary['subjects']} subjects, "
             f"{summary['mean_seconds_per_subject']:.1f} s per subject for the network path)", ""]
    for reference, by_method in summary["table"].items():
        lines += [f"Reference: {'MG target (GTM + Mueller-Gaertner)' if reference == 'mg_target' else 'true activity'}",
                  "", "| | " + " | ".join(METHOD_TITLES[m] for m in METHODS) + " |",
                  "|---|" + "---|" * len(METHODS)]
        for metric, label, fmt in (("mean_ssim", "average SSIM", "{:.4f}"), ("mean_rmse", "average RMSE", "{:.4g}"),
                                   ("median_abs_suvr_error", "median abs. regional SUVR error", "{:.2%}"),
                                   ("p90_abs_suvr_error", "90th pct abs. regional SUVR error", "{:.2%}")):
            lines.append(f"| {label} | " + " | ".join(fmt.format(by_method[m][metric]) for m in METHODS) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_comparison(slices: dict, path, title: str = "") -> None:
    """The study's figure 6: one axial slice of input, sharpen, network, MG target, and network - target.

    ``slices`` holds 2D ``[y, x]`` arrays "input", "sharpen", "network", "target" (RAS-ordered grid:
    shown with anterior up and the patient's right on the left, the radiological convention).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def show(axis, image, **options):
        return axis.imshow(image[::-1, ::-1], **options)  # RAS rows/columns -> anterior up, right on the left

    panels = [("Input", slices["input"]), ("Sharpen filter", slices["sharpen"]),
              ("3D-ResUNet", slices["network"]), ("MG target", slices["target"])]
    vmax = float(np.percentile(slices["target"], 99.5))
    figure, axes = plt.subplots(1, 5, figsize=(17, 3.8))
    for axis, (label, image) in zip(axes, panels):
        show(axis, image, cmap="hot", vmin=0, vmax=vmax)
        axis.set_title(label)
    difference = slices["network"] - slices["target"]
    limit = float(np.percentile(np.abs(difference), 99.5)) or 1.0
    shown = show(axes[4], difference, cmap="coolwarm", vmin=-limit, vmax=limit)
    axes[4].set_title("3D-ResUNet - MG target")
    figure.colorbar(shown, ax=axes[4], fraction=0.046)
    for axis in axes:
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def file_stem(title: str) -> str:
    """File name stem for a table title ("Held-out test set" -> "held_out_test_set")."""
    return title.lower().replace(" ", "_").replace("-", "_")


def write_evaluation(table: EvaluationTable, output_dir, title: str) -> dict:
    """Write ``<title>.json`` (summary + per-subject scores) and ``<title>.md`` (the table)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = table.summary()
    per_subject = {r: {m: {k: [float(np.median(v)) if np.ndim(v) else float(v) for v in values]
                           for k, values in metrics.items()} for m, metrics in by_method.items()}
                   for r, by_method in table.scores.items()}
    stem = file_stem(title)
    (output_dir / f"{stem}.json").write_text(json.dumps(
        {"summary": summary, "subjects": table.subjects, "per_subject": per_subject,
         "seconds_per_subject": table.seconds_per_subject}, indent=2))
    (output_dir / f"{stem}.md").write_text(format_table(summary, title) + "\n")
    return summary
