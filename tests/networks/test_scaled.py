from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet

from pipelines.networks import ScaledNetwork


@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (1, 1, 32, 48), (1, 1, 16, 16, 8)])
def test_output_has_the_input_grid(shape: tuple[int, ...]) -> None:
    dims = len(shape) - 2
    net = UNet(spatial_dims=dims, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,))
    out = ScaledNetwork(net, scale=2)(torch.randn(shape))
    assert out.shape == (shape[0], 2, *shape[2:])


def test_scale_one_is_the_network_itself_and_pooling_averages_logits() -> None:
    torch.manual_seed(0)
    identity_net = torch.nn.Identity()
    x = torch.randn(1, 1, 8, 8)
    assert torch.equal(ScaledNetwork(identity_net, scale=1)(x), x)
    # bilinear x2 then 2x2 average pooling of a constant image gives the constant back
    constant = torch.full((1, 1, 8, 8), 3.0)
    torch.testing.assert_close(ScaledNetwork(identity_net, scale=2)(constant), constant)
    with pytest.raises(ValueError):
        ScaledNetwork(identity_net, scale=0)


def test_describe_names_the_wrapped_network() -> None:
    from monai.networks.nets import BasicUNet

    from pipelines.networks import describe

    inner = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(4, 4, 4, 4, 4, 4))
    assert describe(inner) == "BasicUNet"
    assert describe(ScaledNetwork(inner, scale=2)) == "ScaledNetwork(x2, BasicUNet)"


@pytest.mark.parametrize("scale", [0.5, 0.25])
@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 1, 16, 24)])
def test_fractional_scale_runs_the_network_on_the_pooled_input(scale: float, shape: tuple[int, ...]) -> None:
    """``f_s(x) = upsample_k(f(avgpool_k(x)))`` for ``scale = 1/k``, on the input's grid."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 2, kernel_size=3, padding=1)
    x = torch.randn(shape)
    k = round(1 / scale)
    out = ScaledNetwork(net, scale=scale)(x)
    assert out.shape == (shape[0], 2, *shape[2:])
    expected = F.interpolate(net(F.avg_pool2d(x, k)), size=shape[2:], mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("scale", [0.3, 1.5, 0, -2, 0.4])
def test_scales_other_than_integers_and_unit_fractions_are_rejected(scale: float) -> None:
    with pytest.raises(ValueError, match="1/k"):
        ScaledNetwork(torch.nn.Identity(), scale=scale)


def test_describe_names_a_fractional_scale_by_its_divisor() -> None:
    from pipelines.networks import describe

    inner = torch.nn.Conv2d(1, 1, kernel_size=1)
    assert describe(ScaledNetwork(inner, scale=0.5)) == "ScaledNetwork(/2, Conv2d)"
    assert describe(ScaledNetwork(inner, scale=0.25)) == "ScaledNetwork(/4, Conv2d)"
