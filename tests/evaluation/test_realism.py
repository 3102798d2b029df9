"""The realism measures of issue #5 on real Sunnybrook slices: what they say about real data and about clear fakes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines import api
from pipelines.evaluation.generative import frechet_distance
from pipelines.evaluation.realism import (
    classifier_two_sample_test, mask_plausibility, real_slices, segmentation_features,
)


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    return api.load_network("lv_segmentation_unet")


@pytest.fixture(scope="module")
def train_slices(sunnybrook_dir: Path) -> dict:
    return real_slices(sunnybrook_dir, "seed", ("train",), max_cases=12)


@pytest.fixture(scope="module")
def test_slices(sunnybrook_dir: Path) -> dict:
    return real_slices(sunnybrook_dir, "seed", ("test",))


def test_real_slices_are_on_the_bundle_scale(train_slices: dict) -> None:
    images, labels = train_slices["image"], train_slices["label"]
    assert images.shape[1:] == (1, 64, 64) and labels.shape == images.shape
    assert images.min() >= 0 and images.max() <= 1 and set(labels.unique().tolist()) <= {0.0, 1.0}
    assert len(train_slices["case_id"]) == len(images) == len(train_slices["category"])


def test_features_are_the_unet_bottleneck(unet: torch.nn.Module, test_slices: dict) -> None:
    features = segmentation_features(unet, test_slices["image"][:10])
    assert features.shape == (10, 256)  # the U-Net's deepest level has 256 channels
    assert torch.equal(features, segmentation_features(unet, test_slices["image"][:10]))


def test_frechet_distance_separates_real_from_degraded(unet: torch.nn.Module, train_slices: dict,
                                                       test_slices: dict) -> None:
    real_a = segmentation_features(unet, train_slices["image"])
    real_b = segmentation_features(unet, test_slices["image"])
    blurred = torch.nn.functional.avg_pool2d(test_slices["image"], 5, stride=1, padding=2)
    noisy = (test_slices["image"] + 0.05 * torch.randn(test_slices["image"].shape,
                                                       generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    floor = frechet_distance(real_a, real_b)  # other patients: what real data scores (biased up by the small n)
    assert 0 < floor < 0.9 * frechet_distance(real_a, segmentation_features(unet, blurred))
    assert floor < 0.9 * frechet_distance(real_a, segmentation_features(unet, noisy))


def test_mask_plausibility_is_high_for_real_pairs_and_low_for_shifted_masks(unet: torch.nn.Module,
                                                                            test_slices: dict) -> None:
    real = mask_plausibility(unet, test_slices["image"], test_slices["label"])
    shifted = mask_plausibility(unet, test_slices["image"], torch.roll(test_slices["label"], 12, dims=3))
    assert real["mean_dice"] > 0.7 and shifted["mean_dice"] < 0.5 * real["mean_dice"]
    assert real["pairs"] == len(test_slices["image"])


def test_two_sample_test_near_chance_for_real_and_high_for_fakes(train_slices: dict, test_slices: dict) -> None:
    same = classifier_two_sample_test(train_slices["image"], test_slices["image"], epochs=8)
    fake = classifier_two_sample_test(train_slices["image"], 1 - test_slices["image"], epochs=8)
    assert same["accuracy"] < 0.7 and fake["accuracy"] > 0.9
    assert same == classifier_two_sample_test(train_slices["image"], test_slices["image"], epochs=8)
