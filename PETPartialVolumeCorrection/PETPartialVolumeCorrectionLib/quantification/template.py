"""The amyloid PET templates in MNI space (2 mm) that PET scans are registered to.

Two images on the MNI152 2 mm grid of the GAAIN Centiloid VOIs (91 x 109 x 91 voxels): the mean
simulated amyloid-negative and amyloid-positive PET, in units of the cerebellar grey matter's
true activity, and the intracranial mask. Built by ``scripts/build_amyloid_template.py`` from the
project's simulator and shipped as ``Resources/Templates/amyloid_pet_template_2mm.npz``.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import PVCInputError
from ..geometry import Geometry

TEMPLATE_FILE_NAME = "amyloid_pet_template_2mm.npz"
TEMPLATE_FORMAT = "pet-pvc amyloid PET template"
TEMPLATE_FORMAT_VERSION = 1

#: The MNI152 2 mm grid (FSL's, that of the GAAIN VOIs): ``[z, y, x]`` shape, and its geometry in
#: LPS (the NIfTI affine has x running towards the left, origin at RAS (90, -126, -72) mm).
MNI_2MM_SHAPE = (91, 109, 91)
MNI_2MM_GEOMETRY = Geometry((2.0, 2.0, 2.0), (-90.0, 126.0, -72.0), np.diag([1.0, -1.0, 1.0]))


@dataclass(frozen=True)
class AmyloidTemplate:
    """Arrays ``[z, y, x]`` on :data:`MNI_2MM_GEOMETRY`.

    Attributes:
        negative, positive: float32 template PET (cerebellar grey matter = 1).
        brain_mask: bool intracranial mask.
        provenance: how the file was made (seeds, settings, simulator digest).
    """

    negative: np.ndarray
    positive: np.ndarray
    brain_mask: np.ndarray
    provenance: dict

    @property
    def geometry(self) -> Geometry:
        return MNI_2MM_GEOMETRY


def template_locations() -> tuple[Path, ...]:
    """Where the shipped template can be: the source tree's top-level Resources/Templates, the
    installed package data (``shipped_templates``), the Slicer module's Resources/Templates."""
    library = Path(__file__).resolve().parents[1]
    return (library.parents[1] / "Resources" / "Templates" / TEMPLATE_FILE_NAME,
            library / "shipped_templates" / TEMPLATE_FILE_NAME,
            library.parent / "Resources" / "Templates" / TEMPLATE_FILE_NAME)


def save_template(path, negative: np.ndarray, positive: np.ndarray, brain_mask: np.ndarray,
                  provenance: dict) -> None:
    """Write the template file (float16 images, compressed), atomically."""
    for name, image in (("negative", negative), ("positive", positive), ("brain_mask", brain_mask)):
        if image.shape != MNI_2MM_SHAPE:
            raise PVCInputError(f"template {name} has shape {image.shape}, not the MNI 2 mm grid {MNI_2MM_SHAPE}")
    metadata = {"format": TEMPLATE_FORMAT, "version": TEMPLATE_FORMAT_VERSION,
                "geometry": MNI_2MM_GEOMETRY.to_dict(), "provenance": provenance}
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez_compressed(temporary, negative=negative.astype(np.float16), positive=positive.astype(np.float16),
                        brain_mask=brain_mask.astype(np.uint8), metadata=np.array(json.dumps(metadata)))
    os.replace(temporary, path)


@functools.lru_cache(maxsize=2)
def load_template(path: Optional[str] = None) -> AmyloidTemplate:
    """The template from ``path``, or the shipped one; :class:`PVCInputError` when absent or damaged."""
    candidates = [Path(path)] if path else [p for p in template_locations() if p.is_file()]
    if not candidates or not candidates[0].is_file():
        raise PVCInputError(f"no amyloid PET template at {path or template_locations()[0]}; build it with "
                            "python scripts/build_amyloid_template.py")
    try:
        with np.load(candidates[0]) as data:
            metadata = json.loads(str(data["metadata"]))
            arrays = {name: data[name] for name in ("negative", "positive", "brain_mask")}
    except (OSError, KeyError, ValueError) as error:
        raise PVCInputError(f"{candidates[0]} is not an amyloid PET template ({error})") from None
    if metadata.get("format") != TEMPLATE_FORMAT or metadata.get("version") != TEMPLATE_FORMAT_VERSION:
        raise PVCInputError(f"{candidates[0]} is not a version-{TEMPLATE_FORMAT_VERSION} amyloid PET template")
    return AmyloidTemplate(arrays["negative"].astype(np.float32), arrays["positive"].astype(np.float32),
                           arrays["brain_mask"].astype(bool), metadata["provenance"])
