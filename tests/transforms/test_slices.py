"""Tests for :mod:`pipelines.transforms.slices`: picking one 2D slice of a channel-first 3D volume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from pipelines.data.datalist import slice_items, split_items
from pipelines.transforms import SelectSliced


def volume(shape: tuple[int, ...] = (1, 5, 6, 4)) -> torch.Tensor:
    return torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(shape)


AFFINE = torch.tensor(
    [[3.0, 0.0, 0.0, -10.0], [0.0, 2.5, 0.0, 20.0], [0.0, 0.0, 8.0, 30.0], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64
)


@pytest.mark.parametrize("index", [0, 2, 3])
def test_metatensor_slice_and_affine(index):
    image = MetaTensor(volume(), affine=AFFINE.clone(), meta={"filename_or_obj": "case.nii.gz"})
    label = MetaTensor((volume() > 50).float(), affine=AFFINE.clone())
    out = SelectSliced(keys=["image", "label"])({"image": image, "label": label, "slice": index, "case_id": "c"})
    assert isinstance(out["image"], MetaTensor)
    assert tuple(out["image"].shape) == (1, 5, 6)
    torch.testing.assert_close(out["image"].as_tensor(), volume()[..., index])
    torch.testing.assert_close(out["label"].as_tensor(), (volume() > 50).float()[..., index])
    expected = torch.tensor([[3.0, 0.0, -10.0], [0.0, 2.5, 20.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    for key in ("image", "label"):
        torch.testing.assert_close(out[key].affine, expected)
        assert out[key].pixdim.tolist() == [3.0, 2.5]
    assert out["image"].meta["filename_or_obj"] == "case.nii.gz"
    assert out["case_id"] == "c" and out["slice"] == index


def test_numpy_slice():
    array = volume((2, 5, 6, 4)).numpy()
    out = SelectSliced(keys="image", index_key="k")({"image": array, "k": np.int64(1)})
    assert isinstance(out["image"], np.ndarray)
    assert out["image"].shape == (2, 5, 6) and out["image"].flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out["image"], array[..., 1])


def test_input_is_not_modified():
    item = {"image": volume(), "slice": 1}
    SelectSliced(keys="image")(item)
    assert item["image"].shape == (1, 5, 6, 4)


@pytest.mark.parametrize("shape", [(5, 6, 4), (1, 5, 6), (1, 1, 5, 6, 4)])
def test_rejects_other_dimensions(shape):
    with pytest.raises(ValueError, match=r"\(C, H, W, D\)"):
        SelectSliced(keys="image")({"image": volume(shape), "slice": 0})


def test_missing_keys():
    with pytest.raises(KeyError):
        SelectSliced(keys=["image", "label"])({"image": volume(), "slice": 0})
    out = SelectSliced(keys=["image", "label"], allow_missing_keys=True)({"image": volume(), "slice": 0})
    assert set(out) == {"image", "slice"}


def test_real_slices_match_the_npz(sunnybrook_dir, scd_npz):
    items = slice_items(split_items(sunnybrook_dir, "seed", "test", max_cases=1))
    load = Compose(
        [
            LoadImaged(keys=["image", "label"], image_only=True),
            EnsureChannelFirstd(keys=["image", "label"]),
            SelectSliced(keys=["image", "label"]),
        ]
    )
    with np.load(scd_npz) as npz:
        start = int(npz["caseIndices"][-6][0])
        for item in items[:3]:
            out = load(item)
            np.testing.assert_array_equal(out["image"][0].numpy(), npz["images"][start + item["slice"]])
            np.testing.assert_array_equal(out["label"][0].numpy(), npz["segs"][start + item["slice"]])
            assert out["image"].pixdim.tolist() == [3.0, 3.0]
