"""Reading and writing PET images (NIfTI, NRRD, MHA/MHD, DICOM series) through SimpleITK.

Arrays are float32 ``[z, y, x]``; values stay in the units stored in the file (Bq/mL, SUV, ...),
with the file's rescale slope/intercept applied.

Reading checks the whole file before ITK sees it: the full compressed stream (gzip CRC and length
of a .nii.gz, zlib checksum of compressed .mha/.mhd data), the data length of a .nii and of raw
.mha/.mhd data, and the NIfTI header as stored (pixdim > 0; finite transforms; qform and sform
within a voxel of each other when both are set), so a corrupt, truncated or self-contradictory file
is refused in one line instead of read as garbage. NRRD gzip data are checked by ITK itself.

Writing goes through one atomic writer: every file is written next to its final place under a
temporary name and moved in only when complete. Without ``force`` the move is a hard link, which
fails when the target exists, so a second run can never replace a first run's outputs (even one
that finished meanwhile). A failed or interrupted run removes only what it created itself: its
temporary files and the folders it made, and those only while they are empty.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import secrets
import shutil
import signal
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import PVCInputError
from .geometry import Geometry, check_geometry

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: DICOM series are written back as compressed NIfTI (writing a valid DICOM PET series needs the
#: whole original header set; NIfTI keeps the geometry and the values exactly).
DICOM_OUTPUT_SUFFIX = ".nii.gz"
#: Name prefix of the staging folders and temporary files the writers leave only while they run.
TEMPORARY_PREFIX = ".pet-pvc-"
_CHUNK_BYTES = 1 << 24


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


def check_path_encoding(path) -> None:
    """Refuse a path that is not valid UTF-8 (ITK aborts the whole process on one)."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise PVCInputError(f"{shown}: path is not valid UTF-8; rename the file or folder") from None


# --- integrity of the stored bytes ------------------------------------------------------------

def _corrupt(path, error) -> PVCInputError:
    return PVCInputError(f"{path}: compressed data are corrupt or truncated ({error}); "
                         "the file is damaged, copy it again")


def _gzip_stream_length(path: Path) -> int:
    """Decompressed length of a gzip file, reading it to the end (which verifies CRC and length);
    the file's size when it is not gzip-compressed at all (left to the readers to judge)."""
    with open(path, "rb") as stream:
        if stream.read(2) != b"\x1f\x8b":
            return path.stat().st_size
    length = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK_BYTES):
                length += len(chunk)
    except (OSError, EOFError, zlib.error) as error:
        raise _corrupt(path, error) from None
    return length


def _check_zlib_stream(path: Path, offset: int) -> None:
    """Decompress the zlib stream(s) of ``path`` from byte ``offset`` to the end (adler32 checked)."""
    decompressor = zlib.decompressobj()
    try:
        with open(path, "rb") as stream:
            stream.seek(offset)
            while chunk := stream.read(_CHUNK_BYTES):
                while chunk:
                    decompressor.decompress(chunk, _CHUNK_BYTES)
                    chunk = decompressor.unconsumed_tail
                    if decompressor.eof and decompressor.unused_data:  # a further stream follows
                        chunk, decompressor = decompressor.unused_data + chunk, zlib.decompressobj()
    except zlib.error as error:
        raise _corrupt(path, error) from None
    if not decompressor.eof:
        raise _corrupt(path, "the stream ends early")


def _metaimage_header(path: Path) -> tuple[dict, int]:
    """Keys of a MetaImage (.mha/.mhd) header and the byte offset where its data start."""
    fields, offset = {}, 0
    with open(path, "rb") as stream:
        for line in stream:
            offset += len(line)
            key, _, value = line.decode("latin-1").partition("=")
            fields[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile" or offset > (1 << 20):
                break
    return fields, offset


#: Bytes per value of the MetaImage element types whose size is fixed (MET_LONG's is not).
_METAIMAGE_ELEMENT_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
                            "MET_UINT": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                            "MET_DOUBLE": 8}


