"""One simulated subject from a seed: anatomy, true activity, scanner PET and the PVC targets.

Pipeline (details in the modules named):
1. anatomy (:mod:`.anatomy`) on the output grid (1 mm 256^3 by default);
2. true activity (:mod:`.uptake`);
3. the scanner (:mod:`.scanner`): PSF blur, sampling onto the scanner grid, noise;
   then the scanner image resliced onto the output grid: ``pet_1mm``, the network's input;
4. targets from ``pet_1mm`` with the nominal PSF (the one simulated) and the subject's own tissue
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
from ..errors import PVCInputError
from ..geometry import Geometry
from . import regions
from .anatomy import build_anatomy, draw_anatomy_parameters
from .scanner import draw_scanner, field_of_view, resample, scan, scanner_geometry
from .settings import SimulationSettings
from .templates import load_templates
from .uptake import draw_uptake, true_activity

RECORD_FORMAT = "pet-pvc simulated subject"
RECORD_VERSION = 1

#: Stream number of each group of random choices (``default_rng([seed, number])``).
RANDOM_STREAMS = {"anatomy": 1, "elastic": 2, "uptake": 3, "heterogeneity": 4, "scanner": 5, "noise": 6}

#: The MG target's settings (the founding study's SPM pipeline, PETPVE12's modified MG).
MG_TARGET_SETTINGS = {"wm_value": "gtm", "csf_value": "gtm", "gm_threshold": 0.5}


@dataclass
class SimulatedSubject:
    """One subject. Arrays are ``[z, y, x]`` on the output grid (``geometry``) unless said otherwise.

    Attributes:
        seed: the subject's seed.
        pet_1mm: float32 PET resliced onto the output grid: the network's input.
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
        """The simulated (nominal) PSF FWHM, mm ``(x, y, z)``."""
        return tuple(self.record["scanner"]["psf_fwhm_mm"])

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


def _software_versions() -> dict:
    return {"pet_pvc": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "python": platform.python_version(), "machine": platform.machine()}


def draw_choices(seed: int, settings: SimulationSettings) -> dict:
    """Every scalar random choice of a subject: anatomy, uptake, scanner (JSON-ready)."""
    return {"anatomy": draw_anatomy_parameters(random_stream(seed, "anatomy"), settings),
            "uptake": draw_uptake(random_stream(seed, "uptake"), settings),
            "scanner": draw_scanner(random_stream(seed, "scanner"), settings)}


def simulate_subject(seed: int, settings: Optional[SimulationSettings] = None) -> SimulatedSubject:
    """Simulate the subject of ``seed`` (a whole number >= 0) with ``settings`` (default: training)."""
    if int(seed) != seed or seed < 0:
        raise PVCInputError(f"seed must be a whole number >= 0, got {seed!r}")
    seed = int(seed)
    settings = settings or SimulationSettings()
    templates = load_templates(settings.templates_path)
    choices = draw_choices(seed, settings)

    anatomy = build_anatomy(templates, choices["anatomy"], settings.grid_size, settings.grid_spacing_mm,
                            random_stream(seed, "elastic"))
    truth = true_activity(anatomy.labels, choices["uptake"], settings.grid_spacing_mm,
                          random_stream(seed, "heterogeneity"))
    shape = truth.shape
    scanner_grid = scanner_geometry(choices["scanner"], anatomy.geometry, regions.is_brain(anatomy.labels))
    pet_scanner = scan(truth, anatomy.geometry, scanner_grid, choices["scanner"],
                       choices["uptake"]["global_scale"], random_stream(seed, "noise"))
    pet = resample(pet_scanner, scanner_grid, anatomy.geometry, shape)
    in_view = field_of_view(scanner_grid, pet_scanner.shape, anatomy.geometry, shape)

    fwhm = choices["scanner"]["psf_fwhm_mm"]
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
    settings = SimulationSettings.from_dict(record["settings"])
    drawn = draw_choices(record["seed"], settings)
    for part in drawn:
        if drawn[part] != record[part]:
            raise PVCInputError(f"this version of the simulator draws different {part} choices for seed "
                                f"{record['seed']} than the record (made by {record['software']}); "
                                "use the version that made it")
    return simulate_subject(record["seed"], settings)
