"""Tests of :mod:`pipelines.interpret.sanity`, and the sanity checks themselves on real Sunnybrook slices: the trained
model's map differs from the map of the same network with random weights, and lies near the myocardium."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from torch import nn

from pipelines.data import split_items
from pipelines.interpret import OcclusionSliceInferer
from pipelines.interpret.sanity import chance_fraction, near_structure_fraction, randomized_copy, rank_correlation


def test_rank_correlation() -> None:
    a = np.arange(20.0).reshape(4, 5)
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(a, np.exp(a)) == pytest.approx(1.0)  # ranks only
    assert rank_correlation(a, -a, absolute=True) == pytest.approx(1.0)
    assert math.isnan(rank_correlation(a, np.zeros_like(a)))
    mask = np.zeros_like(a, dtype=bool)
    mask[:2] = True
    b = np.where(mask, a, -a)
    assert rank_correlation(a, b, mask=mask) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        rank_correlation(a, a.T)


def test_near_structure_fraction_hand_checked() -> None:
    """10x10 slices: the top 5 % are 5 pixels; 13 pixels lie within 2 px of a one-pixel structure at (5, 5)."""
    structure = np.zeros((10, 10, 2), dtype=np.uint8)
    structure[5, 5, 0] = 1
    sensitivity = np.zeros((10, 10, 2))
    for value, (r, c) in enumerate([(5, 5), (5, 6), (7, 5), (0, 0), (9, 9)], start=1):
        sensitivity[r, c, 0] = value  # 3 near, 2 far
    sensitivity[:, :, 1] = 5.0  # slice without the structure: left out
    assert near_structure_fraction(sensitivity, structure) == pytest.approx(3 / 5)
    assert near_structure_fraction(sensitivity[..., 0], structure[..., 0], top_fraction=0.02) == pytest.approx(0.0)
    assert chance_fraction(structure) == pytest.approx(13 / 100)
    assert math.isnan(near_structure_fraction(sensitivity[..., 1], structure[..., 1]))
    assert math.isnan(chance_fraction(structure[..., 1]))


def test_randomized_copy(tiny_unet: nn.Module) -> None:
    network = nn.Sequential(tiny_unet, nn.BatchNorm2d(2))
    network[1].running_mean.fill_(3.0)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    first, second = randomized_copy(network, seed=1), randomized_copy(network, seed=1)
    for key, value in network.state_dict().items():
        torch.testing.assert_close(value, before[key])  # the original is untouched
        torch.testing.assert_close(first.state_dict()[key], second.state_dict()[key])  # reproducible
    weight = "0.model.0.conv.weight"
    assert not torch.equal(first.state_dict()[weight], before[weight])
    assert float(first[1].running_mean.abs().max()) == 0.0


def _test_slices(sunnybrook_dir: Path, parser: ConfigParser, count: int) -> tuple[torch.Tensor, np.ndarray]:
    """The first seed-split test patient's ``count`` slices with the most myocardium, preprocessed like the bundle."""
    item = split_items(sunnybrook_dir / "datalist.json", "seed", "test")[0]
    load = Compose([LoadImaged(["image", "label"], image_only=True), EnsureChannelFirstd(["image", "label"])])
    data = parser.get_parsed_content("intensity", instantiate=True)(load(item))
    label = data["label"][0].numpy()
    chosen = np.argsort(-(label > 0).sum(axis=(0, 1)), kind="stable")[:count]
    return data["image"].as_tensor()[None][..., chosen], label[..., chosen]


def test_trained_map_differs_from_the_randomised_network_and_lies_near_the_myocardium(
    sunnybrook_dir: Path,
    bundle_parser: ConfigParser,
    trained_network: nn.Module,
    bundle_network: Callable[[], nn.Module],
) -> None:
    """Adebayo et al.'s model randomisation test and the localisation check, on 2 slices of a held-out patient."""
    volume, myocardium = _test_slices(sunnybrook_dir, bundle_parser, count=2)
    inferer = OcclusionSliceInferer(patch_size=8, stride=4, mode="blur", batch_size=32)
    trained = inferer(volume, trained_network)[0, 0].numpy()
    randomised = inferer(volume, randomized_copy(trained_network, seed=0).eval())[0, 0].numpy()
    correlations = [rank_correlation(trained[..., k], randomised[..., k]) for k in range(2)]
    assert all(not math.isnan(rho) and rho < 0.5 for rho in correlations), correlations
    near, chance = near_structure_fraction(trained, myocardium), chance_fraction(myocardium)
    assert near > max(0.4, 3 * chance), (near, chance)
    assert near_structure_fraction(randomised, myocardium) < near
