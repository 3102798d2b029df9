"""MaskConditionedGenerator: G(m) = (sigmoid(f(m)), m)."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet

from pipelines.networks import MaskConditionedGenerator


def _generator() -> MaskConditionedGenerator:
    torch.manual_seed(0)
    return MaskConditionedGenerator(UNet(2, 1, 1, channels=(4, 8, 8), strides=(2, 2), num_res_units=1))


@pytest.mark.parametrize("size", [32, 64])
def test_pair_shape_range_and_mask_passed_through(size: int) -> None:
    mask = (torch.rand(3, 1, size, size) > 0.7).float()
    pair = _generator()(mask)
    assert pair.shape == (3, 2, size, size)
    assert 0 <= pair[:, 0].min() and pair[:, 0].max() <= 1
    assert torch.equal(pair[:, 1:], mask)


def test_gradients_reach_the_network() -> None:
    generator = _generator()
    generator(torch.ones(2, 1, 32, 32))[:, 0].mean().backward()
    assert all(p.grad is not None for p in generator.network.parameters())


def test_rejects_anything_but_one_mask_channel() -> None:
    with pytest.raises(ValueError, match=r"\[N, 1, H, W\]"):
        _generator()(torch.zeros(1, 2, 32, 32))
