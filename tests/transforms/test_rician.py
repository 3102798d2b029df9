"""Seeded Rician noise: the distribution it draws from, its reproducibility, and the per-level dataset items."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.transforms import RandRicianNoised

from pipelines.data.noise_levels import noise_level_items
from pipelines.transforms.rician import RicianNoised, noise_seed, rician_noise


@pytest.mark.parametrize("sigma", [0.05, 0.1, 0.15])
def test_zero_signal_gives_the_rayleigh_mean_and_bright_signal_the_gaussian_spread(sigma: float) -> None:
    dark = rician_noise(np.zeros(200_000, np.float32), sigma, seed=1)
    # |n1 + i n2| is Rayleigh: mean sigma sqrt(pi/2), second moment 2 sigma^2
    assert dark.mean() == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.01)
    assert (dark**2).mean() == pytest.approx(2 * sigma**2, rel=0.01)
    bright = rician_noise(np.full(200_000, 1.0, np.float32), sigma, seed=2)
    # E[y^2] = x^2 + 2 sigma^2 exactly; for x >> sigma, y is close to N(x, sigma^2)
    assert (bright**2).mean() == pytest.approx(1.0 + 2 * sigma**2, abs=2e-3)
    assert bright.std() == pytest.approx(sigma, rel=0.03)


def test_matches_monai_rand_rician_noise_at_a_fixed_level() -> None:
    clean = torch.linspace(0, 1, 100_000).reshape(1, 100, 1000)
    ours = torch.as_tensor(rician_noise(clean, 0.1, seed=3))
    monai = RandRicianNoised("image", prob=1.0, std=0.1, sample_std=False)
    monai.set_random_state(4)
    theirs = torch.as_tensor(monai({"image": clean})["image"])
    for stat in (lambda v: v.mean(), lambda v: (v - clean).abs().mean(), lambda v: (v**2).mean()):
        assert float(stat(ours)) == pytest.approx(float(stat(theirs)), rel=0.01)


def test_same_case_and_level_give_the_same_noise_in_any_order() -> None:
    image = torch.rand(1, 16, 16, 4)
    transform = RicianNoised("image", sigma_key="noise_sigma")
    items = noise_level_items([{"case_id": "a", "image": image}, {"case_id": "b", "image": image}], [0.05, 0.1])
    first = [transform(item)["image"] for item in items]
    again = [transform(item)["image"] for item in reversed(items)][::-1]
    for x, y in zip(first, again):
        assert torch.equal(x, y)
    assert not torch.equal(first[0], first[1])  # another case, another realisation
    assert not torch.equal(first[0], first[2])  # another level
    other_seed = RicianNoised("image", sigma_key="noise_sigma", seed=1)(items[0])["image"]
    assert not torch.equal(first[0], other_seed)
    assert first[0].dtype == torch.float32 and first[0].shape == image.shape


def test_fixed_sigma_and_missing_level() -> None:
    image = np.zeros((1, 8, 8), np.float32)
    out = RicianNoised("image", sigma=0.1, sigma_key=None)({"case_id": "a", "image": image})["image"]
    assert out.shape == image.shape and (out >= 0).all() and out.mean() > 0
    with pytest.raises(KeyError, match="no noise level"):
        RicianNoised("image")({"case_id": "a", "image": image})
    with pytest.raises(ValueError, match="non-negative"):
        rician_noise(image, -0.1, seed=0)
    assert noise_seed("a", 0.1) == noise_seed("a", 0.1000000001) != noise_seed("a", 0.15)


def test_noise_level_items_repeat_each_case_per_level() -> None:
    items = noise_level_items([{"case_id": "a"}, {"case_id": "b"}], [0.05, 0.1])
    assert [(i["case_id"], i["noise_sigma"]) for i in items] == [("a", 0.05), ("b", 0.05), ("a", 0.1), ("b", 0.1)]
    with pytest.raises(ValueError):
        noise_level_items([{"case_id": "a"}], [])
