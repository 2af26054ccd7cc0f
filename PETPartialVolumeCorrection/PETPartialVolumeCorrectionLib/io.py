"""Reading and writing PET images (NIfTI, NRRD, MHA/MHD, DICOM series) through SimpleITK.

Arrays are float32 ``[z, y, x]``; values stay in the units stored in the file (Bq/mL, SUV, ...),
with the file's rescale slope/intercept applied. Writing is staged in a temporary folder inside the
output folder and moved into place only when every file is complete, so nothing is half-written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import PVCInputError
from .geometry import Geometry, check_spacing

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: DICOM series are written back as compressed NIfTI (writing a valid DICOM PET series needs the
#: whole original header set; NIfTI keeps the geometry and the values exactly).
DICOM_OUTPUT_SUFFIX = ".nii.gz"


def image_suffix(path) -> str:
    """The image format suffix of ``path`` ('.nii.gz', '.nrrd', ...), or '' for a folder/unknown."""
    name = Path(path).name.lower()
    return next((suffix for suffix in IMAGE_SUFFIXES if name.endswith(suffix)), "")


def image_stem(path) -> str:
    """File name without its image suffix (the folder name for a DICOM series)."""
    name = Path(path).name
    suffix = image_suffix(path)
    return name[: len(name) - len(suffix)] if suffix else name


def output_suffix(input_path) -> str:
    """The suffix outputs get: the input's own format, NIfTI for a DICOM series."""
    return image_suffix(input_path) or DICOM_OUTPUT_SUFFIX


def _read_sitk_image(path: Path):
    import SimpleITK as sitk

    if not path.exists():
        raise PVCInputError(f"{path}: no such file or folder")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series_ids = reader.GetGDCMSeriesIDs(str(path))
            if not series_ids:
                raise PVCInputError(f"{path}: folder holds no DICOM series")
            if len(series_ids) > 1:
                raise PVCInputError(f"{path}: folder holds {len(series_ids)} DICOM series; "
                                    "give a folder with one series")
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series_ids[0]))
            return reader.Execute()
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise PVCInputError(f"{path}: not a readable image ({first_line.strip()[:160]})") from None


def _geometry_from_sitk(image) -> Geometry:
    return Geometry(image.GetSpacing()[:3], image.GetOrigin()[:3],
                    np.asarray(image.GetDirection(), dtype=float).reshape(image.GetDimension(),
                                                                           image.GetDimension())[:3, :3])


def _check_dimensions(image, path) -> None:
    dimension = image.GetDimension()
    size = image.GetSize()
    if image.GetNumberOfComponentsPerPixel() > 1:
        raise PVCInputError(f"{path}: image has {image.GetNumberOfComponentsPerPixel()} components per "
                            "voxel (vector/RGB/4D as vector); give one 3D frame of scalar values")
    if dimension == 4 and size[3] > 1:
        raise PVCInputError(f"{path}: 4D image with {size[3]} frames; PVC needs one 3D frame: pick one "
                            f"(e.g. the summed late frames; in Python: sitk.ReadImage(path)[:, :, :, t])")
    if dimension < 3 or min(size[:3]) < 2:
        raise PVCInputError(f"{path}: image is 2D (size {tuple(size)}); PVC needs a 3D volume")


def _non_finite_message(name, count: int) -> str:
    return f"{name}: {count} voxels are NaN or infinite; fix or mask them before PVC"


def _count_nifti_non_finite(path: Path) -> int:
    """Non-finite voxels of a NIfTI file as stored (ITK's NIfTI reader silently turns NaN into 0)."""
    import nibabel

    return int(np.count_nonzero(~np.isfinite(np.asanyarray(nibabel.load(str(path)).dataobj))))


def validate_pet_volume(volume: np.ndarray, geometry: Geometry, name: str = "input") -> None:
    """Raise :class:`PVCInputError` unless ``volume`` is a finite, non-constant 3D array with
    plausible spacing."""
    if volume.ndim != 3 or min(volume.shape) < 2:
        raise PVCInputError(f"{name}: PVC needs a 3D volume, got an array of shape {volume.shape}")
    check_spacing(geometry.spacing)
    finite = np.isfinite(volume)
    if not finite.all():
        raise PVCInputError(_non_finite_message(name, int(volume.size - finite.sum())))
    if float(volume.max()) == float(volume.min()):
        raise PVCInputError(f"{name}: image is constant (every voxel = {float(volume.min()):g}); "
                            "nothing to correct")


def read_image(path, frame: Optional[int] = None) -> tuple[np.ndarray, Geometry]:
    """Read a 3D PET image: float32 array ``[z, y, x]`` in stored units, and its geometry.

    A 4D file with a single frame is accepted as 3D; ``frame`` (0-based) picks one frame of a 4D
    file. Raises :class:`PVCInputError` for a missing or unreadable file, 2D or 4D images (without
    ``frame``), vector voxels, NaN/Inf voxels, constant images and absurd spacing.
    """
    import SimpleITK as sitk

    path = Path(path)
    image = _read_sitk_image(path)
    if frame is not None:
        frames = image.GetSize()[3] if image.GetDimension() == 4 else 1
        if not 0 <= frame < frames:
            raise PVCInputError(f"{path}: frame {frame} asked, the image has {frames} frame(s) (0-based)")
        image = image[:, :, :, frame] if image.GetDimension() == 4 else image
    _check_dimensions(image, path)
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    geometry = _geometry_from_sitk(image)
    volume = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    if image_suffix(path) in (".nii", ".nii.gz"):
        non_finite = _count_nifti_non_finite(path)
        if non_finite:
            raise PVCInputError(_non_finite_message(path, non_finite))
    validate_pet_volume(volume, geometry, name=str(path))
    return volume, geometry


