from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser

from pipelines.networks import SegNet


def expected_parameter_count(
    spatial_dims: int, in_channels: int, out_channels: int, channels: list[int], convs: list[int]
) -> int:
    """Conv k^d * c_in * c_out weights + c_out biases, batch norm 2c (scale and shift); nothing else has weights."""

    def conv_bn(cin: int, cout: int) -> int:
        return 3**spatial_dims * cin * cout + cout + 2 * cout

    total = 0
    for cin, c, n in zip([in_channels, *channels[:-1]], channels, convs):
        total += conv_bn(cin, c) + (n - 1) * conv_bn(c, c)  # encoder level
    for cout, c, n in zip([channels[0], *channels[:-1]], channels, convs):
        total += (n - 1) * conv_bn(c, c) + conv_bn(c, cout)  # decoder level
    return total + channels[0] * out_channels + out_channels  # 1x1 head


@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (1, 1, 65, 63), (1, 1, 48, 80)])
def test_default_2d_output_has_the_input_grid(shape: tuple[int, ...]) -> None:
    net = SegNet(spatial_dims=2, in_channels=1, out_channels=2).eval()
    with torch.no_grad():
        assert net(torch.randn(shape)).shape == (shape[0], 2, *shape[2:])


def test_3d_output_has_the_input_grid() -> None:
    net = SegNet(spatial_dims=3, in_channels=2, out_channels=3, channels=(4, 8), convs_per_block=(1, 2)).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 2, 9, 10, 11)).shape == (1, 3, 9, 10, 11)


def test_unpool_puts_each_maximum_back_where_it_came_from_on_a_hand_written_grid() -> None:
    net = SegNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(1,))
    x = torch.tensor(
        [
            [1.0, 5.0, 0.0, 2.0],
            [3.0, 4.0, 8.0, 1.0],
            [0.0, 0.0, 1.0, 1.0],
            [6.0, 2.0, 3.0, 7.0],
        ]
    )[None, None]
    pooled, indices = net.pool(x)
    assert pooled[0, 0].tolist() == [[5.0, 8.0], [6.0, 7.0]]
    assert indices[0, 0].tolist() == [[1, 6], [12, 15]]  # flat positions on the 4x4 grid
    expected = [
        [0.0, 5.0, 0.0, 0.0],
        [0.0, 0.0, 8.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [6.0, 0.0, 0.0, 7.0],
    ]
    assert net.unpool(pooled, indices, output_size=x.shape[2:])[0, 0].tolist() == expected

    # the same maxima with an extra row and column of 9s, which no 2x2 window covers: on a 5x5 grid the indices
    # become 1, 7, 15, 18, and only output_size puts them back on that grid
    x5 = torch.full((1, 1, 5, 5), 9.0)
    x5[..., :4, :4] = x
    pooled5, indices5 = net.pool(x5)
    assert indices5[0, 0].tolist() == [[1, 7], [15, 18]]
    unpooled5 = net.unpool(pooled5, indices5, output_size=x5.shape[2:])[0, 0]
    assert unpooled5.tolist() == [row + [0.0] for row in expected] + [[0.0] * 5]


def test_decoder_unpools_with_the_encoder_indices() -> None:
    """Capture the deepest encoder output (before pooling) and the first decoder input (after unpooling).

    Max unpooling with the encoder's indices leaves, in every 2x2 window, the window's maximum at one position
    holding that same value in the encoder map, and zeros at the three others; rows and columns no window covers
    (odd sizes) stay zero. Nearest or bilinear upsampling, or indices placed on the wrong grid, break this.
    """
    torch.manual_seed(0)
    net = SegNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(3, 4), convs_per_block=1).eval()
    captured: dict[str, torch.Tensor] = {}
    net.encoder[-1].register_forward_hook(lambda m, inputs, output: captured.update(encoded=output))
    net.decoder[0].register_forward_pre_hook(lambda m, inputs: captured.update(unpooled=inputs[0]))
    with torch.no_grad():
        net(torch.randn(2, 1, 13, 11))

    encoded, unpooled = captured["encoded"], captured["unpooled"]
    assert encoded.shape == unpooled.shape == (2, 4, 6, 5)  # 13x11 -> 6x5 -> pooled 3x2 -> unpooled 6x5
    assert unpooled[..., :, 4:].eq(0).all()  # the odd last column is in no window

    def windows(t: torch.Tensor) -> torch.Tensor:  # (..., 3, 2, 2, 2): [..., i, j, r, c] = t[..., 2i + r, 2j + c]
        return t[..., :6, :4].unfold(-2, 2, 2).unfold(-2, 2, 2)

    enc_w, unp_w = windows(encoded), windows(unpooled)
    nonzero = unp_w != 0
    assert nonzero.any()
    assert nonzero.sum(dim=(-1, -2)).le(1).all()
    assert torch.equal(unp_w[nonzero], enc_w[nonzero])
    assert torch.equal(unp_w.sum(dim=(-1, -2)), enc_w.amax(dim=(-1, -2)))


def test_gradients_reach_every_parameter(gradients_reach_every_parameter) -> None:
    torch.manual_seed(0)
    net = SegNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(4, 8), dropout=0.1)
    gradients_reach_every_parameter(net, torch.randn(2, 1, 17, 16))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spatial_dims": 2, "in_channels": 1, "out_channels": 2},
        {"spatial_dims": 3, "in_channels": 2, "out_channels": 3, "channels": (4, 8, 16), "convs_per_block": (1, 2, 3)},
    ],
)
def test_parameter_count_matches_the_architecture(kwargs: dict) -> None:
    net = SegNet(**kwargs)
    channels = list(kwargs.get("channels", (32, 64, 128, 256)))
    convs = list(kwargs.get("convs_per_block", [2] * len(channels)))
    expected = expected_parameter_count(
        kwargs["spatial_dims"], kwargs["in_channels"], kwargs["out_channels"], channels, convs
    )
    assert sum(p.numel() for p in net.parameters()) == expected


def test_default_parameter_count() -> None:
    # 2D, 1 -> 2 channels, widths 32-64-128-256, two convs per level: 1.17 M encoder, 1.18 M decoder, 66 head
    assert sum(p.numel() for p in SegNet(spatial_dims=2, in_channels=1, out_channels=2).parameters()) == 2_355_522


def test_builds_from_a_bundle_config() -> None:
    config = {
        "net": {
            "_target_": "pipelines.networks.SegNet",
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 2,
            "channels": [8, 16],
            "convs_per_block": 1,
            "norm": "instance",
            "act": ["leakyrelu", {"negative_slope": 0.1}],
        }
    }
    net = ConfigParser(config).get_parsed_content("net")
    assert isinstance(net, SegNet)
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 1, 20, 21)).shape == (1, 2, 20, 21)


@pytest.mark.parametrize(
    "kwargs",
    [{"spatial_dims": 1}, {"channels": ()}, {"channels": (4, 8), "convs_per_block": (2,)}, {"convs_per_block": 0}],
)
def test_rejects_invalid_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SegNet(**kwargs)