def _check_metaimage_stream(path: Path) -> None:
    """MetaImage data: ITK reports no error for a damaged zlib stream, and a misleading one (plus
    lines of its own on stderr) for truncated raw data, so check both here."""
    fields, offset = _metaimage_header(path)
    data_file = fields.get("ElementDataFile", "")
    if data_file == "LOCAL":
        data_path = path
    elif data_file and " " not in data_file and (path.parent / data_file).is_file():
        data_path, offset = path.parent / data_file, 0
    else:
        return  # a file list or pattern, or a missing file: ITK says so
    if fields.get("CompressedData", "").lower() == "true":
        _check_zlib_stream(data_path, offset)
        return
    element_bytes = _METAIMAGE_ELEMENT_BYTES.get(fields.get("ElementType", ""))
    try:
        values = int(np.prod([int(n) for n in fields.get("DimSize", "").split()]))
        values *= int(fields.get("ElementNumberOfChannels", "1"))
    except ValueError:
        return  # a malformed header: ITK says so
    stored = data_path.stat().st_size - offset
    if element_bytes and stored < values * element_bytes:
        raise PVCInputError(f"{data_path}: file is truncated ({stored} of {values * element_bytes} data bytes); "
                            "copy it again")


def _nifti_data_length(image) -> int:
    """Bytes a NIfTI's header says its file holds: header and extensions, then the voxels."""
    header = image.header
    return int(image.dataobj.offset) + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize


def _check_nifti(path: Path):
    """Check a NIfTI file's stream, length and header; return it as nibabel loaded it."""
    import nibabel

    stored_length = _gzip_stream_length(path) if image_suffix(path) == ".nii.gz" else path.stat().st_size
    try:
        image = nibabel.load(str(path))
        with nibabel.openers.ImageOpener(str(path)) as stream:  # as stored: load() "fixes" bad pixdim
            header = type(image.header).from_fileobj(stream, check=False)
    except Exception:  # noqa: BLE001 - not a NIfTI nibabel understands: ITK reports it in one line
        return None
    if stored_length < _nifti_data_length(image):
        raise PVCInputError(f"{path}: file is truncated ({stored_length} of {_nifti_data_length(image)} bytes); "
                            "copy it again")
    pixdim = np.asarray(header["pixdim"][1:4], dtype=float)
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim <= 0):
        raise PVCInputError(f"{path}: NIfTI voxel size (pixdim) {tuple(float(p) for p in pixdim)} is zero, "
                            "negative or not finite; the voxel size is unknown: fix the header")
    _check_nifti_transforms(path, header, pixdim)
    return image


def _check_nifti_transforms(path: Path, header, pixdim: np.ndarray) -> None:
    """Refuse a NIfTI whose transforms in use are not finite (ITK would silently drop them), or whose
    qform and sform are both set and place a voxel more than a voxel apart."""
    transforms = {name: getter() for name, getter in (("qform", header.get_qform), ("sform", header.get_sform))
                  if int(header[f"{name}_code"]) > 0}
    for name, transform in transforms.items():
        if not np.all(np.isfinite(transform)):
            raise PVCInputError(f"{path}: the NIfTI {name} (image origin/orientation) is not finite; "
                                "fix the header")
    if len(transforms) < 2:
        return  # one transform only: ITK and nibabel both use it
    shape = (list(header.get_data_shape()) + [1, 1, 1])[:3]
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)])
    distance = float(np.max(np.linalg.norm(corners @ (transforms["qform"] - transforms["sform"]).T, axis=1)))
    if distance > float(np.min(pixdim)):
        raise PVCInputError(f"{path}: the NIfTI qform and sform disagree by up to {distance:.1f} mm (more than a "
                            "voxel), so where the image lies is ambiguous; fix the header (e.g. in nibabel: "
                            "set_qform(get_sform()) or the reverse) and try again")


def _check_stored_bytes(path: Path):
    """Check the stored bytes of an image file (see the module's docstring); the NIfTI as nibabel
    read it, or None."""
    suffix = image_suffix(path)
    if suffix in (".nii", ".nii.gz"):
        return _check_nifti(path)
    if suffix in (".mha", ".mhd"):
        _check_metaimage_stream(path)
    return None  # NRRD: ITK's own gzip reader reports a damaged stream; DICOM: GDCM reports it


