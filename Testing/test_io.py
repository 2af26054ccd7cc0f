"""Reading and writing PET images in every supported format, and every bad input refused clearly."""

import numpy as np
import pytest
import SimpleITK as sitk

from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.geometry import Geometry
from PETPartialVolumeCorrectionLib.io import (read_image, read_label_image, staged_outputs,
                                              write_image)


@pytest.fixture
def pet_volume():
    rng = np.random.default_rng(3)
    return rng.uniform(100.0, 9000.0, size=(12, 14, 16)).astype(np.float32)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
def test_round_trip_keeps_values_and_oblique_geometry(tmp_path, pet_volume, oblique_geometry, suffix):
    path = write_image(pet_volume, oblique_geometry, tmp_path / f"pet{suffix}")
    volume, geometry = read_image(path)
    np.testing.assert_array_equal(volume, pet_volume)
    assert geometry.matches(oblique_geometry, tolerance_mm=1e-4)


def test_dicom_series_folder_is_read_with_its_geometry(tmp_path, pet_volume):
    geometry = Geometry((2.0, 2.0, 3.0), (-100.0, -120.0, 40.0))
    image = sitk.Cast(sitk.GetImageFromArray(np.round(pet_volume).astype(np.int16)), sitk.sitkInt16)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_image = image[:, :, k]
        slice_image.SetMetaData("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))))
        slice_image.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        slice_image.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1")
        slice_image.SetMetaData("0008|0060", "PT")
        slice_image.SetMetaData("0020|0013", str(k))
        writer.SetFileName(str(tmp_path / f"slice{k:03d}.dcm"))
        writer.Execute(slice_image)
    volume, read_geometry = read_image(tmp_path)
    np.testing.assert_array_equal(volume, np.round(pet_volume))
    assert read_geometry.matches(geometry, tolerance_mm=1e-3)


def _write_sitk(image, path):
    sitk.WriteImage(image, str(path))
    return path


def test_missing_file(tmp_path):
    with pytest.raises(PVCInputError, match="no such file"):
        read_image(tmp_path / "absent.nii.gz")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.nii"
    path.write_text("this is not a NIfTI file")
    with pytest.raises(PVCInputError, match="not a readable image"):
        read_image(path)


def test_folder_without_dicom(tmp_path):
    with pytest.raises(PVCInputError, match="no DICOM series"):
        read_image(tmp_path)


def test_2d_image(tmp_path):
    path = _write_sitk(sitk.GetImageFromArray(np.ones((10, 10), np.float32)), tmp_path / "slice.nrrd")
    with pytest.raises(PVCInputError, match="2D"):
        read_image(path)


def test_4d_image_says_how_to_pick_a_frame(tmp_path):
    frames = sitk.JoinSeries([sitk.GetImageFromArray(np.random.rand(6, 6, 6).astype(np.float32))] * 3)
    path = _write_sitk(frames, tmp_path / "dynamic.nii.gz")
    with pytest.raises(PVCInputError, match="4D image with 3 frames.*pick one"):
        read_image(path)


def test_4d_image_with_one_frame_is_read_as_3d(tmp_path):
    data = np.random.rand(6, 7, 8).astype(np.float32)
    path = _write_sitk(sitk.JoinSeries([sitk.GetImageFromArray(data)]), tmp_path / "one_frame.nii.gz")
    volume, _ = read_image(path)
    np.testing.assert_array_equal(volume, data)


def test_vector_image(tmp_path):
    image = sitk.GetImageFromArray(np.random.rand(5, 6, 7, 3).astype(np.float32), isVector=True)
    path = _write_sitk(image, tmp_path / "rgb.nrrd")
    with pytest.raises(PVCInputError, match="components per voxel"):
        read_image(path)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_voxels(tmp_path, pet_volume, bad_value):
    pet_volume[3, 4, 5] = bad_value
    path = _write_sitk(sitk.GetImageFromArray(pet_volume), tmp_path / "bad.nii.gz")  # write_image refuses it
    with pytest.raises(PVCInputError, match="1 voxels are NaN or infinite"):
        read_image(path)


def test_non_finite_image_is_never_written(tmp_path, pet_volume):
    pet_volume[3, 4, 5] = np.inf
    with pytest.raises(PVCInputError, match="1 NaN or infinite voxels.*nothing was written"):
        write_image(pet_volume, Geometry((2.0, 2.0, 2.0)), tmp_path / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_constant_image(tmp_path):
    path = write_image(np.full((8, 8, 8), 5.0, np.float32), Geometry((2.0, 2.0, 2.0)), tmp_path / "c.nrrd")
    with pytest.raises(PVCInputError, match="constant"):
        read_image(path)


@pytest.mark.parametrize("spacing", [(0.0001, 2.0, 2.0), (2.0, 2.0, 80.0)])
def test_absurd_spacing(tmp_path, pet_volume, spacing):
    image = sitk.GetImageFromArray(pet_volume)
    image.SetSpacing(spacing)
    path = _write_sitk(image, tmp_path / "spacing.mha")
    with pytest.raises(PVCInputError, match="spacing .* not plausible"):
        read_image(path)


def test_label_image_must_hold_whole_numbers(tmp_path, pet_volume):
    path = write_image(pet_volume + 0.25, Geometry((2.0, 2.0, 2.0)), tmp_path / "labels.nii.gz")
    with pytest.raises(PVCInputError, match="non-integer"):
        read_label_image(path)
    labels_path = write_image(np.round(pet_volume / 1000.0), Geometry((2.0, 2.0, 2.0)), tmp_path / "ok.nrrd")
    labels, _ = read_label_image(labels_path)
    assert labels.dtype == np.int32 and labels.max() == 9


def test_existing_output_is_kept_without_force(tmp_path, pet_volume):
    geometry = Geometry((2.0, 2.0, 2.0))
    path = write_image(pet_volume, geometry, tmp_path / "out.nrrd")
    with pytest.raises(PVCInputError, match="exists; use --force"):
        write_image(pet_volume * 2, geometry, path)
    np.testing.assert_array_equal(read_image(path)[0], pet_volume)
    write_image(pet_volume * 2, geometry, path, force=True)
    np.testing.assert_array_equal(read_image(path)[0], pet_volume * 2)


def test_failed_staging_leaves_nothing_behind(tmp_path):
    output_dir = tmp_path / "new_folder"
    with pytest.raises(RuntimeError):
        with staged_outputs(output_dir, ["a.nii.gz", "b.nii.gz"]) as staging:
            (staging / "a.nii.gz").write_bytes(b"complete")
            raise RuntimeError("second output failed")
    assert not output_dir.exists()


def test_output_onto_the_input_is_refused(tmp_path, pet_volume):
    path = write_image(pet_volume, Geometry((2.0, 2.0, 2.0)), tmp_path / "pet.nrrd")
    with pytest.raises(PVCInputError, match="overwrite an input"):
        with staged_outputs(tmp_path, ["pet.nrrd"], force=True, protected=[path]):
            pass
