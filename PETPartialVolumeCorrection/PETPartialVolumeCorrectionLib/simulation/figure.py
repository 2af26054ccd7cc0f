"""A figure of simulated heads: truth, simulated PET and MG target in four views (matplotlib, Agg).

Images are shown in SUVR units (divided by the subject's cerebellar GM activity), one grey scale
per subject (extra-cerebral hot spots above it saturate), in neurological orientation (the
subject's right on the right, anterior up in axial views, superior up otherwise).
"""

from __future__ import annotations

import os

import numpy as np

from ..io import atomic_file
from .regions import is_brain, regional_suvr
from .subject import SimulatedSubject

#: Views: (title, array axis cut, offset from the brain centre in mm): axial above the centre,
#: coronal behind it, sagittal off the midline (cingulate, precuneus, lobes), and an axial slice
#: through the skull base (nasal mucosa, sinuses, nasopharynx, parotid glands).
VIEWS = (("axial", 0, 12.0), ("coronal", 1, -20.0), ("sagittal", 2, 6.0), ("axial, skull base", 0, -48.0))
IMAGES = (("truth", "true activity"), ("pet_1mm", "simulated PET"), ("mg_target", "MG target"))


def _view(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """A 2D slice ``[row, column]`` to draw with origin='lower': axial rows y (anterior up), columns x
    (right on the right); coronal rows z, columns x; sagittal rows z, columns y (anterior right)."""
    index = int(np.clip(index, 0, volume.shape[axis] - 1))
    return np.take(volume, index, axis=axis)


def _slice_indices(subject: SimulatedSubject) -> list[int]:
    brain = np.argwhere(is_brain(subject.labels))
    centre = (brain.min(0) + brain.max(0)) / 2.0
    spacing_zyx = np.asarray(subject.geometry.spacing[::-1])
    return [int(round(centre[axis] + offset / spacing_zyx[axis])) for _, axis, offset in VIEWS]


def simulated_subjects_figure(subjects: list[SimulatedSubject], path, dpi: int = 110) -> str:
    """Write a PNG: per subject, rows truth / simulated PET / MG target, columns :data:`VIEWS`.
    Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(3 * len(subjects), len(VIEWS), figsize=(12.0, 9.6 * len(subjects)),
                                gridspec_kw={"wspace": 0.02, "hspace": 0.12})
    for block, subject in enumerate(subjects):
        reference = subject.record["uptake"]["global_scale"]
        indices = _slice_indices(subject)
        window = max(2.6, float(np.percentile(subject.truth[subject.brain_mask], 99.5)) / reference)
        scanner = subject.record["scanner"]
        for row, (name, title) in enumerate(IMAGES):
            volume = getattr(subject, name)
            for column, ((view, cut_axis, _), index) in enumerate(zip(VIEWS, indices)):
                axis = axes[3 * block + row, column]
                picture = axis.imshow(_view(volume, cut_axis, index) / reference, origin="lower", cmap="gray",
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
            f"seed {subject.seed}, {subject.record['anatomy']['source']}, {subject.record['uptake']['tracer']}: "
            f"amyloid {subject.status}, cortex SUVR {_cortex_suvr(subject):.2f}; PSF {scanner['psf_fwhm_mm'][0]:.1f} x "
            f"{scanner['psf_fwhm_mm'][2]:.1f} mm (xy x z), {scanner['grid_name']}, {scanner['count_level']} counts; "
            f"PET max {subject.pet_1mm.max() / reference:.1f}",
            xy=(1.0, 1.18), xycoords="axes fraction", ha="center", fontsize=9, fontweight="bold")
    path = os.fspath(path)
    with atomic_file(path, force=True) as temporary:
        figure.savefig(temporary, dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return path


def _cortex_suvr(subject: SimulatedSubject) -> float:
    return regional_suvr(subject.truth, subject.labels)["cortex"]
