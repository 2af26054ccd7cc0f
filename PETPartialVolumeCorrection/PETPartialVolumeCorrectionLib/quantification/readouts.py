"""SUVR and Centiloid: the arithmetic, separate from images and registration.

Centiloid (CL) = slope x SUVR + intercept, with SUVR the GAAIN cortical target ("ctx" VOI) over
the whole cerebellum, both on scans spatially normalised by the standard (MRI-based, SPM8) GAAIN
method. The published equations of that method:

- PiB: CL = 100 (SUVR - 1.009) / 1.067 (Klunk et al. 2015, Alzheimers Dement 11:1-15);
- florbetapir: CL = 175.4 SUVR - 182.3 (Navitsky et al. 2018, Alzheimers Dement 14:1565-1571);
- florbetaben: CL = 153.4 SUVR - 154.9 (Rowe et al. 2017, Eur J Nucl Med Mol Imaging 44:2053-2059);
- flutemetamol: CL = 121.4 SUVR - 121.2 (Battle et al. 2018, EJNMMI Res 8:107);
- NAV4694: CL = 85.2 SUVR - 87.6 (Rowe et al. 2016, J Nucl Med 57:1233-1237).

A site's own calibration is a user slope and intercept. The equations hold for the whole
cerebellum reference only; with another reference no published equation applies and Centiloid is
given only for a user calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import PVCInputError
from .regions import DEFAULT_REFERENCE


@dataclass(frozen=True)
class CentiloidEquation:
    """CL = slope x SUVR + intercept, with the source it comes from."""

    slope: float
    intercept: float
    source: str

    def __call__(self, suvr: float) -> float:
        return float(self.slope * suvr + self.intercept)

    def to_dict(self) -> dict:
        return {"slope": self.slope, "intercept": self.intercept, "source": self.source}


#: The published whole-cerebellum equations of the standard GAAIN method, per tracer.
TRACER_EQUATIONS = {
    "pib": CentiloidEquation(100.0 / 1.067, -100.0 * 1.009 / 1.067,
                             "Klunk et al. 2015, Alzheimers Dement 11:1-15"),
    "florbetapir": CentiloidEquation(175.4, -182.3, "Navitsky et al. 2018, Alzheimers Dement 14:1565-1571"),
    "florbetaben": CentiloidEquation(153.4, -154.9, "Rowe et al. 2017, Eur J Nucl Med Mol Imaging 44:2053-2059"),
    "flutemetamol": CentiloidEquation(121.4, -121.2, "Battle et al. 2018, EJNMMI Res 8:107"),
    "nav4694": CentiloidEquation(85.2, -87.6, "Rowe et al. 2016, J Nucl Med 57:1233-1237"),
}
TRACERS = tuple(TRACER_EQUATIONS)


def centiloid_equation(tracer: Optional[str] = None, slope: Optional[float] = None,
                       intercept: Optional[float] = None,
                       reference: str = DEFAULT_REFERENCE) -> Optional[CentiloidEquation]:
    """The equation to use: a user calibration (slope and intercept) if given, else the tracer's
    published one (whole cerebellum reference only; None for another reference or no tracer)."""
    if (slope is None) != (intercept is None):
        raise PVCInputError("give both --centiloid-slope and --centiloid-intercept (a site's own calibration), "
                            "or neither")
    if slope is not None:
        if not (np.isfinite(slope) and np.isfinite(intercept)) or slope <= 0:
            raise PVCInputError(f"Centiloid slope {slope} / intercept {intercept}: the slope must be a positive "
                                "number and both finite")
        return CentiloidEquation(float(slope), float(intercept), "user calibration")
    if tracer is None:
        return None
    if tracer not in TRACER_EQUATIONS:
        raise PVCInputError(f"unknown tracer {tracer!r}; choose one of {', '.join(TRACERS)} "
                            "or give a slope and intercept")
    if reference != DEFAULT_REFERENCE:
        return None
    return TRACER_EQUATIONS[tracer]


def regional_means(image: np.ndarray, regions: dict) -> dict:
    """Per region: ``(voxels, mean)`` of ``image`` over the region's mask (same ``[z, y, x]`` grid)."""
    return {name: (int(np.count_nonzero(mask)), float(image[mask].mean(dtype=np.float64)))
            for name, mask in regions.items()}


def suvr_table(means: dict, reference: str) -> dict:
    """SUVR per region: the region's mean over the ``reference`` region's mean."""
    reference_mean = means[reference][1]
    if not reference_mean > 0:
        raise PVCInputError(f"the reference region ({reference}) has mean {reference_mean:g} after normalisation; "
                            "the PET does not cover the cerebellum or is not an amyloid PET")
    return {name: mean / reference_mean for name, (_, mean) in means.items()}
