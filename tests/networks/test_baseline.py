from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser
from torch import nn

from pipelines.networks import StridedEncoderDecoder


def notebook_network() -> nn.Sequential:
    """The network of VPHSummerSchool2019/7_ImageSegmentation_Solutions.ipynb, written out in plain PyTorch."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, 2, 1), nn.InstanceNorm2d(4), nn.PReLU(),
        nn.Conv2d(4, 8, 3, 2, 1), nn.InstanceNorm2d(8), nn.PReLU(), nn.Dropout2d(),
        nn.Conv2d(8, 16, 3, 2, 1), nn.InstanceNorm2d(16), nn.PReLU(),
        nn.Conv2d(16, 16, 3, 1, 1), nn.Dropout2d(),
        nn.ConvTranspose2d(16, 8, 3, 2, 1, 1), nn.InstanceNorm2d(8), nn.PReLU(),
        nn.ConvTranspose2d(8, 4, 3, 2, 1, 1), nn.InstanceNorm2d(4), nn.PReLU(), nn.Dropout2d(),
        nn.ConvTranspose2d(4, 2, 3, 2, 1, 1), nn.InstanceNorm2d(2), nn.PReLU(),
        nn.Conv2d(2, 1, 3, 1, 1),
    )  # fmt: skip


def leaf_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if not list(m.children())]


def test_defaults_reproduce_the_notebook_network_layer_for_layer() -> None:
    ours, reference = StridedEncoderDecoder(), notebook_network()
    # same layers in the same order, dropout included (ADN registers norm, act, dropout in its "NAD" order)
    assert [repr(m) for m in leaf_modules(ours)] == [repr(m) for m in leaf_modules(reference)]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters()) == 5375

    # with the reference's weights, the same logits (eval mode: dropout off, instance norm has no running stats)
    torch.manual_seed(0)
    with torch.no_grad():
        for mine, theirs in zip(ours.parameters(), reference.parameters(), strict=True):
            mine.copy_(theirs)
        x = torch.rand(3, 1, 64, 64)
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x))


@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (1, 1, 65, 63), (1, 1, 48, 80), (1, 1, 7, 9)])
def test_2d_output_has_the_input_grid(shape: tuple[int, ...]) -> None:
    net = StridedEncoderDecoder(spatial_dims=2, in_channels=1, out_channels=2).eval()
    with torch.no_grad():
        assert net(torch.randn(shape)).shape == (shape[0], 2, *shape[2:])


def test_3d_output_has_the_input_grid() -> None:
    net = StridedEncoderDecoder(spatial_dims=3, in_channels=2, out_channels=3).eval()
    assert sum(isinstance(m, nn.Dropout3d) for m in net.modules()) == 3
    with torch.no_grad():
        assert net(torch.randn(1, 2, 16, 12, 9)).shape == (1, 3, 16, 12, 9)


def test_padding_is_a_no_op_on_multiples_of_two_to_the_depth() -> None:
    torch.manual_seed(0)
    net = StridedEncoderDecoder(channels=(4, 8)).eval()
    x = torch.randn(1, 1, 12, 20)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net.model(x))


def test_gradients_reach_every_parameter(gradients_reach_every_parameter) -> None:
    torch.manual_seed(0)
    gradients_reach_every_parameter(StridedEncoderDecoder(out_channels=2), torch.randn(4, 1, 32, 30))


def test_no_dropout_layers_when_dropout_is_zero() -> None:
    net = StridedEncoderDecoder(dropout=0.0)
    assert not any(isinstance(m, (nn.Dropout, nn.Dropout2d)) for m in net.modules())


def test_builds_from_a_bundle_config() -> None:
    config = {
        "net": {
            "_target_": "pipelines.networks.StridedEncoderDecoder",
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 2,
            "channels": [4, 8, 16],
            "dropout": 0.2,
        }
    }
    net = ConfigParser(config).get_parsed_content("net")
    assert isinstance(net, StridedEncoderDecoder)
    assert sum(p.numel() for p in net.parameters()) == 5375 + 19  # second output channel: 2*9 weights + 1 bias
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 1, 64, 64)).shape == (1, 2, 64, 64)


def test_rejects_empty_channels() -> None:
    with pytest.raises(ValueError):
        StridedEncoderDecoder(channels=())