# --- reading ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _itk_warnings_hidden():
    """ITK prints warnings straight to stderr (after which the one error line would be lost)."""
    import SimpleITK as sitk

    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _read_sitk_image(path: Path):
    """The checked SimpleITK image of ``path`` (a file or a DICOM series folder), and the NIfTI as
    nibabel read it (None for other formats)."""
    import SimpleITK as sitk

    check_path_encoding(path)
    if not path.exists():
        raise PVCInputError(f"{path}: no such file or folder")
    try:
        with _itk_warnings_hidden():
            if path.is_dir():
                reader = sitk.ImageSeriesReader()
                series_ids = reader.GetGDCMSeriesIDs(str(path))
                if not series_ids:
                    raise PVCInputError(f"{path}: folder holds no DICOM series")
                if len(series_ids) > 1:
                    raise PVCInputError(f"{path}: folder holds {len(series_ids)} DICOM series; "
                                        "give a folder with one series")
                reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series_ids[0]))
                image, nifti = reader.Execute(), None
            else:
                nifti = _check_stored_bytes(path)
                image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise PVCInputError(f"{path}: not a readable image ({first_line.strip()[:160]})") from None
    except OSError as error:
        raise PVCInputError(f"{path}: cannot be read ({error.strerror or error})") from None
    if "complex" in image.GetPixelIDTypeAsString():
        raise PVCInputError(f"{path}: image has complex values; give real-valued activity")
    return image, nifti


def _geometry_from_sitk(image, path) -> Geometry:
    geometry = Geometry(image.GetSpacing()[:3], image.GetOrigin()[:3],
                        np.asarray(image.GetDirection(), dtype=float).reshape(image.GetDimension(),
                                                                               image.GetDimension())[:3, :3])
    check_geometry(geometry, name=str(path))
    return geometry


def _check_dimensions(image, path) -> None:
    dimension = image.GetDimension()
    size = image.GetSize()
    if image.GetNumberOfComponentsPerPixel() > 1:
        raise PVCInputError(f"{path}: image has {image.GetNumberOfComponentsPerPixel()} components per "
                            "voxel (vector/RGB/4D as vector); give one 3D frame of scalar values")
    if dimension == 4 and size[3] > 1:
        raise PVCInputError(f"{path}: 4D image with {size[3]} frames; PVC needs one 3D frame: pick one "
                            f"(e.g. the summed late frames; in Python: sitk.ReadImage(path)[:, :, :, t])")
    if dimension < 3:
        raise PVCInputError(f"{path}: image is 2D (size {tuple(size)}); PVC needs a 3D volume")
    if min(size[:3]) < 2:
        raise PVCInputError(_too_thin_message(path, tuple(size[:3])))


def _too_thin_message(name, size_xyz) -> str:
    return (f"{name}: image of size {size_xyz} (x, y, z) has fewer than 2 voxels along an axis; "
            "PVC needs a 3D volume")


def _non_finite_message(name, count: int) -> str:
    return f"{name}: {count} voxels are NaN or infinite; fix or mask them before PVC"


def _stored_non_finite(nifti, arrays) -> int:
    """NaN/Inf voxels as stored: counted by nibabel for a NIfTI (ITK's NIfTI reader silently turns
    NaN into 0), else in the arrays read."""
    if nifti is not None:
        return int(np.count_nonzero(~np.isfinite(np.asanyarray(nifti.dataobj))))
    return sum(int(np.count_nonzero(~np.isfinite(array))) for array in arrays)


#: numpy dtype kinds a PET volume may have: unsigned/signed integer and real floating point (not bool).
_REAL_KINDS = "uif"


def validate_pet_volume(volume: np.ndarray, geometry: Geometry, name: str = "input") -> None:
    """Raise :class:`PVCInputError` unless ``volume`` is a finite, non-constant, real-valued 3D array
    on a plausible grid."""
    volume = np.asarray(volume)
    if volume.dtype.kind not in _REAL_KINDS:
        raise PVCInputError(f"{name}: array of {volume.dtype} values; PVC needs real numbers "
                            "(integer or floating point activity)")
    if volume.ndim != 3:
        raise PVCInputError(f"{name}: PVC needs a 3D volume, got an array of shape {volume.shape}")
    if min(volume.shape) < 2:
        raise PVCInputError(_too_thin_message(name, volume.shape[::-1]))
    check_geometry(geometry, name=name)
    finite = np.isfinite(volume)
    if not finite.all():
        raise PVCInputError(_non_finite_message(name, int(volume.size - finite.sum())))
    if float(volume.max()) == float(volume.min()):
        raise PVCInputError(f"{name}: image is constant (every voxel = {float(volume.min()):g}); "
                            "nothing to correct")


