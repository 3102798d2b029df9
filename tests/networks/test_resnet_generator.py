from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser

from pipelines.networks import ResnetGenerator


@pytest.mark.parametrize(
    "shape, features, n_blocks",
    [((2, 1, 64, 64), 8, 2), ((1, 1, 256, 256), 4, 1), ((1, 1, 32, 48), 8, 0)],
)
def test_output_has_the_input_grid_and_lies_in_minus_one_one(shape, features, n_blocks):
    net = ResnetGenerator(spatial_dims=2, in_channels=1, out_channels=1, features=features, n_blocks=n_blocks)
    with torch.no_grad():
        out = net(10 * torch.randn(shape))  # large inputs push tanh towards its bounds
    assert out.shape == shape
    assert out.min() >= -1 and out.max() <= 1


def test_channels_3d_and_dropout():
    net = ResnetGenerator(spatial_dims=3, in_channels=2, out_channels=3, features=4, n_blocks=1, dropout=0.5).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 2, 8, 12, 16)).shape == (1, 3, 8, 12, 16)
    assert any(isinstance(m, torch.nn.Dropout) for m in net.modules())


@pytest.mark.parametrize("n_blocks", [6, 9])
def test_paper_layout_block_count_and_width(n_blocks):
    net = ResnetGenerator(n_blocks=n_blocks)
    blocks = [m for m in net.modules() if type(m).__name__ == "ResnetBlock"]
    assert len(blocks) == n_blocks
    assert blocks[0].residual[1].in_channels == 4 * 64  # residual blocks work at 4f channels
    assert not any(p.numel() == 0 for p in net.parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_gradients_reach_every_parameter():
    net = ResnetGenerator(features=4, n_blocks=2)
    net(torch.randn(2, 1, 32, 32)).square().mean().backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_sizes_not_divisible_by_four_are_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        ResnetGenerator(features=4, n_blocks=1)(torch.randn(1, 1, 30, 32))


def test_buildable_from_a_bundle_config():
    config = {"net": {"_target_": "pipelines.networks.ResnetGenerator", "features": 4, "n_blocks": 6}}
    net = ConfigParser(config).get_parsed_content("net")
    assert isinstance(net, ResnetGenerator)
