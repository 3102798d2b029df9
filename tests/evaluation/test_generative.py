"""Generative metrics with the shipped MedNIST classifier, on the real test images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.data import split_items
from pipelines.errors import InputError
from pipelines.evaluation.generative import (
    CLASSIFIER_BUNDLE, class_consistency, classifier_features, frechet_distance, load_classifier, per_class_accuracy,
)


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    torch.set_num_threads(1)
    return load_classifier()


@pytest.fixture(scope="module")
def test_images(mednist_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The 600 real test images of the seed split, ``[N, 1, 64, 64]`` = PNG / 255, and their labels."""
    items = split_items(mednist_dir, "seed", "test", path_fields=["image"])
    pixels = np.stack([np.array(Image.open(item["image"])) for item in items])
    return torch.from_numpy(pixels).float()[:, None] / 255.0, torch.tensor([item["label"] for item in items])


def test_consistency_on_real_images_is_the_published_accuracy(classifier, test_images) -> None:
    published = json.loads((CLASSIFIER_BUNDLE / "configs" / "metadata.json").read_text(encoding="utf-8"))
    images, labels = test_images
    accuracy = class_consistency(classifier, images, labels)
    assert accuracy == pytest.approx(published["eval_metrics"]["accuracy"], abs=1e-9)
    assert class_consistency(classifier, images, (labels + 1) % 6) < 0.05  # the wrong class asked for


def test_frechet_distance_is_zero_for_a_set_and_grows_with_a_shift(classifier, test_images) -> None:
    features = classifier_features(classifier, test_images[0])
    assert features.shape == (600, 128) and torch.isfinite(features).all()
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6 * features.var(0).sum().item())
    # equal covariances: FD = ||mu_r - mu_f||^2 = F d^2 for a shift of d in every feature
    distances = [frechet_distance(features, features + d) for d in (0.1, 0.5, 1.0)]
    assert distances == pytest.approx([128 * d**2 for d in (0.1, 0.5, 1.0)], rel=1e-4)
    # one class against the others is far; two halves of one class are close
    labels = test_images[1]
    same = frechet_distance(features[labels == 3][:50], features[labels == 3][50:])
    assert same < frechet_distance(features[labels == 3], features[labels == 4])


def test_per_class_accuracy_and_confusion() -> None:
    report = per_class_accuracy(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), ["a", "b", "c", "d"])
    assert report["accuracy"] == 0.75 and report["cases"] == 4
    assert report["per_class"]["c"] == {"accuracy": 0.5, "cases": 2} and report["per_class"]["d"]["accuracy"] is None
    assert report["confusion_matrix"][2] == [0, 1, 1, 0]


def test_weights_of_another_network_are_a_one_line_error(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    with pytest.raises(InputError, match="weights do not fit"):
        load_classifier(other)
    with pytest.raises(ValueError, match="equal F"):
        frechet_distance(torch.zeros(5, 3), torch.zeros(5, 4))


def test_frechet_distance_equals_monai_fid_metric() -> None:
    """The eigenvalue form gives MONAI's FIDMetric (scipy sqrtm) on random Gaussians of different moments."""
    from monai.metrics import FIDMetric

    torch.manual_seed(0)
    real, fake = torch.randn(300, 32), torch.randn(250, 32) * 1.3 + 0.2
    assert frechet_distance(real, fake) == pytest.approx(float(FIDMetric()(fake, real)), rel=1e-9)