def read_image(path, frame: Optional[int] = None) -> tuple[np.ndarray, Geometry]:
    """Read a 3D PET image: float32 array ``[z, y, x]`` in stored units, and its geometry.

    A 4D file with a single frame is accepted as 3D; ``frame`` (0-based) picks one frame of a 4D
    file. Raises :class:`PVCInputError` for a missing, unreadable, corrupt or truncated file,
    contradictory NIfTI headers, 2D or 4D images (4D without ``frame``), vector or complex voxels,
    NaN/Inf voxels, constant images and absurd spacing.
    """
    import SimpleITK as sitk

    path = Path(path)
    image, nifti = _read_sitk_image(path)
    if frame is not None:
        frames = image.GetSize()[3] if image.GetDimension() == 4 else 1
        if not 0 <= frame < frames:
            raise PVCInputError(f"{path}: frame {frame} asked, the image has {frames} frame(s) (0-based)")
        if image.GetDimension() == 4:
            image = image[:, :, :, frame]
            nifti = nifti.slicer[..., frame] if nifti is not None else None
    _check_dimensions(image, path)
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    geometry = _geometry_from_sitk(image, path)
    volume = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    non_finite = _stored_non_finite(nifti, [volume])
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
    image, nifti = _read_sitk_image(path)
    if image.GetNumberOfComponentsPerPixel() > 1 or image.GetDimension() < 3 or min(image.GetSize()[:3]) < 2:
        raise PVCInputError(f"{path}: probability maps must be 3D, or 4D with one map per frame")
    frames = ([image[:, :, :, t] for t in range(image.GetSize()[3])] if image.GetDimension() == 4 else [image])
    geometry = _geometry_from_sitk(frames[0], path)
    maps = [sitk.GetArrayFromImage(frame).astype(np.float32) for frame in frames]
    non_finite = _stored_non_finite(nifti, maps)
    if non_finite:
        raise PVCInputError(_non_finite_message(path, non_finite))
    return maps, geometry


def read_label_image(path) -> tuple[np.ndarray, Geometry]:
    """Read a 3D label image (region numbers): int32 array ``[z, y, x]`` and its geometry.

    Raises :class:`PVCInputError` when a value is NaN/Inf or not a whole number.
    """
    import SimpleITK as sitk

    path = Path(path)
    image, nifti = _read_sitk_image(path)
    _check_dimensions(image, path)
    geometry = _geometry_from_sitk(image, path)
    values = sitk.GetArrayFromImage(image)
    non_finite = _stored_non_finite(nifti, [values])
    if non_finite:
        raise PVCInputError(f"{path}: {non_finite} label voxels are NaN or infinite; give region numbers")
    if not np.array_equal(values, np.round(values)):
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


# --- writing ----------------------------------------------------------------------------------

def _publish(source: Path, target: Path, replace: bool) -> None:
    """Move the complete file ``source`` to ``target`` in one step. Without ``replace`` an existing
    target is never replaced: the hard link fails if it exists, even if it appeared a moment ago."""
    if replace:
        os.replace(source, target)
        return
    try:
        os.link(source, target)
    except FileExistsError:
        raise PVCInputError(f"{target} exists (written meanwhile by another run?); use --force to "
                            "overwrite it") from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
        if target.exists():  # a file system without hard links: check, then rename
            raise PVCInputError(f"{target} exists; use --force to overwrite it") from None
        os.replace(source, target)
        return
    source.unlink()