def read_probability_maps(path) -> tuple[list[np.ndarray], Geometry]:
    """Read probability maps: one 3D map, or every frame of a 4D file (PETPVC's mask format).

    Returns float32 ``[z, y, x]`` arrays and their geometry. Values are checked to be finite; their
    range is the caller's to check (an all-zero map is valid here).
    """
    import SimpleITK as sitk

    path = Path(path)
    image = _read_sitk_image(path)
    if image.GetNumberOfComponentsPerPixel() > 1 or image.GetDimension() < 3 or min(image.GetSize()[:3]) < 2:
        raise PVCInputError(f"{path}: probability maps must be 3D, or 4D with one map per frame")
    frames = ([image[:, :, :, t] for t in range(image.GetSize()[3])] if image.GetDimension() == 4 else [image])
    geometry = _geometry_from_sitk(frames[0])
    check_spacing(geometry.spacing)
    maps = [sitk.GetArrayFromImage(frame).astype(np.float32) for frame in frames]
    if image_suffix(path) in (".nii", ".nii.gz"):  # ITK reads NIfTI NaN as 0: count them as stored
        non_finite = _count_nifti_non_finite(path)
    else:
        non_finite = sum(int(np.count_nonzero(~np.isfinite(m))) for m in maps)
    if non_finite:
        raise PVCInputError(_non_finite_message(path, non_finite))
    return maps, geometry


def read_label_image(path) -> tuple[np.ndarray, Geometry]:
    """Read a 3D label image (region numbers): int32 array ``[z, y, x]`` and its geometry.

    Raises :class:`PVCInputError` when the values are not whole numbers.
    """
    import SimpleITK as sitk

    path = Path(path)
    image = _read_sitk_image(path)
    _check_dimensions(image, path)
    geometry = _geometry_from_sitk(image)
    check_spacing(geometry.spacing)
    values = sitk.GetArrayFromImage(image)
    if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
        raise PVCInputError(f"{path}: label image has non-integer values; give region numbers "
                            "(a label map), or probability maps through the probability options")
    return values.astype(np.int32), geometry


def to_sitk_image(volume: np.ndarray, geometry: Geometry):
    """A SimpleITK image of ``volume`` ([z, y, x]) with ``geometry``."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(volume))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(tuple(geometry.direction.ravel()))
    return image


def _write_sitk(volume: np.ndarray, geometry: Geometry, path: Path) -> None:
    import SimpleITK as sitk

    sitk.WriteImage(to_sitk_image(volume, geometry), str(path), useCompression=True)


@contextlib.contextmanager
def staged_outputs(output_dir, file_names, force: bool = False, protected=()):
    """Stage files in a temporary folder inside ``output_dir``; move them in only on success.

    Yields the staging folder: write each of ``file_names`` (plus any companion files, such as an
    .mhd's .raw) there. Refuses, before anything is written, outputs that exist (unless ``force``)
    and outputs that would overwrite a ``protected`` path (the input). On an exception the staging
    folder is removed and ``output_dir`` is left as it was (removed again if this call made it).
    """
    output_dir = Path(output_dir)
    protected_paths = {Path(p).resolve() for p in protected}
    for name in file_names:
        target = (output_dir / name).resolve()
        if target in protected_paths:
            raise PVCInputError(f"{target}: output would overwrite the input; choose another output folder")
        if target.exists() and not force:
            raise PVCInputError(f"{target} exists; use --force to overwrite it")
    created_dir = not output_dir.exists()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PVCInputError(f"{output_dir}: cannot create output folder ({error.strerror})") from None
    staging = Path(tempfile.mkdtemp(prefix=".pet-pvc-staging-", dir=output_dir))
    succeeded = False
    try:
        yield staging
        for staged_file in sorted(staging.iterdir()):
            os.replace(staged_file, output_dir / staged_file.name)
        succeeded = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created_dir and not succeeded:
            shutil.rmtree(output_dir, ignore_errors=True)


def write_image(volume: np.ndarray, geometry: Geometry, path, force: bool = False) -> Path:
    """Write one image (format from the suffix of ``path``) atomically; refuses to overwrite unless
    ``force``."""
    path = Path(path)
    if not image_suffix(path):
        raise PVCInputError(f"{path}: unknown image format; use one of {', '.join(IMAGE_SUFFIXES)}")
    with staged_outputs(path.parent, [path.name], force=force) as staging:
        _write_sitk(volume, geometry, staging / path.name)
    return path


def write_staged_image(volume: np.ndarray, geometry: Geometry, staging_dir, file_name: str) -> None:
    """Write an image into a staging folder from :func:`staged_outputs`."""
    _write_sitk(volume, geometry, Path(staging_dir) / file_name)


def write_text_atomic(path, text: str, force: bool = False) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    if path.exists() and not force:
        raise PVCInputError(f"{path} exists; use --force to overwrite it")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # plain open: the umask applies
    try:
        with open(temporary, "w", newline="") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
