"""Segmentations as the classical methods' inputs: region names and tissue classes from a colour
table, FreeSurfer's label conventions, and the GM/WM/CSF maps MG needs, from one label image.

Tissue types follow FreeSurfer's "default-apr-2019+head" schema (``TissueTypeSchemaDefaultHead`` in
FreeSurfer's ``utils/colortab.cpp``; gtmseg writes it into ``gtmseg.ctab`` as ``#ctTType`` header
lines and a seventh column): 0 unknown, 1 cortex, 2 subcort_gm, 3 wm, 4 csf, 5 head. MG's classes:
cortex and subcort_gm -> GM, wm -> WM, csf -> CSF; unknown and head (extra-cerebral) are left to
the non-brain background. Label numbers and names are those of ``FreeSurferColorLUT.txt``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import PVCInputError

FREESURFER_TISSUE_TYPES = ("unknown", "cortex", "subcort_gm", "wm", "csf", "head")
#: MG's tissue class of each tissue type (None: not brain, left to the background).
MG_CLASS_OF_TISSUE_TYPE = {"cortex": "gm", "subcort_gm": "gm", "gm": "gm", "wm": "wm", "csf": "csf",
                           "unknown": None, "head": None}
MG_CLASSES = ("gm", "wm", "csf")

#: FreeSurferColorLUT.txt names of the aseg/gtmseg labels, by tissue type (the schema's explicit lists).
_ASEG = {
    "cortex": {3: "Left-Cerebral-Cortex", 42: "Right-Cerebral-Cortex"},
    "subcort_gm": {8: "Left-Cerebellum-Cortex", 47: "Right-Cerebellum-Cortex", 172: "Vermis", 179: "Floculus",
                   17: "Left-Hippocampus", 53: "Right-Hippocampus", 18: "Left-Amygdala", 54: "Right-Amygdala",
                   13: "Left-Pallidum", 52: "Right-Pallidum", 10: "Left-Thalamus", 49: "Right-Thalamus",
                   12: "Left-Putamen", 51: "Right-Putamen", 11: "Left-Caudate", 50: "Right-Caudate",
                   26: "Left-Accumbens-area", 58: "Right-Accumbens-area", 28: "Left-VentralDC",
                   60: "Right-VentralDC", 16: "Brain-Stem", 126: "Spinal-Cord", 174: "Pons",
                   267: "Pons-Belly-Area", 80: "non-WM-hypointensities", 29: "Left-undetermined",
                   61: "Right-undetermined"},
    "wm": {2: "Left-Cerebral-White-Matter", 41: "Right-Cerebral-White-Matter",
           7: "Left-Cerebellum-White-Matter", 46: "Right-Cerebellum-White-Matter", 690: "CbmWM_Gyri_Left",
           691: "CbmWM_Gyri_Right", 77: "WM-hypointensities", 78: "Left-WM-hypointensities",
           79: "Right-WM-hypointensities", 85: "Optic-Chiasm", 930: "Optic-Nerve", 192: "Corpus_Callosum",
           251: "CC_Posterior", 252: "CC_Mid_Posterior", 253: "CC_Central", 254: "CC_Mid_Anterior",
           255: "CC_Anterior", 34: None, 66: None, 5001: "Left-UnsegmentedWhiteMatter",
           5002: "Right-UnsegmentedWhiteMatter"},
    "csf": {14: "3rd-Ventricle", 15: "4th-Ventricle", 24: "CSF", 257: "CSF-ExtraCerebral",
            4: "Left-Lateral-Ventricle", 43: "Right-Lateral-Ventricle", 75: None, 76: None,
            5: "Left-Inf-Lat-Vent", 44: "Right-Inf-Lat-Vent", 31: "Left-choroid-plexus",
            63: "Right-choroid-plexus", 72: "5th-Ventricle", 30: "Left-vessel", 62: "Right-vessel", 914: "Vein"},
    "head": {258: "Head-ExtraCerebral", 165: "Skull", 259: "PossibleSkull", 118: "Epidermis", 119: "Conn-Tissue",
             120: "SC-Fat-Muscle", 121: "Cranium", 122: "CSF-SA", 123: "Muscle", 124: "Ear", 127: "Soft-Tissue",
             129: "Bone", 130: "Air", 131: "Orbital-Fat", 132: "Tongue", 133: "Nasal-Structures", 134: "Globe",
             135: "Teeth", 143: "Vitreous-Humor", 144: "Lens", 145: "Aqueous-Humor", 167: "Scalp", 262: "Sinus",
             263: "Left-Eustachian", 264: "Right-Eustachian", 902: "Artery", 907: "Other-Tissue",
             908: "Eye-Muscles", 909: "Mucosa", 911: "Skin", 915: "Bone-Cortical", 916: "Bone-Cancellous"},
}
#: Desikan-Killiany parcels (aparc): label 1000 + n (ctx-lh-), 2000 + n (ctx-rh-), WM 3000/4000 + n.
DESIKAN_KILLIANY = (
    "unknown", "bankssts", "caudalanteriorcingulate", "caudalmiddlefrontal", "corpuscallosum", "cuneus",
    "entorhinal", "fusiform", "inferiorparietal", "inferiortemporal", "isthmuscingulate", "lateraloccipital",
    "lateralorbitofrontal", "lingual", "medialorbitofrontal", "middletemporal", "parahippocampal", "paracentral",
    "parsopercularis", "parsorbitalis", "parstriangularis", "pericalcarine", "postcentral", "posteriorcingulate",
    "precentral", "precuneus", "rostralanteriorcingulate", "rostralmiddlefrontal", "superiorfrontal",
    "superiorparietal", "superiortemporal", "supramarginal", "frontalpole", "temporalpole", "transversetemporal",
    "insula")
#: The schema's label ranges (inclusive) without an explicit entry: (first, last, tissue type).
_RANGES = ((1000, 1035, "cortex"), (2000, 2035, "cortex"), (3000, 3035, "wm"), (4000, 4035, "wm"),
           (3201, 3207, "wm"), (4201, 4207, "wm"), (1100, 1181, "cortex"), (2100, 2181, "cortex"),
           (3100, 3181, "wm"), (4100, 4181, "wm"), (11100, 11300, "cortex"), (12100, 12300, "cortex"))
#: Segment names (lower case) that name an MG class directly (a Slicer segmentation, SPM/CAT12 maps).
_CLASS_WORDS = {"gm": "gm", "grey matter": "gm", "gray matter": "gm", "cortex": "gm", "wm": "wm",
                "white matter": "wm", "csf": "csf", "cerebrospinal fluid": "csf"}


def freesurfer_tissue_type(label: int) -> str:
    """FreeSurfer's tissue type of a label number (default-apr-2019+head schema; "unknown" if none)."""
    for tissue_type, labels in _ASEG.items():
        if label in labels:
            return tissue_type
    for first, last, tissue_type in _RANGES:
        if first <= label <= last:
            return tissue_type
    return "unknown"


