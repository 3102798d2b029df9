"""Tests for :mod:`pipelines.io.dicom_cine` on the real Sunnybrook cine (12 positions x 20 phases) and copies of it."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from pipelines.errors import InputError
from pipelines.io.dicom_cine import DicomSeries, read_series, write_nifti


@pytest.fixture(scope="module")
def cine_folder(sunnybrook_dicom_sample: Path) -> Path:
    return sunnybrook_dicom_sample / "SCD_DeidentifiedImages" / "SCD0000101" / "CINESAX"


@pytest.fixture(scope="module")
def cine(cine_folder: Path) -> DicomSeries:
    return read_series(cine_folder)


def copy_files(files: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy(path, folder / path.name)
    return folder


def test_cine_is_positions_by_phases(cine: DicomSeries) -> None:
    assert cine.array.shape == (256, 256, 12, 20)
    assert cine.array.dtype == np.int16
    assert (cine.num_positions, cine.num_phases) == (12, 20)
    assert len({path for files in cine.files for path in files}) == 240
    assert cine.trigger_times_ms.shape == (12, 20)
    assert (np.diff(cine.trigger_times_ms, axis=1) > 0).all()
    np.testing.assert_allclose(cine.spacing_mm, (1.367188, 1.367188, 10.0), atol=1e-3)
    # Nominal R-R intervals of 731-800 ms over 20 phases.
    assert 35 < cine.phase_interval_ms < 41


@pytest.mark.parametrize("phase", [0, 7])
def test_one_phase_has_the_geometry_simpleitk_writes(cine: DicomSeries, phase: int, tmp_path: Path) -> None:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(files[phase]) for files in cine.files])
    sitk.WriteImage(reader.Execute(), str(tmp_path / "itk.nii.gz"))
    itk = nib.load(tmp_path / "itk.nii.gz")

    np.testing.assert_allclose(cine.affine, itk.affine, atol=1e-3)
    np.testing.assert_array_equal(cine.phase(phase), np.asanyarray(itk.dataobj))
    # Oblique: no axis of the affine is along a world axis.
    assert (np.abs(cine.affine[:3, :3]) > 0.1).sum() > 3


def test_write_nifti_4d_without_identifiers(cine: DicomSeries, tmp_path: Path) -> None:
    out = write_nifti(cine, tmp_path / "cine.nii.gz")

    image = nib.load(out)
    assert image.shape == (256, 256, 12, 20)
    assert image.get_data_dtype() == np.int16
    assert image.header.get_xyzt_units() == ("mm", "msec")
    assert image.header.get_zooms()[3] == pytest.approx(cine.phase_interval_ms, abs=1e-3)
    np.testing.assert_allclose(image.affine, cine.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), cine.array)
    assert b"SCD0000101" not in gzip.decompress(out.read_bytes())
    assert [p.name for p in tmp_path.iterdir()] == ["cine.nii.gz"]


def test_one_image_per_position_is_a_3d_volume(cine: DicomSeries, tmp_path: Path) -> None:
    folder = copy_files([files[3] for files in cine.files], tmp_path / "stack")

    stack = read_series(folder)

    assert stack.array.shape == (256, 256, 12)
    assert stack.num_phases == 1
    np.testing.assert_array_equal(stack.array, cine.phase(3))
    np.testing.assert_allclose(stack.affine, cine.affine, atol=1e-6)


def _refused(folder: Path, problem: str) -> None:
    with pytest.raises(InputError, match=problem) as caught:
        read_series(folder)
    assert caught.value.path == folder
    assert "\n" not in str(caught.value)


def test_single_image_is_refused(cine: DicomSeries, tmp_path: Path) -> None:
    _refused(copy_files([cine.files[0][0]], tmp_path / "one"), "a single DICOM image")


def test_missing_phase_is_refused(cine: DicomSeries, tmp_path: Path) -> None:
    folder = copy_files([*cine.files[0][:3], *cine.files[1][:2]], tmp_path / "missing")
    _refused(folder, r"missing phases: slice positions hold different numbers of images \(2, 3\)")


def test_duplicated_phase_is_refused(cine: DicomSeries, tmp_path: Path) -> None:
    folder = copy_files([*cine.files[0][:3], *cine.files[1][:3]], tmp_path / "duplicated")
    shutil.copy(cine.files[1][2], folder / "copy.dcm")
    _refused(folder, "duplicated phase: two images at slice position 1 share a TriggerTime")


def test_uneven_slice_spacing_is_refused(cine: DicomSeries, tmp_path: Path) -> None:
    folder = copy_files([cine.files[k][0] for k in (0, 1, 3)], tmp_path / "gap")
    _refused(folder, r"non-uniform slice spacing: gaps of 10.00 to 20.00 mm")


def _synthetic_slice(template: Path, path: Path, size: int, shift_mm: float = 0.0) -> None:
    """A slice of the sample's series (same UID, orientation, spacing) with another matrix size or position."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(template))
    reader.ReadImageInformation()
    image = sitk.Image(size, size, sitk.sitkInt16) + 5
    image = sitk.JoinSeries(image)
    # The writer takes position, orientation and pixel spacing from the image's geometry, not from tags.
    position = np.array([float(v) for v in reader.GetMetaData("0020|0032").split("\\")])
    cosines = np.array([float(v) for v in reader.GetMetaData("0020|0037").split("\\")])
    row_cosine, column_cosine = cosines[:3], cosines[3:]
    image.SetOrigin(tuple(position + shift_mm * row_cosine))
    image.SetDirection(tuple(np.column_stack([row_cosine, column_cosine, np.cross(row_cosine, column_cosine)]).ravel()))
    image.SetSpacing((*reader.GetSpacing()[:2], 1.0))
    for key in ("0020|000e", "0008|0060", "0018|1060"):
        image.SetMetaData(key, reader.GetMetaData(key).strip())
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(path))
    writer.Execute(image)


def test_mixed_matrix_sizes_are_refused(cine: DicomSeries, tmp_path: Path) -> None:
    folder = copy_files([files[0] for files in cine.files[:3]], tmp_path / "mixed")
    _synthetic_slice(cine.files[3][0], folder / "small.dcm", size=128)
    _refused(folder, r"mixed matrix sizes in one series \(128x128, 256x256")


def test_positions_off_one_line_are_refused(cine: DicomSeries, tmp_path: Path) -> None:
    folder = copy_files([files[0] for files in cine.files[:3]], tmp_path / "offline")
    _synthetic_slice(cine.files[3][0], folder / "shifted.dcm", size=256, shift_mm=5.0)
    _refused(folder, r"not on one line along the slice normal \(5.00 mm off it\)")
