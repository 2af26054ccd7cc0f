"""A figure of simulated subjects: truth, simulated PET and MG target in three views (matplotlib, Agg).

Images are shown in SUVR units (divided by the subject's cerebellar GM activity), one grey scale
per subject, in neurological orientation (the subject's right on the right, anterior up in axial
views, superior up otherwise).
"""

from __future__ import annotations

import os

import numpy as np

from ..io import atomic_file
from .regions import is_brain, regional_suvr
from .subject import SimulatedSubject

#: Slices through the brain centre, moved (mm) to show the cingulate, precuneus and lobes:
#: axial above the centre, coronal behind it, sagittal off the midline.
SLICE_OFFSETS_MM = {"axial": 12.0, "coronal": -20.0, "sagittal": 6.0}
IMAGES = (("truth", "true activity"), ("pet_1mm", "simulated PET"), ("mg_target", "MG target"))


def _view(volume: np.ndarray, view: str, centre) -> np.ndarray:
    """A 2D slice ``[row, column]`` to draw with origin='lower'."""
    z, y, x = centre
    if view == "axial":
        return volume[z]            # rows y (anterior up), columns x (right on the right)
    if view == "coronal":
        return volume[:, y, :]      # rows z (superior up), columns x
    return volume[:, :, x]          # rows z, columns y (anterior on the right)


def _slice_centre(subject: SimulatedSubject) -> tuple[int, int, int]:
    brain = np.argwhere(is_brain(subject.labels))
    centre = (brain.min(0) + brain.max(0)) / 2.0
    spacing_zyx = np.asarray(subject.geometry.spacing[::-1])
    offsets = np.array([SLICE_OFFSETS_MM["axial"], SLICE_OFFSETS_MM["coronal"], SLICE_OFFSETS_MM["sagittal"]])
    return tuple(int(round(c)) for c in centre + offsets / spacing_zyx)


def simulated_subjects_figure(subjects: list[SimulatedSubject], path, dpi: int = 110) -> str:
    """Write a PNG: per subject, rows truth / simulated PET / MG target, columns axial, coronal,
    sagittal. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = ("axial", "coronal", "sagittal")
    figure, axes = plt.subplots(3 * len(subjects), 3, figsize=(9.0, 9.6 * len(subjects)),
                                gridspec_kw={"wspace": 0.02, "hspace": 0.12})
    for block, subject in enumerate(subjects):
        reference = subject.record["uptake"]["global_scale"]
        centre = _slice_centre(subject)
        window = max(2.6, float(np.percentile(subject.truth[subject.brain_mask], 99.5)) / reference)
        scanner = subject.record["scanner"]
        for row, (name, title) in enumerate(IMAGES):
            volume = getattr(subject, name)
            for column, view in enumerate(views):
                axis = axes[3 * block + row, column]
                picture = axis.imshow(_view(volume, view, centre) / reference, origin="lower", cmap="gray",
                                      vmin=0.0, vmax=window, interpolation="nearest")
                axis.set_xticks([])
                axis.set_yticks([])
                if row == 0:
                    axis.set_title(view, fontsize=9)
                if column == 0:
                    axis.set_ylabel(title, fontsize=9)
                if view != "sagittal":
                    axis.text(0.97, 0.03, "R", color="yellow", fontsize=8, ha="right", va="bottom",
                              transform=axis.transAxes)
            figure.colorbar(picture, ax=axes[3 * block + row, :].tolist(), shrink=0.85, pad=0.01,
                            label="SUVR" if row == 1 else None)
        axes[3 * block, 1].annotate(
            f"seed {subject.seed}: amyloid {subject.status}, cortex SUVR "
            f"{_cortex_suvr(subject):.2f}; PSF {scanner['psf_fwhm_mm'][0]:.1f} x {scanner['psf_fwhm_mm'][2]:.1f} mm "
            f"(xy x z), {scanner['grid_name']}, {scanner['count_level']} counts",
            xy=(0.5, 1.18), xycoords="axes fraction", ha="center", fontsize=9, fontweight="bold")
    path = os.fspath(path)
    with atomic_file(path, force=True) as temporary:
        figure.savefig(temporary, dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return path


def _cortex_suvr(subject: SimulatedSubject) -> float:
    return regional_suvr(subject.truth, subject.labels)["cortex"]