def freesurfer_name(label: int) -> Optional[str]:
    """The FreeSurferColorLUT.txt name of a label this module knows, else None."""
    for labels in _ASEG.values():
        if label in labels:
            return labels[label]
    for base, prefix in ((1000, "ctx-lh-"), (2000, "ctx-rh-"), (3000, "wm-lh-"), (4000, "wm-rh-")):
        if 0 <= label - base < len(DESIKAN_KILLIANY):
            return prefix + DESIKAN_KILLIANY[label - base]
    return None


@dataclass
class ColorTable:
    """Region names and (when known) MG tissue classes by label number.

    Attributes:
        names: label -> name.
        tissue_classes: label -> ``"gm"``, ``"wm"``, ``"csf"`` or None (not brain); empty when the
            table has no tissue column.
        source: where it came from, for the settings record.
    """

    names: dict = field(default_factory=dict)
    tissue_classes: dict = field(default_factory=dict)
    source: str = ""

    @property
    def has_tissues(self) -> bool:
        return any(value is not None for value in self.tissue_classes.values())


def freesurfer_color_table(label_values) -> ColorTable:
    """FreeSurfer's names and tissue classes for ``label_values`` (built in, see the module docstring)."""
    values = [int(v) for v in label_values if int(v) != 0]
    return ColorTable({v: freesurfer_name(v) for v in values if freesurfer_name(v)},
                      {v: MG_CLASS_OF_TISSUE_TYPE[freesurfer_tissue_type(v)] for v in values},
                      "FreeSurfer default-apr-2019+head tissue types (built in)")


