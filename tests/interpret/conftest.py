"""Fixtures for the interpretation tests: tiny networks, the bundle's network and its intensity transform."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.nets import UNet

from pipelines import api

BUNDLE = "lv_segmentation_unet"
BUNDLE_DIR = api.BUNDLES_DIR / BUNDLE


@pytest.fixture(autouse=True)
def one_thread():
    """The machines running the suite are shared with training runs: keep each test to one core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_unet() -> UNet:
    """A small 2D MONAI U-Net, 1 input channel, 2 classes, random but fixed weights (not trained)."""
    torch.manual_seed(0)
    return UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), num_res_units=0).eval()


@pytest.fixture(scope="session")
def bundle_parser() -> ConfigParser:
    """The bundle's ``train.json`` + ``explain.json``, parsed (nothing instantiated yet)."""
    parser = ConfigParser()
    parser.read_config([str(BUNDLE_DIR / "configs" / name) for name in ("train.json", "explain.json")])
    parser["bundle_root"] = str(BUNDLE_DIR)
    return parser


@pytest.fixture
def bundle_network(bundle_parser: ConfigParser) -> Callable[[], torch.nn.Module]:
    """A factory of fresh, randomly initialised instances of the bundle's network."""
    return lambda: bundle_parser.get_parsed_content("network_def", instantiate=True, lazy=False).eval()


@pytest.fixture
def trained_network(bundle_network: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """The bundle's network with its shipped weights, ``models/model.pt``; skipped where the bundle ships none."""
    checkpoint = BUNDLE_DIR / "models" / "model.pt"
    if not checkpoint.is_file():
        pytest.skip(f"{checkpoint} not found: the trained-model sanity checks need the shipped weights")
    network = bundle_network()
    network.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    return network.eval()


@pytest.fixture
def random_checkpoint(bundle_network: Callable[[], torch.nn.Module], tmp_path: Path) -> Path:
    """A checkpoint of the bundle's network with random weights: enough to test files, shapes and geometry."""
    torch.manual_seed(0)
    path = tmp_path / "random_model.pt"
    torch.save(bundle_network().state_dict(), path)
    return path
