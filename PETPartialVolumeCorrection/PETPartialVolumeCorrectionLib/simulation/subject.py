"""One simulated subject from a seed: anatomy, true activity, scanner PET and the PVC targets.

Pipeline (details in the modules named):
1. anatomy (:mod:`.anatomy`) on the output grid (1 mm 256^3 by default), from one of the
   settings' anatomy sources (:mod:`.templates`), with the extra-cerebral structures of :mod:`.head`;
2. true activity (:mod:`.uptake`);
3. the scanner (:mod:`.scanner`): PSF blur, sampling onto the scanner grid, noise: ``pet_scanner``,
   what a user brings; then ``pet_1mm``, the network's input: ``pet_scanner`` brought to the standard
   grid by :func:`~..grid.resample_to_standard_grid`, the function ``correct`` uses (linear). The
   scanner grid is centred on the output grid, so that standard grid is the output grid itself and
   input, targets and truth lie on one grid, voxel for voxel;
4. targets from ``pet_1mm`` with its resolution (:func:`input_fwhm_mm`: the simulated PSF and the
   mean blur of the linear reslicing, in quadrature) and the subject's own tissue
   maps and labels, both cut to the scanner's field of view (outside it the PET is 0 and no value
   can be recovered): MG with the WM and CSF values from the GTM of the GM/WM/CSF maps (PETPVE12's
   modified MG, the founding study's SPM pipeline; see :func:`mg_target`) and RBV over all labels.

Every random choice is drawn from its own stream, ``numpy.random.default_rng([seed, k])`` with k
from :data:`RANDOM_STREAMS`, and written to the subject's record; the same seed and settings give
the same subject bit for bit (same package versions and CPU type).
"""

from __future__ import annotations

import platform
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy

from .. import __version__
from ..classical import blur_regions, mueller_gaertner, rbv
from ..classical.psf import FWHM_PER_SIGMA
from ..errors import PVCInputError
from ..geometry import Geometry
from ..grid import resample_to_standard_grid
from . import regions
from .anatomy import build_anatomy, draw_anatomy_parameters
from .scanner import draw_coverage, draw_scanner, field_of_view, scan, scanner_geometry
from .settings import SimulationSettings
from .templates import load_templates
from .uptake import draw_uptake, true_activity

RECORD_FORMAT = "pet-pvc simulated subject"
#: 2: ``pet_1mm`` is made by ``correct``'s resampling (version 1 resliced with a cubic B-spline).
#: 3: anatomy sources, extra-cerebral structures, tracers, axial coverage.
RECORD_VERSION = 3

#: Stream number of each group of random choices (``default_rng([seed, number])``).
RANDOM_STREAMS = {"anatomy": 1, "elastic": 2, "uptake": 3, "heterogeneity": 4, "scanner": 5, "noise": 6,
                  "coverage": 7}

#: The MG target's settings (the founding study's SPM pipeline, PETPVE12's modified MG).
MG_TARGET_SETTINGS = {"wm_value": "gtm", "csf_value": "gtm", "gm_threshold": 0.5}


@dataclass
class SimulatedSubject:
    """One subject. Arrays are ``[z, y, x]`` on the output grid (``geometry``) unless said otherwise.

    Attributes:
        seed: the subject's seed.
        pet_1mm: float32 ``pet_scanner`` on the output grid through ``correct``'s own resampling
            (:func:`~..grid.resample_to_standard_grid`): the network's input.
        mg_target: float32 MG inside the GM mask (GM > 0.5), ``pet_1mm`` elsewhere (None when
            the settings turn targets off); the DL training target.
        rbv_target: float32 RBV over all labels (None when targets are off).
        truth: float32 true activity (same units as the PET).
        gm, wm, csf: float32 tissue probability maps.
        labels: int16 region labels (FreeSurfer ids, names in ``region_names``).
        region_names: label id -> name.
        brain_mask: bool, the intracranial space (GM, WM or CSF region).
        field_of_view: bool, the output voxels inside the scanner's grid (the PET is 0 elsewhere).
        pet_scanner: float32 PET on the scanner grid (``scanner_geometry``).
        scanner_geometry: the scanner grid.
        geometry: the output grid (1 mm 256^3 unless the settings change it).
        record: every random choice and the provenance (JSON-ready).
    """

    seed: int
    pet_1mm: np.ndarray
    mg_target: Optional[np.ndarray]
    rbv_target: Optional[np.ndarray]
    truth: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    labels: np.ndarray
    region_names: dict
    brain_mask: np.ndarray
    field_of_view: np.ndarray
    pet_scanner: np.ndarray
    scanner_geometry: Geometry
    geometry: Geometry
    record: dict

    @property
    def spacing_mm(self) -> tuple:
        """Voxel size of the output grid, mm ``(x, y, z)``."""
        return self.geometry.spacing

    @property
    def scanner_spacing_mm(self) -> tuple:
        """Voxel size of the scanner grid, mm ``(x, y, z)``."""
        return self.scanner_geometry.spacing

    @property
    def psf_fwhm_mm(self) -> tuple:
        """The simulated (nominal) PSF FWHM on the scanner grid, mm ``(x, y, z)``."""
        return tuple(self.record["scanner"]["psf_fwhm_mm"])

    @property
    def input_fwhm_mm(self) -> tuple:
        """The resolution of ``pet_1mm`` (FWHM, mm ``(x, y, z)``), the one the targets use."""
        return tuple(self.record["network_input"]["fwhm_mm"])

    def labels_in_field_of_view(self) -> np.ndarray:
        """``labels`` with 0 (background) outside the scanner's field of view: the regions the
        targets are computed with."""
        return np.where(self.field_of_view, self.labels, 0).astype(self.labels.dtype)

    @property
    def status(self) -> str:
        """``"negative"`` or ``"positive"`` (amyloid status)."""
        return self.record["uptake"]["status"]


