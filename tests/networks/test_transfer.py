"""Loading a denoising UNet's encoder into a segmentation UNet of the same architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.networks.nets import UNet

from pipelines.errors import InputError
from pipelines.networks import ScaledNetwork
from pipelines.networks.transfer import encoder_keys, encoder_prefixes, load_encoder


def _unet(out_channels: int, channels: tuple[int, ...] = (4, 8, 16, 32)) -> UNet:
    return UNet(2, 1, out_channels, channels, [2] * (len(channels) - 1), num_res_units=2, norm="instance")


def test_encoder_is_every_down_layer_and_the_bottom() -> None:
    prefixes = encoder_prefixes(_unet(1))
    assert prefixes == ["model.0", "model.1.submodule.0", "model.1.submodule.1.submodule.0",
                        "model.1.submodule.1.submodule.1.submodule"]


def test_load_encoder_copies_the_encoder_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    denoiser, segmenter = ScaledNetwork(_unet(1), 2), ScaledNetwork(_unet(2), 2)
    path = tmp_path / "model.pt"
    torch.save(denoiser.state_dict(), path)
    before = {k: v.clone() for k, v in segmenter.state_dict().items()}
    keys = set(encoder_keys(segmenter))
    assert "network.model.0.conv.unit0.conv.weight" in keys
    assert not any(k.startswith("network.model.2.") for k in keys)  # the last up layer (2 outputs) stays
    assert load_encoder(segmenter, path) is segmenter
    after, source = segmenter.state_dict(), denoiser.state_dict()
    for name, value in after.items():
        expected = source[name] if name in keys else before[name]
        assert torch.equal(value, expected), name
    x = torch.rand(2, 1, 32, 32)
    assert segmenter(x).shape == (2, 2, 32, 32)


def test_load_encoder_refuses_another_architecture(tmp_path: Path) -> None:
    path = tmp_path / "small.pt"
    torch.save({"model": ScaledNetwork(_unet(1, (2, 4, 8, 16)), 2).state_dict()}, path)  # a resumable checkpoint
    with pytest.raises(InputError, match="shape"):
        load_encoder(ScaledNetwork(_unet(2), 2), path)
    with pytest.raises(InputError, match="no encoder weight"):
        load_encoder(_unet(2), path)  # not wrapped: other key names
