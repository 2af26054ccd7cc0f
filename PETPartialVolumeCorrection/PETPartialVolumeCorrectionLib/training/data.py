"""Training pairs and patches: the founding study's normalisation and 128^3 patches.

A training pair is a PET volume before PVC and the same volume after PVC, both on the 1 mm 256^3
standard grid, arrays ``[z, y, x]`` in physical units. Pairs come from the simulator (on the fly, or
subject folders written by ``pet-pvc simulate``) or from a user's folder of real pairs. Either way
the input is the scanner-grid PET brought to the standard grid by ``correct``'s own
:func:`~..grid.resample_to_standard_grid`: the simulator's ``pet_1mm`` is made so, and its targets
lie on the same grid voxel for voxel.
Normalisation is the inference's own (:class:`~..intensity.IntensityScaling`): the input is min-max
scaled and cropped at the 99th percentile; the target is scaled with the input's parameters minus
the input's crop excess, so the network learns the correction of the cropped image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ..errors import PVCInputError
from ..intensity import IntensityScaling

#: Input voxels above this fraction of the crop level count as "head" for patch sampling when no
#: brain mask is given.
HEAD_THRESHOLD = 0.2
#: File names (any supported image suffix) of a user's real pair inside one subject folder.
PAIR_INPUT_STEM = "input"
PAIR_TARGET_STEM = "target"


@dataclass
class TrainingPair:
    """One subject on the 1 mm 256^3 grid: ``source`` (before PVC) and ``target`` (after PVC),
    physical units, ``[z, y, x]``; ``sampling_mask`` marks voxels random patches centre on."""

    name: str
    source: np.ndarray
    target: np.ndarray
    sampling_mask: Optional[np.ndarray] = None


@dataclass
class NormalisedPair:
    """A pair in network units (float32): cropped input and the matching target."""

    name: str
    network_input: np.ndarray
    network_target: np.ndarray
    centre_candidates: np.ndarray  # (n, 3) voxel indices random patches may centre on


def pair_from_simulated_subject(subject, target: str = "mg") -> TrainingPair:
    """The pair of a simulated subject: ``pet_1mm`` (its scanner PET through ``correct``'s resampling)
    and its MG (``target="mg"``) or RBV target; patches centre on the intracranial space.

    Refuses subjects of simulator record versions whose ``pet_1mm`` came from another reslicing."""
    from ..simulation.subject import RECORD_VERSION

    name = subject.record.get("name", f"seed{subject.record['seed']}")
    if subject.record.get("version") != RECORD_VERSION:
        raise PVCInputError(f"{name}: simulated by record version {subject.record.get('version')}, whose "
                            f"input was resliced unlike correct's; simulate it again (version {RECORD_VERSION})")
    reference = subject.mg_target if target == "mg" else subject.rbv_target
    if subject.pet_1mm is None or reference is None:
        raise PVCInputError(f"{name}: pet_1mm or the {target} target was not written; simulate it with both")
    return TrainingPair(name, subject.pet_1mm, reference, subject.brain_mask)


def normalise_pair(pair: TrainingPair) -> NormalisedPair:
    """Apply the study's normalisation with the source's parameters to both volumes."""
    if pair.source.shape != pair.target.shape:
        raise PVCInputError(f"{pair.name}: input {pair.source.shape} and target {pair.target.shape} "
                            "are on different grids")
    scaling = IntensityScaling.fit(pair.source)
    network_input = scaling.normalise(pair.source)
    mask = pair.sampling_mask if pair.sampling_mask is not None else network_input > HEAD_THRESHOLD * scaling.crop_level
    candidates = np.argwhere(mask).astype(np.int16)
    if len(candidates) == 0:
        raise PVCInputError(f"{pair.name}: no brain voxels to sample patches from")
    return NormalisedPair(pair.name, network_input, scaling.normalise_target(pair.target, pair.source),
                          candidates)


def grid_patch_corners(shape_zyx, patch_size: int) -> list[tuple[int, int, int]]:
    """Corners of the study's tiling (eight 128^3 patches of a 256^3 volume): the inference's own
    non-overlapping tile positions."""
    from ..inference import tile_positions

    return tile_positions(shape_zyx, (patch_size,) * 3, (0, 0, 0))


def random_patch_corners(pair: NormalisedPair, patch_size: int, count: int,
                         rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Corners of ``count`` patches centred on random brain/head voxels, clipped into the volume."""
    shape = np.asarray(pair.network_input.shape)
    centres = pair.centre_candidates[rng.integers(0, len(pair.centre_candidates), size=count)]
    corners = np.clip(centres.astype(int) - patch_size // 2, 0, shape - patch_size)
    return [tuple(int(c) for c in corner) for corner in corners]


def extract_patch(volume: np.ndarray, corner, patch_size: int) -> np.ndarray:
    z, y, x = corner
    return volume[z:z + patch_size, y:y + patch_size, x:x + patch_size]


def patches_of_pair(pair: NormalisedPair, patch_size: int, random_patches: int,
                    rng: np.random.Generator, grid_patches: bool = True,
                    flip_left_right: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The study's grid patches (if ``grid_patches``) plus ``random_patches`` head-centred ones, as
    (input, target) pairs. With ``flip_left_right`` each is mirrored along x with probability 1/2.
    """
    corners = grid_patch_corners(pair.network_input.shape, patch_size) if grid_patches else []
    corners += random_patch_corners(pair, patch_size, random_patches, rng)
    for corner in corners:
        source = extract_patch(pair.network_input, corner, patch_size)
        target = extract_patch(pair.network_target, corner, patch_size)
        if flip_left_right and rng.random() < 0.5:
            source, target = source[:, :, ::-1], target[:, :, ::-1]
        yield np.ascontiguousarray(source), np.ascontiguousarray(target)


def _find_image(folder: Path, stem: str) -> Path:
    from ..io import IMAGE_SUFFIXES

    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").exists():
            return folder / f"{stem}{suffix}"
    raise PVCInputError(f"{folder}: no {stem} image ({stem}.nii.gz, {stem}.nrrd, ...)")


def pairs_from_folder(folder) -> Iterator[TrainingPair]:
    """A user's real pairs: every subfolder of ``folder`` holds ``input.<ext>`` (PET before PVC) and
    ``target.<ext>`` (the same PET after the user's own PVC) on one grid; both are resampled to the
    1 mm 256^3 standard grid."""
    from ..grid import resample_to_standard_grid
    from ..io import read_image

    folder = Path(folder)
    subject_folders = sorted(p for p in folder.iterdir()
                             if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []
    if not subject_folders:
        raise PVCInputError(f"{folder}: no subject folders (each with input.<ext> and target.<ext>)")
    for subject in subject_folders:
        source, geometry = read_image(_find_image(subject, PAIR_INPUT_STEM))
        target, target_geometry = read_image(_find_image(subject, PAIR_TARGET_STEM))
        if source.shape != target.shape or not geometry.matches(target_geometry):
            raise PVCInputError(f"{subject}: input and target are on different grids")
        yield TrainingPair(subject.name, resample_to_standard_grid(source, geometry)[0],
                           resample_to_standard_grid(target, target_geometry)[0])

