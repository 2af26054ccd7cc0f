"""Extra-cerebral structures of the head: where they lie (MNI space) and their label ids.

Amyloid tracers are taken up outside the brain in salivary glands, muscles and bone marrow
(Chiaravalloti et al., "Amyloid Imaging", in *Nuclear Medicine in Neurological Diseases*, Springer
2019, doi:10.1007/978-3-030-27779-6_8), and on real florbetapir scans the hottest voxels are often
extra-cerebral (nasopharynx, skull base, salivary glands: issue 10 of this project). Each structure
here is an axis-aligned ellipsoid in MNI152 millimetres (``x`` to the subject's right, ``y``
anterior, ``z`` superior), mirrored in ``x`` when bilateral, placed by eye on the Colin27 head
(``mricron-data``) against the ICBM 2009 brain: location and size as in real heads, not exact
anatomy. A structure only claims head voxels outside the intracranial space; sinus cores are air.
Calvarial marrow is the middle layer of the skull above the skull base, not an ellipsoid.
Uptake values are drawn in :mod:`.uptake`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Label ids: FreeSurfer's where its colour table has one (262 Sinus, 265/266 eyeballs), else 300+.
NASAL_MUCOSA = 262
EYEBALL = 265
NASOPHARYNX = 301
PAROTID = 302
SUBMANDIBULAR = 303
SKULL_BASE_MARROW = 304
CALVARIAL_MARROW = 305
EXTRAOCULAR_MUSCLES = 306
NECK_MUSCLES = 307
SINUS_MUCOSA = 308
#: Code of air inside the head (sinus cores) in the structure map; it becomes background.
AIR = 1

STRUCTURE_NAMES = {
    NASAL_MUCOSA: "Nasal-Mucosa", EYEBALL: "Eyeballs", NASOPHARYNX: "Nasopharynx", PAROTID: "Parotid-Glands",
    SUBMANDIBULAR: "Submandibular-Glands", SKULL_BASE_MARROW: "Skull-Base-Marrow",
    CALVARIAL_MARROW: "Calvarial-Marrow", EXTRAOCULAR_MUSCLES: "Extraocular-Muscles",
    NECK_MUSCLES: "Neck-Muscles", SINUS_MUCOSA: "Sinus-Mucosa",
}


@dataclass(frozen=True)
class Structure:
    """One ellipsoid: centre and semi-axes in MNI mm ``(x, y, z)``; ``shell_mm`` > 0 keeps only a
    lining of that thickness (mucosa) and makes the core air."""

    label: int
    centre_mm: tuple
    semi_axes_mm: tuple
    bilateral: bool = False
    shell_mm: float = 0.0


#: Later structures win where two overlap.
STRUCTURES = (
    Structure(NECK_MUSCLES, (0, -62, -95), (45, 28, 45)),
    Structure(PAROTID, (48, -8, -50), (10, 16, 20), bilateral=True),
    Structure(SUBMANDIBULAR, (32, 28, -88), (9, 12, 8), bilateral=True),
    Structure(SKULL_BASE_MARROW, (0, 14, -32), (12, 12, 9)),  # sphenoid body
    Structure(SKULL_BASE_MARROW, (0, -8, -48), (8, 8, 15)),  # clivus
    Structure(SINUS_MUCOSA, (28, 42, -52), (12, 16, 16), bilateral=True, shell_mm=3.0),  # maxillary
    Structure(NASOPHARYNX, (0, 12, -58), (14, 10, 12)),
    Structure(NASAL_MUCOSA, (0, 55, -42), (10, 24, 18)),
    Structure(EXTRAOCULAR_MUSCLES, (32, 40, -38), (14, 16, 12), bilateral=True),
    Structure(EYEBALL, (32, 56, -38), (12, 12, 12), bilateral=True),
)

#: Calvarial marrow (diploe): skull voxels this far outside the intracranial space, mm, above
#: CALVARIUM_FLOOR_MM (MNI z).
DIPLOE_MM = (2.0, 4.5)
CALVARIUM_FLOOR_MM = -20.0
#: Soft tissue of the face for a template without one (the ICBM brain): an ellipsoid, MNI mm.
FACE_CENTRE_MM = (0, 40, -55)
FACE_SEMI_AXES_MM = (55, 50, 42)


def mni_axes(shape_zyx, affine) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MNI mm of every index along z, y, x of an axis-aligned template (NIfTI ``affine``, RAS)."""
    return tuple(affine[axis, axis] * np.arange(shape_zyx[2 - axis]) + affine[axis, 3] for axis in (2, 1, 0))


def ellipsoid(axes_zyx, centre_mm, semi_axes_mm) -> np.ndarray:
    """Bool ``[z, y, x]`` mask of an axis-aligned ellipsoid (MNI mm)."""
    z, y, x = axes_zyx
    cx, cy, cz = centre_mm
    rx, ry, rz = semi_axes_mm
    return (((x[None, None, :] - cx) / rx) ** 2 + ((y[None, :, None] - cy) / ry) ** 2
            + ((z[:, None, None] - cz) / rz) ** 2) <= 1.0


def face(axes_zyx) -> np.ndarray:
    """The face's soft tissue for a template without a head (bool ``[z, y, x]``)."""
    return ellipsoid(axes_zyx, FACE_CENTRE_MM, FACE_SEMI_AXES_MM)


def structure_map(axes_zyx, head: np.ndarray, intracranial: np.ndarray, skull: np.ndarray) -> np.ndarray:
    """int16 ``[z, y, x]``: the structure label of each head voxel outside the intracranial space
    (0 none, :data:`AIR` for sinus cores)."""
    allowed = head & ~intracranial
    labels = np.zeros(head.shape, dtype=np.int16)
    distance_outside = ndimage.distance_transform_edt(~intracranial)
    diploe = skull & (distance_outside >= DIPLOE_MM[0]) & (distance_outside <= DIPLOE_MM[1])
    labels[diploe & (axes_zyx[0] > CALVARIUM_FLOOR_MM)[:, None, None]] = CALVARIAL_MARROW
    for structure in STRUCTURES:
        for side in ((1, -1) if structure.bilateral else (1,)):
            centre = (side * structure.centre_mm[0],) + tuple(structure.centre_mm[1:])
            inside = ellipsoid(axes_zyx, centre, structure.semi_axes_mm) & allowed
            if structure.shell_mm > 0:
                core = ellipsoid(axes_zyx, centre, tuple(r - structure.shell_mm for r in structure.semi_axes_mm))
                labels[inside & core] = AIR
                inside &= ~core
            labels[inside] = structure.label
    return labels
