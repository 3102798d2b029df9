"""Tests for :mod:`pipelines.io.images`: discovering inputs, converting them to NIfTI, rejecting bad files."""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from pipelines.errors import InputError
from pipelines.io.images import ImageInput, discover_inputs, to_nifti, validate_nifti

SPACING = (3.0, 3.0, 8.0)
ORIGIN = (10.0, -20.5, 30.25)
SERIES_UID = "1.2.826.0.1.3680043.2.1125.1.4242"


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """A proper rotation matrix (det +1) from angles in degrees about x, y, z."""
    ax, ay, az = np.radians([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


DIRECTION = tuple(rotation(20, -10, 30).flatten())


def make_volume(shape_zyx: tuple[int, int, int] = (5, 16, 16), seed: int = 0) -> sitk.Image:
    """An int16 volume with anisotropic spacing, an oblique direction and an off-centre origin."""
    voxels = np.random.default_rng(seed).integers(0, 1000, shape_zyx).astype(np.int16)
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    return image


def write_dicom_series(
    image: sitk.Image, folder: Path, series_uid: str = SERIES_UID, trigger_time_ms: float | None = None
) -> list[Path]:
    """Write ``image`` as one DICOM file per slice, as in SimpleITK's "DicomSeriesFromArray" example.

    With ``trigger_time_ms``, the files are one cardiac phase of a cine (``TriggerTime`` set, names ``t<ms>_...``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = image.GetDirection()
    orientation = "\\".join(map(str, (d[0], d[3], d[6], d[1], d[4], d[7])))
    paths = []
    for i in range(image.GetDepth()):
        slice_ = image[:, :, i]
        slice_.SetMetaData("0010|0010", "Doe^Jane")
        slice_.SetMetaData("0010|0020", "PID-Doe-0001")
        slice_.SetMetaData("0008|0060", "MR")
        slice_.SetMetaData("0020|000e", series_uid)
        slice_.SetMetaData("0020|0037", orientation)
        slice_.SetMetaData("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, i)))))
        slice_.SetMetaData("0020|0013", str(i + 1))
        slice_.SetMetaData("0028|0030", f"{SPACING[1]}\\{SPACING[0]}")
        prefix = ""
        if trigger_time_ms is not None:
            slice_.SetMetaData("0018|1060", str(trigger_time_ms))
            prefix = f"t{trigger_time_ms:g}_"
        paths.append(folder / f"{prefix}slice{i:03d}.dcm")
        writer.SetFileName(str(paths[-1]))
        writer.Execute(slice_)
    return paths


def write_nifti(path: Path, voxels: np.ndarray) -> Path:
    """Save ``voxels`` as NIfTI with a simple anisotropic affine."""
    nib.save(nib.Nifti1Image(voxels, np.diag([*SPACING, 1.0])), path)
    return path


def assert_same_geometry(actual: sitk.Image, expected: sitk.Image) -> None:
    """Size equal; origin, spacing and direction equal within 1e-4; voxels equal."""
    assert actual.GetSize() == expected.GetSize()
    np.testing.assert_allclose(actual.GetOrigin(), expected.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(actual.GetSpacing(), expected.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(actual.GetDirection(), expected.GetDirection(), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(actual), sitk.GetArrayFromImage(expected))


# --- DICOM -------------------------------------------------------------------------------------------------------


def test_dicom_series_is_discovered_and_converted_without_identifiers(tmp_path: Path) -> None:
    volume = make_volume()
    write_dicom_series(volume, tmp_path / "in" / "patient01")

    inputs = discover_inputs(tmp_path / "in")

    assert inputs == [ImageInput("patient01", tmp_path / "in" / "patient01", "dicom", SERIES_UID)]
    out = to_nifti(inputs[0], tmp_path / "work")
    assert out == tmp_path / "work" / "patient01.nii.gz"
    assert_same_geometry(sitk.ReadImage(str(out)), volume)
    raw = gzip.decompress(out.read_bytes())
    assert b"Doe" not in raw
    assert b"PID" not in raw
    assert not [p for p in (tmp_path / "work").iterdir() if p.name != "patient01.nii.gz"]


def test_dicom_cine_becomes_4d_with_the_series_geometry(tmp_path: Path) -> None:
    phases = [make_volume(seed=seed) for seed in range(3)]
    for volume, trigger_ms in zip(phases, (80.0, 0.0, 40.0)):
        write_dicom_series(volume, tmp_path / "cine", trigger_time_ms=trigger_ms)

    [inp] = discover_inputs(tmp_path / "cine")
    out = to_nifti(inp, tmp_path / "work")

    image = nib.load(out)
    assert image.shape == (16, 16, 5, 3)
    voxels = np.asanyarray(image.dataobj)
    for t, seed in enumerate((1, 2, 0)):  # phases in trigger-time order
        np.testing.assert_array_equal(voxels[..., t], sitk.GetArrayFromImage(phases[seed]).transpose(2, 1, 0))
    # The geometry SimpleITK writes for one phase (oblique direction, anisotropic spacing, off-centre origin).
    sitk.WriteImage(phases[0], str(tmp_path / "phase0.nii.gz"))
    np.testing.assert_allclose(image.affine, nib.load(tmp_path / "phase0.nii.gz").affine, atol=1e-4)
    assert b"Doe" not in gzip.decompress(out.read_bytes())


def test_real_sunnybrook_cine_becomes_4d(sunnybrook_dicom_sample: Path, tmp_path: Path) -> None:
    folder = sunnybrook_dicom_sample / "SCD_DeidentifiedImages" / "SCD0000101" / "CINESAX"

    [inp] = discover_inputs(folder)
    out = to_nifti(inp, tmp_path / "work")

    image = nib.load(out)
    assert image.shape == (256, 256, 12, 20)
    assert image.header.get_zooms()[:3] == pytest.approx((1.367188, 1.367188, 10.0), abs=1e-3)
    assert b"SCD0000101" not in gzip.decompress(out.read_bytes())


def test_four_d_nifti_is_accepted_by_to_nifti(tmp_path: Path) -> None:
    voxels = np.arange(16 * 16 * 5 * 3, dtype=np.float32).reshape(16, 16, 5, 3)
    source = write_nifti(tmp_path / "cine.nii.gz", voxels)

    [inp] = discover_inputs(source)

    assert to_nifti(inp, tmp_path / "work") == source
    image, loaded = validate_nifti(source, allow_4d=True)
    assert loaded.shape == (16, 16, 5, 3)


@pytest.mark.parametrize(
    ("shape", "problem"),
    [
        ((16, 16, 5, 3, 2), r"5D image \(shape \(16, 16, 5, 3, 2\)\); give a 3D volume or a 4D series"),
        ((16, 16, 1, 3), r"2D image .*expected a 3D volume"),
        ((16, 16), r"2D image .*expected a 3D volume"),
    ],
)
def test_allow_4d_still_rejects_other_shapes(tmp_path: Path, shape: tuple[int, ...], problem: str) -> None:
    path = write_nifti(tmp_path / "bad.nii.gz", np.arange(np.prod(shape), dtype=np.float32).reshape(shape))
    with pytest.raises(InputError, match=rf"bad.nii.gz: {problem}"):
        validate_nifti(path, allow_4d=True)
    with pytest.raises(InputError, match=r"bad.nii.gz: "):
        to_nifti(ImageInput("bad", path, "nifti"), tmp_path / "work")


def test_allow_4d_still_rejects_nan_and_constant(tmp_path: Path) -> None:
    voxels = np.ones((16, 16, 5, 3), dtype=np.float32)
    with pytest.raises(InputError, match="flat.nii.gz: image is empty"):
        validate_nifti(write_nifti(tmp_path / "flat.nii.gz", voxels), allow_4d=True)
    voxels[1, 2, 3, 2] = np.nan
    with pytest.raises(InputError, match="nan.nii.gz: contains NaN"):
        validate_nifti(write_nifti(tmp_path / "nan.nii.gz", voxels), allow_4d=True)


def test_four_d_mha_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "cine.mha"
    voxels = np.arange(3 * 5 * 16 * 16, dtype=np.float32).reshape(3, 5, 16, 16)
    sitk.WriteImage(sitk.GetImageFromArray(voxels, isVector=False), str(path))
    with pytest.raises(InputError, match=r"cine.mha: 4D image"):
        to_nifti(ImageInput("cine", path, "sitk"), tmp_path / "work")


def test_single_dcm_file_gives_its_series(tmp_path: Path) -> None:
    files = write_dicom_series(make_volume(), tmp_path / "series")

    assert discover_inputs(files[2]) == [ImageInput("series", tmp_path / "series", "dicom", SERIES_UID)]


def test_two_series_in_one_folder_get_uid_suffixes(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    write_dicom_series(make_volume(seed=1), folder / "a", series_uid="1.2.3.4.5.11111111")
    write_dicom_series(make_volume(seed=2), folder / "b", series_uid="1.2.3.4.5.22222222")
    for path in (folder / "b").iterdir():
        path.rename(folder / "a" / f"b_{path.name}")

    inputs = discover_inputs(folder)

    assert [(i.name, i.series_id) for i in inputs] == [
        ("a_11111111", "1.2.3.4.5.11111111"),
        ("a_22222222", "1.2.3.4.5.22222222"),
    ]
    converted = [sitk.ReadImage(str(to_nifti(i, tmp_path / "work"))) for i in inputs]
    assert_same_geometry(converted[0], make_volume(seed=1))
    assert_same_geometry(converted[1], make_volume(seed=2))


# --- NRRD / MetaImage / NIfTI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr", ".mha", ".mhd"])
def test_sitk_formats_round_trip(tmp_path: Path, suffix: str) -> None:
    volume = make_volume()
    source = tmp_path / f"case7{suffix}"
    sitk.WriteImage(volume, str(source))

    [inp] = discover_inputs(source)

    assert inp == ImageInput("case7", source, "sitk")
    assert_same_geometry(sitk.ReadImage(str(to_nifti(inp, tmp_path / "work"))), volume)


def test_nifti_is_returned_as_is(tmp_path: Path) -> None:
    source = write_nifti(tmp_path / "case1.nii.gz", np.arange(16 * 16 * 5, dtype=np.float32).reshape(16, 16, 5))

    [inp] = discover_inputs(source)

    assert inp == ImageInput("case1", source, "nifti")
    assert to_nifti(inp, tmp_path / "work") == source
    assert not (tmp_path / "work").exists()


def test_folder_names_are_unique_sorted_and_hidden_entries_skipped(tmp_path: Path) -> None:
    voxels = np.arange(16 * 16 * 5, dtype=np.float32).reshape(16, 16, 5)
    write_nifti(tmp_path / "case1.nii", voxels)
    (tmp_path / "a").mkdir()
    write_nifti(tmp_path / "a" / "case1.nii.gz", voxels)
    write_nifti(tmp_path / "a" / "CASE1.nii.gz", voxels)
    write_nifti(tmp_path / "a" / ".case2.nii.gz", voxels)
    (tmp_path / ".cache").mkdir()
    write_nifti(tmp_path / ".cache" / "case3.nii.gz", voxels)
    sitk.WriteImage(make_volume(), str(tmp_path / "case1.mha"))
    (tmp_path / "notes.txt").write_text("not an image")

    inputs = discover_inputs(tmp_path)

    assert [(i.source.relative_to(tmp_path).as_posix(), i.name) for i in inputs] == [
        ("a/CASE1.nii.gz", "CASE1"),
        ("a/case1.nii.gz", "case1_2"),
        ("case1.mha", "case1_3"),
        ("case1.nii", "case1_4"),
    ]


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [("a..b c.nii.gz", "a.b_c"), ("..x.nrrd", "x"), ("ünïcode-1+2.mha", "ünïcode-1+2"), (".nii.gz", None)],
)
def test_names_are_safe_file_names(tmp_path: Path, file_name: str, expected: str | None) -> None:
    try:
        os.fsencode(file_name)
    except UnicodeEncodeError:
        pytest.skip(f"this interpreter's file system encoding ({sys.getfilesystemencoding()}) cannot name {file_name!r}")
    path = tmp_path / "in" / file_name
    path.parent.mkdir()
    path.write_bytes(b"")  # discovery looks at names only

    [inp] = discover_inputs(path)

    assert inp.name == (expected or "image")
    assert "/" not in inp.name and "\\" not in inp.name and ".." not in inp.name


# --- errors ------------------------------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.nii.gz: no such file or folder"):
        discover_inputs(tmp_path / "nope.nii.gz")


def test_unsupported_file(tmp_path: Path) -> None:
    path = tmp_path / "report.txt"
    path.write_text("hello")
    with pytest.raises(InputError, match=r"report\.txt: not a supported image \(expected \.nii"):
        discover_inputs(path)


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no supported images in folder"):
        discover_inputs(tmp_path)


def test_truncated_nifti(tmp_path: Path) -> None:
    # Random voxels compress badly, so half the file still holds the header and loses data.
    voxels = np.random.default_rng(0).normal(size=(16, 16, 5)).astype(np.float32)
    path = write_nifti(tmp_path / "cut.nii.gz", voxels)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="cut.nii.gz: not a readable NIfTI file"):
        validate_nifti(path)


def test_garbage_nifti(tmp_path: Path) -> None:
    path = tmp_path / "junk.nii"
    path.write_bytes(b"this is not a NIfTI header" * 40)
    with pytest.raises(InputError, match="junk.nii: not a readable NIfTI file"):
        to_nifti(ImageInput("junk", path, "nifti"), tmp_path)


def test_nan_voxels(tmp_path: Path) -> None:
    voxels = np.ones((16, 16, 5), dtype=np.float32)
    voxels[3, 4, 2] = np.nan
    path = write_nifti(tmp_path / "nan.nii.gz", voxels)
    with pytest.raises(InputError, match="nan.nii.gz: contains NaN or Inf voxels"):
        validate_nifti(path)


def test_constant_image(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "flat.nii.gz", np.full((16, 16, 5), 7, dtype=np.int16))
    with pytest.raises(InputError, match=r"flat.nii.gz: image is empty \(all voxels are 7\)"):
        validate_nifti(path)


@pytest.mark.parametrize(
    ("shape", "problem"),
    [
        ((16, 16, 5, 3), r"4D image \(shape \(16, 16, 5, 3\)\); give one 3D volume"),
        ((16, 16), r"2D image .*expected a 3D volume \(slices along z\)"),
        ((16, 16, 1), r"2D image .*expected a 3D volume \(slices along z\)"),
    ],
)
def test_wrong_dimensions(tmp_path: Path, shape: tuple[int, ...], problem: str) -> None:
    voxels = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    path = write_nifti(tmp_path / "bad_dims.nii.gz", voxels)
    with pytest.raises(InputError, match=rf"bad_dims.nii.gz: {problem}"):
        validate_nifti(path)


def test_trailing_singleton_dimension_is_accepted(tmp_path: Path) -> None:
    voxels = np.arange(16 * 16 * 5, dtype=np.float32).reshape(16, 16, 5, 1)
    validate_nifti(write_nifti(tmp_path / "ok.nii.gz", voxels))


def test_unreadable_nrrd_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.nrrd"
    path.write_text("NRRD0004\ngarbage\n")
    [inp] = discover_inputs(path)
    with pytest.raises(InputError, match="broken.nrrd: cannot read image: ") as caught:
        to_nifti(inp, tmp_path / "work")
    assert "\n" not in str(caught.value)


def test_converted_image_is_validated_against_its_source(tmp_path: Path) -> None:
    voxels = np.ones((5, 16, 16), dtype=np.float32)
    voxels[0, 0, 0] = np.inf
    path = tmp_path / "inf.mha"
    sitk.WriteImage(sitk.GetImageFromArray(voxels), str(path))
    with pytest.raises(InputError, match="inf.mha: contains NaN or Inf voxels"):
        to_nifti(ImageInput("inf", path, "sitk"), tmp_path / "work")
