"""Amyloid quantification from the PET alone: normalise, read regional SUVR, convert to Centiloid.

:func:`quantify_volume` works on arrays (the Slicer module and the Python API use it); the
command line (:mod:`.command`) adds reading and writing. The input PET is registered to the
templates once; every other image given (a network or classical correction of the same scan, on
any grid in the same world coordinates) is read through the same transform.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .. import __version__
from ..errors import PVCInputError
from ..geometry import Geometry
from ..io import validate_pet_volume
from .normalisation import Normalisation, normalise_pet, resample_to_template
from .readouts import CentiloidEquation, centiloid_equation, regional_means, suvr_table
from .regions import DEFAULT_REFERENCE, GLOBAL_CORTEX, REFERENCE_REGIONS, load_regions
from .template import load_template

INPUT = "input"

#: Said in every output: what this normalisation is not.
NOT_GAAIN_NOTE = ("PET-only spatial normalisation (registration to simulated amyloid PET templates, no MRI): "
                  "this is not the Level-2-calibrated standard GAAIN Centiloid pipeline (SPM8, MRI-based); "
                  "Centiloid values use the published equations but are not calibrated for this method.")
PVC_CENTILOID_NOTE = ("The Centiloid equations were calibrated on uncorrected SUVR; Centiloid of a partial "
                      "volume corrected image is given for comparison only.")


@dataclass
class RegionRow:
    """One region: its kind (target, cortical group or reference), voxel count, and per image the
    mean (image units) and SUVR."""

    region: str
    kind: str
    voxels: int
    mean: dict
    suvr: dict


@dataclass
class QuantificationResult:
    """Regional SUVR and Centiloid of the input PET and of its corrections (``images``, input first)."""

    images: list
    rows: list
    reference: str
    tracer: Optional[str]
    equation: Optional[CentiloidEquation]
    normalisation: Normalisation
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    def row(self, region: str) -> RegionRow:
        return next(r for r in self.rows if r.region == region)

    @property
    def global_suvr(self) -> dict:
        """The global cortical SUVR (GAAIN cortical target / reference) per image."""
        return dict(self.row(GLOBAL_CORTEX).suvr)

    @property
    def centiloid(self) -> dict:
        """Centiloid per image (None for every image when no equation applies)."""
        return {name: (self.equation(value) if self.equation else None) for name, value in self.global_suvr.items()}

    def suvr_difference(self, image: str) -> dict:
        """SUVR of ``image`` minus the input's, per region."""
        return {row.region: row.suvr[image] - row.suvr[INPUT] for row in self.rows}

    def to_dict(self) -> dict:
        """JSON-ready record of everything (the command line's JSON)."""
        centiloid = self.centiloid
        return {
            "notes": self.notes, "images": self.images, "reference_region": self.reference,
            "tracer": self.tracer, "centiloid_equation": self.equation.to_dict() if self.equation else None,
            "global_cortical_suvr": self.global_suvr, "centiloid": centiloid,
            "differences_from_input": {name: {"global_cortical_suvr": self.global_suvr[name] - self.global_suvr[INPUT],
                                              "centiloid": (centiloid[name] - centiloid[INPUT]
                                                            if self.equation else None)}
                                       for name in self.images if name != INPUT},
            "regions": [{"region": r.region, "kind": r.kind, "voxels": r.voxels, "mean": r.mean, "suvr": r.suvr}
                        for r in self.rows],
            "spatial_normalisation": self.normalisation.to_dict(), "timings": self.timings,
            "software": f"PETPartialVolumeCorrectionLib {__version__}",
        }


def _check_reference(reference: str) -> None:
    if reference not in REFERENCE_REGIONS:
        raise PVCInputError(f"unknown reference region {reference!r}; choose one of {', '.join(REFERENCE_REGIONS)}")


def quantify_volume(volume: np.ndarray, geometry: Geometry, corrected: Optional[dict] = None, *,
                    tracer: Optional[str] = None, reference: str = DEFAULT_REFERENCE,
                    centiloid_slope: Optional[float] = None, centiloid_intercept: Optional[float] = None,
                    deformable: bool = False, template_path: Optional[str] = None) -> QuantificationResult:
    """Regional SUVR and Centiloid of a PET and of its corrections, from the PET alone.

    Args:
        volume: the PET ``[z, y, x]`` (any units) on ``geometry``.
        corrected: name -> ``(volume, geometry)`` of corrections of the same scan (e.g. "network",
            "classical"), on any grid in the same world coordinates.
        tracer: one of :data:`.readouts.TRACERS` for the published Centiloid equation.
        reference: a key of :data:`.regions.REFERENCE_REGIONS` (whole cerebellum by default).
        centiloid_slope, centiloid_intercept: a site's own calibration (both, or neither).
        deformable: add the B-spline stage to the affine normalisation.
        template_path: a template file instead of the shipped one.
    """
    _check_reference(reference)
    equation = centiloid_equation(tracer, centiloid_slope, centiloid_intercept, reference)
    corrected = dict(corrected or {})
    if INPUT in corrected:
        raise PVCInputError(f"a corrected image cannot be named {INPUT!r}")
    validate_pet_volume(volume, geometry)
    for name, (image, image_geometry) in corrected.items():
        validate_pet_volume(image, image_geometry, name=name)
    start = time.perf_counter()
    template = load_template(template_path)
    regions = load_regions()
    timings = {"load_template_and_regions_s": time.perf_counter() - start}

    normalisation = normalise_pet(volume, geometry, template, regions.reference["whole_cerebellum"], deformable)
    timings["normalisation_s"] = normalisation.timings["total_s"]
    step = time.perf_counter()
    report_regions = regions.report_regions()
    kinds = {**{n: "target" for n in regions.target}, **{n: "cortical group" for n in regions.cortical_groups},
             **{n: "reference" for n in regions.reference}}
    images = {INPUT: (volume, geometry), **corrected}
    means, suvrs = {}, {}
    for name, (image, image_geometry) in images.items():
        means[name] = regional_means(resample_to_template(image, image_geometry, normalisation.transform),
                                     report_regions)
        suvrs[name] = suvr_table(means[name], reference)
    rows = [RegionRow(region, kinds[region], means[INPUT][region][0],
                      {name: means[name][region][1] for name in images},
                      {name: suvrs[name][region] for name in images}) for region in report_regions]
    timings["readout_s"] = time.perf_counter() - step
    timings["total_s"] = time.perf_counter() - start
    notes = [NOT_GAAIN_NOTE] + normalisation.warnings
    if corrected and equation is not None:
        notes.append(PVC_CENTILOID_NOTE)
    if equation is None and tracer is not None:
        notes.append(f"no Centiloid: the published {tracer} equation holds for the whole cerebellum reference "
                     f"only (reference here: {reference}); give a slope and intercept for a calibration of your own")
    return QuantificationResult(list(images), rows, reference, tracer, equation, normalisation, notes, timings)