def _tissue_class(word: str, types: dict, path) -> Optional[str]:
    key = word.strip().lower()
    if key.lstrip("-").isdigit():
        key = types.get(int(key), FREESURFER_TISSUE_TYPES[int(key)] if 0 <= int(key) < 6 else key)
    key = key.lower()
    for side in ("-lh", "-rh", "-mid"):  # FreeSurfer's lateralised schema: cortex-lh, subcort_gm-mid, ...
        key = key[:-len(side)] if key.endswith(side) else key
    if key in MG_CLASS_OF_TISSUE_TYPE:
        return MG_CLASS_OF_TISSUE_TYPE[key]
    if key in _CLASS_WORDS:
        return _CLASS_WORDS[key]
    raise PVCInputError(f"{path}: unknown tissue type {word!r}; use cortex, subcort_gm, wm, csf, head, unknown "
                        "(or gm), or their FreeSurfer numbers 0-5")


def read_color_table(path) -> ColorTable:
    """Region names, and tissue classes when the table has them, from a text table.

    Formats: a FreeSurfer LUT/ctab (``number name R G B A``; gtmseg's seventh column is the
    tissue type, named by ``#ctTType number name ...`` header lines), a Slicer colour table (the
    same columns), or CSV ``label,name[,tissue]`` (a header line is skipped). Numbers are
    separated by a comma, a tab or spaces; '#' starts a comment.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise PVCInputError(f"{path}: cannot read the colour table ({error.strerror})") from None
    types = {}
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "#ctTType" and fields[1].isdigit():
            types[int(fields[1])] = fields[2]
    rows = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "," in line:
            fields = [f.strip() for f in next(csv.reader([line]))]
            tissue = fields[2] if len(fields) >= 3 and fields[2] else None
        else:
            fields = line.split("\t" if "\t" in line else None)
            fields = [f.strip() for f in fields]
            tissue = fields[6] if len(fields) >= 7 else None
        if len(fields) >= 2 and fields[0].lstrip("-").isdigit() and fields[1]:
            rows.append((int(fields[0]), fields[1], tissue))
    if not rows:
        raise PVCInputError(f"{path}: no 'number name' lines found; give a CSV (label,name), a FreeSurfer LUT "
                            "or ctab, or a Slicer color table")
    names = {label: name for label, name, _ in rows}
    tissues = {label: _tissue_class(tissue, types, path) for label, _, tissue in rows if tissue is not None}
    return ColorTable(names, tissues, str(path))


def tissue_classes_from_names(names: dict) -> dict:
    """MG tissue classes from region names: FreeSurfer's names (case-insensitive, by the schema) or
    plain class names (GM, grey/gray matter, cortex, WM, white matter, CSF); unknown names -> None."""
    by_name = {}
    for tissue_type, labels in _ASEG.items():
        by_name.update({name.lower(): MG_CLASS_OF_TISSUE_TYPE[tissue_type] for name in labels.values() if name})
    for base, tissue_type in ((1000, "cortex"), (2000, "cortex"), (3000, "wm"), (4000, "wm")):
        by_name.update({freesurfer_name(base + n).lower(): MG_CLASS_OF_TISSUE_TYPE[tissue_type]
                        for n in range(len(DESIKAN_KILLIANY))})
    classes = {}
    for label, name in names.items():
        key = (name or "").strip().lower()
        classes[label] = by_name.get(key, _CLASS_WORDS.get(key))
    return classes


def tissue_maps(labels: np.ndarray, tissue_classes: dict) -> tuple:
    """GM, WM and CSF 0/1 maps (float32 ``[z, y, x]``; CSF None when no label is CSF) from a label
    image and ``{label: "gm" | "wm" | "csf" | None}``; refuses a segmentation without GM or WM."""
    members = {tissue: [label for label, value in tissue_classes.items() if value == tissue] for tissue in MG_CLASSES}
    maps = {tissue: np.isin(labels, members[tissue]) if members[tissue] else None for tissue in MG_CLASSES}
    for tissue in ("gm", "wm"):
        if maps[tissue] is None or not maps[tissue].any():
            raise PVCInputError(f"the segmentation has no {tissue.upper()} voxels (no label is {tissue.upper()} in its "
                                "tissue table); give a colour table with a tissue column (--label-names), "
                                "--label-names freesurfer, or the GM,WM,CSF label values (--tissue-labels)")
    csf = maps["csf"] if maps["csf"] is not None and maps["csf"].any() else None
    return (maps["gm"].astype(np.float32), maps["wm"].astype(np.float32),
            None if csf is None else csf.astype(np.float32))


def tissue_labels_by_class(tissue_classes: dict, present) -> dict:
    """``{"gm": [labels], "wm": [...], "csf": [...]}`` for the labels ``present``, for the record."""
    present = {int(v) for v in present}
    return {tissue: sorted(label for label, value in tissue_classes.items() if value == tissue and label in present)
            for tissue in MG_CLASSES}
