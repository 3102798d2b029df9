"""Tests for :mod:`pipelines.transforms.slice_context`: neighbouring slices as channels (2.5D input)."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SliceInferer
from monai.transforms import Compose

from pipelines.transforms import (
    RandReverseSliceContextd,
    SelectSliced,
    SliceContextd,
    slice_context,
)

AFFINE = torch.diag(torch.tensor([1.5, 1.5, 10.0, 1.0], dtype=torch.float64))


def stack(depth: int = 4) -> torch.Tensor:
    """A (1, 2, 3, depth) volume whose slice z is filled with z + 1, so every channel names its source slice."""
    return (torch.arange(depth, dtype=torch.float32) + 1).expand(1, 2, 3, depth).clone()


def test_channels_are_the_shifted_stack_with_zeros_beyond_its_ends() -> None:
    out = slice_context(stack(4), 1)
    assert tuple(out.shape) == (3, 2, 3, 4)
    # channel c at slice z holds slice z + c - 1 (numbered from 1 here), 0 outside the stack
    assert out[:, 0, 0, :].tolist() == [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 0]]
    out2 = slice_context(stack(3), 2)
    assert out2[:, 0, 0, :].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 0], [3, 0, 0]]


def test_context_zero_is_the_identity_and_bad_input_is_refused() -> None:
    volume = stack(4)
    assert slice_context(volume, 0) is volume
    with pytest.raises(ValueError, match="one-channel"):
        slice_context(torch.zeros(2, 2, 2, 2), 1)
    with pytest.raises(ValueError, match=">= 0"):
        SliceContextd(keys="image", context=-1)


def test_dictionary_form_keeps_the_metadata_for_invertd() -> None:
    image = MetaTensor(stack(4), affine=AFFINE.clone(), meta={"filename_or_obj": "frame.nii.gz"})
    out = SliceContextd(keys="image", context=1)({"image": image, "label": image.clone()})
    assert isinstance(out["image"], MetaTensor) and tuple(out["image"].shape) == (3, 2, 3, 4)
    torch.testing.assert_close(out["image"].affine, AFFINE)
    assert out["image"].meta["filename_or_obj"] == "frame.nii.gz"
    assert tuple(out["label"].shape) == (1, 2, 3, 4)  # only the keys asked for


def test_training_slice_and_stack_reversal() -> None:
    """SelectSliced after SliceContextd gives (3, H, W) with the neighbours; reversal swaps them (the stack read in
    the opposite direction) and never touches the centre channel."""
    item = {"image": MetaTensor(stack(4), affine=AFFINE.clone()), "slice": 0}
    sliced = Compose([SliceContextd(keys="image", context=1), SelectSliced(keys="image")])(item)["image"]
    assert sliced[:, 0, 0].tolist() == [0, 1, 2]
    always = RandReverseSliceContextd(keys="image", prob=1.0)
    assert always({"image": sliced})["image"][:, 0, 0].tolist() == [2, 1, 0]
    never = RandReverseSliceContextd(keys="image", prob=0.0)
    assert never({"image": sliced})["image"][:, 0, 0].tolist() == [0, 1, 2]


def test_slice_inferer_gives_a_2d_network_each_slice_with_its_neighbours() -> None:
    """Inference needs nothing else: MONAI's SliceInferer hands the 2D network (B, 3, H, W) slices of the stacked
    volume, whose channels are the slice and its neighbours."""
    seen: list[list[float]] = []

    def network(x: torch.Tensor) -> torch.Tensor:
        seen.extend(x[:, :, 0, 0].tolist())
        return x[:, 1:2]

    volume = slice_context(stack(3), 1)[None]
    out = SliceInferer(roi_size=(2, 3), spatial_dim=2, sw_batch_size=1)(volume, network)
    assert tuple(out.shape) == (1, 1, 2, 3, 3)
    assert seen == [[0, 1, 2], [1, 2, 3], [2, 3, 0]]
