"""Tests for :class:`pipelines.transforms.save_nifti.SaveNiftiLikeInputd`: exact input geometry, safe writes."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from pipelines.errors import OutputExistsError, PipelineError
from pipelines.transforms.save_nifti import SaveNiftiLikeInputd

SHAPE = (16, 16, 5)
GEOMETRY_FIELDS = ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y",
                   "qoffset_z", "srow_x", "srow_y", "srow_z", "pixdim", "dim", "xyzt_units")  # fmt: skip


def oblique_affine() -> np.ndarray:
    """A voxel-to-RAS affine: rotated 25 degrees about z and 10 about x, spacing (3, 3, 8) mm, shifted origin."""
    a, b = np.radians(25), np.radians(10)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([3.0, 3.0, 8.0])
    affine[:3, 3] = (-41.5, 17.25, 63.0)
    return affine


def write_reference(path: Path, qform_code: int, sform_code: int) -> Path:
    """A scaled float32 reference image with the oblique affine stored under the given qform/sform codes."""
    voxels = np.random.default_rng(0).normal(100, 20, SHAPE).astype(np.float32)
    image = nib.Nifti1Image(voxels, None)
    image.set_qform(oblique_affine(), code=qform_code)
    image.set_sform(oblique_affine(), code=sform_code)
    nib.save(image, path)
    # nibabel recomputes scaling when saving an array, so patch scl_slope/scl_inter (header bytes 112-119) directly:
    # the saver must not copy the image's scaling onto the labels.
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[112:120] = np.array([0.5, 10.0], dtype="<f4").tobytes()
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


@pytest.fixture(params=[(1, 1), (1, 0), (0, 2)], ids=["q1s1", "q1s0", "q0s2"])
def reference(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return write_reference(tmp_path / "case01.nii.gz", *request.param)


def load_item(reference: Path) -> dict[str, Any]:
    """The item a MONAI inference pipeline holds after loading: a channel-first MetaTensor under "image"."""
    return Compose([LoadImaged(keys="image", image_only=True), EnsureChannelFirstd(keys="image")])(
        {"image": str(reference)}
    )


def label_prediction(item: dict[str, Any]) -> torch.Tensor:
    """A fake argmax output derived from the image, so voxel order mistakes show up as wrong labels."""
    image = item["image"].as_tensor()
    return (image > 90).float() + (image > 120).float()


def test_label_map_has_the_reference_geometry(reference: Path, tmp_path: Path) -> None:
    item = load_item(reference)
    item["name"] = "patient7"
    item["pred"] = label_prediction(item)

    out = SaveNiftiLikeInputd(keys="pred", output_dir=str(tmp_path / "out"))(item)

    path = tmp_path / "out" / "patient7_seg.nii.gz"
    assert out["pred_path"] == str(path)
    ref, written = nib.load(reference), nib.load(path)
    assert written.shape == ref.shape
    np.testing.assert_array_equal(written.affine, ref.affine)
    assert written.header.get_zooms() == ref.header.get_zooms()
    for field in GEOMETRY_FIELDS:
        np.testing.assert_array_equal(written.header[field], ref.header[field], err_msg=field)
    assert written.get_data_dtype() == np.uint8
    assert (ref.dataobj.slope, ref.dataobj.inter) == (0.5, 10.0)
    assert (written.dataobj.slope, written.dataobj.inter) == (1.0, 0.0)
    expected = (ref.get_fdata() > 90).astype(np.uint8) + (ref.get_fdata() > 120)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), expected)

    ref_sitk, written_sitk = sitk.ReadImage(str(reference)), sitk.ReadImage(str(path))
    assert written_sitk.GetOrigin() == ref_sitk.GetOrigin()
    assert written_sitk.GetSpacing() == ref_sitk.GetSpacing()
    assert written_sitk.GetDirection() == ref_sitk.GetDirection()


def test_probability_channel_is_written_as_float32(tmp_path: Path) -> None:
    reference = write_reference(tmp_path / "case02.nii.gz", 1, 1)
    item = load_item(reference)
    item["pred"] = torch.softmax(torch.randn(3, *SHAPE), dim=0)

    SaveNiftiLikeInputd(keys="pred", output_dir=str(tmp_path), output_postfix="myo_prob", dtype="float32",
                        channel=2)(item)  # fmt: skip

    written = nib.load(tmp_path / "case02_myo_prob.nii.gz")  # name falls back to the reference's stem
    assert written.get_data_dtype() == np.float32
    assert (written.dataobj.slope, written.dataobj.inter) == (1.0, 0.0)
    np.testing.assert_array_equal(written.get_fdata(dtype=np.float32), item["pred"][2].numpy())


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path) -> None:
    item = load_item(write_reference(tmp_path / "case03.nii.gz", 1, 1))
    out_dir = tmp_path / "out"
    item["pred"] = torch.zeros(1, *SHAPE)
    item["pred"][0, 2:5, 3:9, 1:4] = 1
    SaveNiftiLikeInputd(keys="pred", output_dir=str(out_dir))(item)
    path = out_dir / "case03_seg.nii.gz"
    original = path.read_bytes()

    item["pred"] = torch.full((1, *SHAPE), 2.0)
    with pytest.raises(OutputExistsError, match="case03_seg.nii.gz"):
        SaveNiftiLikeInputd(keys="pred", output_dir=str(out_dir))(item)
    assert path.read_bytes() == original

    SaveNiftiLikeInputd(keys="pred", output_dir=str(out_dir), overwrite=True)(item)
    assert (np.asanyarray(nib.load(path).dataobj) == 2).all()
    assert [p.name for p in out_dir.iterdir()] == ["case03_seg.nii.gz"]  # no .tmp files left


@pytest.mark.parametrize("name", ["../escape", "a/b", "a\\b", "..", ""])
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    item = load_item(write_reference(tmp_path / "case04.nii.gz", 1, 1))
    item["name"] = name
    item["pred"] = torch.zeros(1, *SHAPE)
    out_dir = tmp_path / "out"

    with pytest.raises(PipelineError, match="not a plain file name"):
        SaveNiftiLikeInputd(keys="pred", output_dir=str(out_dir))(item)
    assert not out_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case04.nii.gz"]


@pytest.mark.parametrize(
    ("pred_shape", "kwargs", "message"),
    [
        ((1, 16, 16, 4), {}, r"prediction shape \(16, 16, 4\) differs .* shape \(16, 16, 5\)"),
        ((1, 16, 5, 16), {}, r"prediction shape \(16, 5, 16\) differs .* shape \(16, 16, 5\)"),
        ((3, *SHAPE), {}, "prediction has 3 channels"),
    ],
)
def test_bad_predictions_are_refused(tmp_path: Path, pred_shape: tuple[int, ...], kwargs: dict, message: str) -> None:
    item = load_item(write_reference(tmp_path / "case05.nii.gz", 1, 1))
    item["pred"] = torch.zeros(pred_shape)
    with pytest.raises(ValueError, match=message):
        SaveNiftiLikeInputd(keys="pred", output_dir=str(tmp_path / "out"), **kwargs)(item)
    assert not (tmp_path / "out").exists()


def test_builds_from_a_bundle_config(tmp_path: Path) -> None:
    config = {
        "output_dir": str(tmp_path),
        "saver": {
            "_target_": "pipelines.transforms.save_nifti.SaveNiftiLikeInputd",
            "keys": "pred",
            "output_dir": "@output_dir",
            "output_postfix": "label",
        },
    }
    saver = ConfigParser(config).get_parsed_content("saver")
    assert isinstance(saver, SaveNiftiLikeInputd)
    assert saver.output_path("c1") == tmp_path / "c1_label.nii.gz"