def refuse_existing_outputs(output_dir, file_names, force: bool = False, protected=()) -> None:
    """Raise :class:`PVCInputError` when an output would overwrite a ``protected`` path (an input),
    or exists already (unless ``force``): the check to run before any expensive work."""
    output_dir = Path(output_dir)
    check_path_encoding(output_dir)
    protected_paths = {Path(p).resolve() for p in protected}
    if output_dir.exists() and not output_dir.is_dir():
        raise PVCInputError(f"{output_dir}: exists and is not a folder; choose an output folder")
    for name in file_names:
        target = (output_dir / name).resolve()
        if target in protected_paths:
            raise PVCInputError(f"{target}: output would overwrite an input; choose another output path")
        if target.exists() and not force:
            raise PVCInputError(f"{target} exists; use --force to overwrite it")


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those this call created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    created = []
    try:
        for path in reversed(missing):
            try:
                path.mkdir()
                created.append(path)
            except FileExistsError:  # made meanwhile by someone else: not ours to remove
                pass
    except OSError as error:
        _remove_if_empty(created)
        raise PVCInputError(f"{path}: cannot create output folder ({error.strerror})") from None
    return created


def _remove_if_empty(folders) -> None:
    """Remove the folders (innermost first) a failed run created, each only while it is empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _unwritable(folder: Path, error: OSError) -> PVCInputError:
    return PVCInputError(f"{folder}: cannot write there ({error.strerror or error}); "
                         "choose a writable output folder")


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold SIGINT/SIGTERM back while a step that must not be cut in two runs (creating a staging
    folder and recording it; moving the outputs in); they arrive as soon as it is over."""
    interrupts = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, interrupts)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def staged_outputs(output_dir, file_names, force: bool = False, protected=()):
    """Stage files in a temporary folder inside ``output_dir``; move them in only on success.

    Yields the staging folder: write each of ``file_names`` (plus any companion files, such as an
    .mhd's .raw) there. Refuses, before anything is written, outputs that exist (unless ``force``)
    and outputs that would overwrite a ``protected`` path (the input). Files are moved in without
    replacing any that appeared meanwhile (unless ``force``); if one did, the files of this run
    already moved in are taken out again. On any failure or interrupt the staging folder is removed,
    and so are the folders this call created, if they are empty.
    """
    output_dir = Path(output_dir)
    refuse_existing_outputs(output_dir, file_names, force, protected)
    with _interrupts_deferred():
        created = _make_folders(output_dir)
        try:
            staging = Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}staging-", dir=output_dir))
        except OSError as error:
            _remove_if_empty(created)
            raise _unwritable(output_dir, error) from None
    published = []
    try:
        yield staging
        with _interrupts_deferred():
            for staged_file in sorted(staging.iterdir()):
                _publish(staged_file, output_dir / staged_file.name, replace=force)
                published.append(output_dir / staged_file.name)
    except BaseException:
        if not force:  # take out what this run moved in (without force, only its own files)
            for path in published:
                path.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        _remove_if_empty(created)
        raise
    shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path, force: bool = False):
    """Yield a temporary path next to ``path`` (same name at its end, so writers that go by the
    suffix work); on success it is moved to ``path`` in one step, never replacing an existing file
    unless ``force`` (see :func:`_publish`). On failure the temporary file is removed."""
    path = Path(path)
    refuse_existing_outputs(path.parent, [path.name], force)
    if not path.parent.is_dir():
        raise PVCInputError(f"{path.parent}: no such folder")
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{secrets.token_hex(4)}-{path.name}")
    try:
        yield temporary  # the writer creates it (with the umask's permissions)
        _publish(temporary, path, replace=force)
    except PermissionError as error:
        raise _unwritable(path.parent, error) from None
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path, text: str, force: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_file`); refuses to overwrite unless ``force``."""
    with atomic_file(path, force) as temporary:
        with open(temporary, "w", newline="") as stream:
            stream.write(text)
    return Path(path)


def _write_sitk(volume: np.ndarray, geometry: Geometry, path: Path) -> None:
    """Write one image; refuses a non-finite one (no NaN/Inf image is ever written)."""
    import SimpleITK as sitk

    non_finite = int(np.count_nonzero(~np.isfinite(volume)))
    if non_finite:
        raise PVCInputError(f"{path.name}: the result has {non_finite} NaN or infinite voxels (values outside "
                            "what float32 holds?); nothing was written")
    try:
        with _itk_warnings_hidden():
            sitk.WriteImage(to_sitk_image(volume, geometry), str(path), useCompression=True)
    except RuntimeError as error:
        detail = str(error).strip().splitlines()[-1][:160] if str(error).strip() else "unknown error"
        raise PVCInputError(f"{path}: cannot be written ({detail})") from None


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
