"""TanhOutput: a MONAI UNet bounded to (-1, 1), usable as an image-to-image generator."""

from __future__ import annotations

import torch
from monai.networks.nets import UNet

from pipelines.networks import ScaledNetwork, TanhOutput, describe


def _unet() -> UNet:
    return UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(4, 8), strides=(2,), num_res_units=0)


def test_output_is_the_tanh_of_the_wrapped_network() -> None:
    torch.manual_seed(0)
    unet = _unet()
    x = 10 * torch.randn(2, 1, 16, 16)
    y = TanhOutput(unet)(x)
    assert torch.equal(y, torch.tanh(unet(x)))
    assert y.abs().max() < 1


def test_gradients_flow_and_the_name_is_recorded() -> None:
    net = ScaledNetwork(TanhOutput(_unet()), scale=0.5)
    net(torch.rand(1, 1, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert describe(net) == "ScaledNetwork(/2, TanhOutput(UNet))"