def random_stream(seed: int, name: str) -> np.random.Generator:
    """The generator of one group of a subject's random choices (see :data:`RANDOM_STREAMS`)."""
    return np.random.default_rng([int(seed), RANDOM_STREAMS[name]])


def mg_target(pet: np.ndarray, gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, fwhm_mm, spacing_mm) -> np.ndarray:
    """The DL training target: MG inside the GM mask, the input PET elsewhere.

    MG (Mueller-Gaertner) with C_WM and C_CSF from the non-negative GTM of the GM/WM/CSF maps
    (PETPVE12's modified MG, what the founding study's SPM pipeline did), GM mask = GM > 0.5.
    Outside the GM mask MG defines no value; there the target is ``pet`` unchanged.

    Args:
        pet: PET ``[z, y, x]`` (any units); gm, wm, csf: probability maps on its grid.
        fwhm_mm: PSF FWHM ``(x, y, z)`` mm; spacing_mm: voxel size ``(x, y, z)`` mm.
    """
    return mueller_gaertner(pet, gm=gm, wm=wm, csf=csf, fwhm_mm=fwhm_mm, spacing_mm=spacing_mm,
                            **MG_TARGET_SETTINGS)


def rbv_target(pet: np.ndarray, labels: np.ndarray, fwhm_mm, spacing_mm) -> np.ndarray:
    """RBV of ``pet`` over every label in ``labels`` (0, outside the head, is a region too)."""
    region_ids = np.unique(labels).tolist()
    blurred = blur_regions(labels=labels, region_ids=region_ids, fwhm_mm=fwhm_mm, spacing_mm=spacing_mm)
    return rbv(pet, blurred_regions=blurred)


def network_input(pet_scanner: np.ndarray, scanner_grid: Geometry, output: Geometry, output_shape) -> np.ndarray:
    """``pet_scanner`` on the output grid by ``correct``'s resampling to the standard grid.

    The output grid must be that standard grid (centred on the scanner grid; for the default
    settings the network's 1 mm 256^3 grid); ``crop_fov``: scanner grids wider than it hold only
    noise there (the truth is defined on the output grid only).
    """
    size, spacing = output_shape[0], output.spacing[0]
    pet, standard = resample_to_standard_grid(pet_scanner, scanner_grid, crop_fov=True, size=size, spacing_mm=spacing)
    if not standard.matches(output, tolerance_mm=1e-6):
        raise RuntimeError(f"the standard grid of the scanner image {standard} is not the output grid {output}")
    return pet


def input_fwhm_mm(psf_fwhm_mm, scanner_spacing_mm) -> list:
    """FWHM (mm, ``(x, y, z)``) of the scanner image after linear reslicing: the PSF and the mean
    blur of linear interpolation between samples ``h`` apart (variance h^2 / 6 per axis) in
    quadrature. With it, GTM of a noise-free ``pet_1mm`` gives back the true regional means to
    0.4 % (with the PSF alone, up to 4 %: see Testing/test_simulation.py)."""
    psf_sigma = np.asarray(psf_fwhm_mm, dtype=float) / FWHM_PER_SIGMA
    interpolation_variance = np.asarray(scanner_spacing_mm, dtype=float) ** 2 / 6.0
    return (FWHM_PER_SIGMA * np.sqrt(psf_sigma ** 2 + interpolation_variance)).tolist()


def _software_versions() -> dict:
    return {"pet_pvc": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "python": platform.python_version(), "machine": platform.machine()}


def draw_choices(seed: int, settings: SimulationSettings) -> dict:
    """Every scalar random choice of a subject: anatomy, uptake, scanner, axial coverage (JSON-ready).

    The field of view is centred on the output grid, so the coverage's brain position is the
    anatomy's translation along z."""
    anatomy = draw_anatomy_parameters(random_stream(seed, "anatomy"), settings)
    scanner = draw_scanner(random_stream(seed, "scanner"), settings)
    coverage = draw_coverage(random_stream(seed, "coverage"), settings, scanner, anatomy["scale"][2])
    anatomy["translation_mm"][2] = coverage["brain_offset_mm"]
    return {"anatomy": anatomy, "uptake": draw_uptake(random_stream(seed, "uptake"), settings),
            "scanner": scanner, "coverage": coverage}


