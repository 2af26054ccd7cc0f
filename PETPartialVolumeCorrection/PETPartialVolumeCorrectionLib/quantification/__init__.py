"""Amyloid quantification without MRI: PET-only spatial normalisation to MNI space, regional SUVR
(GAAIN Centiloid VOIs, Desikan-Killiany cortical groups) and Centiloid, for the input PET and its
partial volume corrections. User guide: docs/quantification.md.
"""

from .quantify import NOT_GAAIN_NOTE, QuantificationResult, quantify_volume
from .readouts import TRACER_EQUATIONS, TRACERS, centiloid_equation
from .regions import DEFAULT_REFERENCE, REFERENCE_REGIONS

__all__ = ["DEFAULT_REFERENCE", "NOT_GAAIN_NOTE", "QuantificationResult", "REFERENCE_REGIONS", "TRACERS",
           "TRACER_EQUATIONS", "centiloid_equation", "quantify_volume"]