def simulate_subject(seed: int, settings: Optional[SimulationSettings] = None) -> SimulatedSubject:
    """Simulate the subject of ``seed`` (a whole number >= 0) with ``settings`` (default: training)."""
    if int(seed) != seed or seed < 0:
        raise PVCInputError(f"seed must be a whole number >= 0, got {seed!r}")
    seed = int(seed)
    settings = settings or SimulationSettings()
    choices = draw_choices(seed, settings)
    templates = load_templates(choices["anatomy"]["source"], settings.templates_path)

    anatomy = build_anatomy(templates, choices["anatomy"], settings.grid_size, settings.grid_spacing_mm,
                            random_stream(seed, "elastic"))
    truth = true_activity(anatomy.labels, choices["uptake"], settings.grid_spacing_mm,
                          random_stream(seed, "heterogeneity"))
    shape = truth.shape
    scanner_grid = scanner_geometry(choices["scanner"], anatomy.geometry, shape)
    zero_slices = choices["coverage"]["zero_slices"]
    pet_scanner = scan(truth, anatomy.geometry, scanner_grid, choices["scanner"],
                       choices["uptake"]["global_scale"], random_stream(seed, "noise"), zero_slices)
    pet = network_input(pet_scanner, scanner_grid, anatomy.geometry, shape)
    in_view = field_of_view(scanner_grid, pet_scanner.shape, anatomy.geometry, shape, zero_slices)

    fwhm = input_fwhm_mm(choices["scanner"]["psf_fwhm_mm"], scanner_grid.spacing)
    spacing = anatomy.geometry.spacing
    mg = rbv_image = None
    # The classical engine's warnings (e.g. MG voxels outside [0, 10 C_WM] from noise) are expected
    # here; they go to the record instead of the console.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if settings.targets:
            mg = mg_target(pet, anatomy.gm * in_view, anatomy.wm * in_view, anatomy.csf * in_view, fwhm, spacing)
            rbv_image = rbv_target(pet, np.where(in_view, anatomy.labels, 0), fwhm, spacing)

    record = {
        "format": RECORD_FORMAT, "version": RECORD_VERSION, "seed": seed,
        **choices,
        "settings": settings.to_dict(),
        "random_streams": {name: [seed, number] for name, number in RANDOM_STREAMS.items()},
        "output_grid": {"shape_zyx": list(shape), **anatomy.geometry.to_dict()},
        "network_input": {"resampling": "pet_scanner through grid.resample_to_standard_grid (linear, crop_fov)",
                          "fwhm_mm": fwhm},
        "scanner_grid": {"shape_zyx": list(pet_scanner.shape), **scanner_grid.to_dict()},
        "targets": {"mg": {"psf_fwhm_mm": fwhm, **MG_TARGET_SETTINGS,
                           "definition": "MG inside GM > 0.5, pet_1mm elsewhere",
                           "tissue_maps": "cut to the field of view"} if settings.targets else None,
                    "rbv": {"psf_fwhm_mm": fwhm, "regions": "all labels, 0 outside the field of view"}
                    if settings.targets else None,
                    "warnings": [str(w.message) for w in caught]},
        "templates_sha256": templates.sha256,
        "software": _software_versions(),
        "regions": {str(k): v for k, v in regions.region_names().items()},
    }
    return SimulatedSubject(seed=seed, pet_1mm=pet, mg_target=mg, rbv_target=rbv_image, truth=truth,
                            gm=anatomy.gm, wm=anatomy.wm, csf=anatomy.csf, labels=anatomy.labels,
                            region_names=regions.region_names(), brain_mask=anatomy.brain_mask,
                            field_of_view=in_view, pet_scanner=pet_scanner, scanner_geometry=scanner_grid, geometry=anatomy.geometry,
                            record=record)


def rebuild_subject(record: dict) -> SimulatedSubject:
    """Simulate again the subject a record describes; refuses if this code would draw differently."""
    if record.get("format") != RECORD_FORMAT:
        raise PVCInputError("not a simulated subject record (format field missing or wrong)")
    if record.get("version") != RECORD_VERSION:
        raise PVCInputError(f"simulated subject record version {record.get('version')}; this simulator "
                            f"makes version {RECORD_VERSION}; use the version that made it")
    settings = SimulationSettings.from_dict(record["settings"])
    drawn = draw_choices(record["seed"], settings)
    for part in drawn:
        if drawn[part] != record[part]:
            raise PVCInputError(f"this version of the simulator draws different {part} choices for seed "
                                f"{record['seed']} than the record (made by {record['software']}); "
                                "use the version that made it")
    return simulate_subject(record["seed"], settings)
