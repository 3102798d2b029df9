"""Generative metrics and the class sample grid, driven by a bare Ignite engine on real MedNIST images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from PIL import Image

from pipelines.data import split_items
from pipelines.evaluation.generative import CLASSIFIER_BUNDLE, load_classifier, predict_classes
from pipelines.handlers.class_generation import ClassConsistencyMetric, ClassSampleGrid, FrechetDistanceMetric
from pipelines.networks.conditional_gan import ConditionalGenerator

pytestmark = pytest.mark.skipif(not (CLASSIFIER_BUNDLE / "models" / "model.pt").is_file(),
                                reason="the MedNIST classifier's weights are not shipped")


@pytest.fixture(scope="module")
def validation(mednist_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The 300 real validation images ``[N, 1, 64, 64]`` in [0, 1] and their labels."""
    items = split_items(mednist_dir, "seed", "validation", path_fields=["image"])
    images = np.stack([np.asarray(Image.open(item["image"]), dtype=np.float32) / 255 for item in items])
    return torch.from_numpy(images)[:, None], torch.tensor([item["label"] for item in items])


def _run(metrics: dict, batches: list[dict]) -> dict:
    engine = Engine(lambda e, batch: batch)
    for name, metric in metrics.items():
        metric.attach(engine, name)
    engine.run(batches, max_epochs=1)
    return engine.state.metrics


def test_metrics_of_real_images_against_themselves_and_shifted(validation) -> None:
    images, labels = validation
    classifier = load_classifier()
    same = [{"pred": images[i:i + 100], "label": images[i:i + 100], "image": labels[i:i + 100]}
            for i in range(0, len(images), 100)]
    darker = [{**batch, "pred": 0.5 * batch["pred"]} for batch in same]
    metrics = {"fid": FrechetDistanceMetric(classifier), "consistency": ClassConsistencyMetric(classifier)}
    scores = _run(metrics, same)
    assert scores["fid"] == pytest.approx(0.0, abs=1e-3)
    # on real images, class consistency is the classifier's accuracy
    accuracy = float((predict_classes(classifier, images) == labels).float().mean())
    assert scores["consistency"] == pytest.approx(accuracy)
    assert _run(metrics, darker)["fid"] > 1.0


def test_sample_grid_draws_one_row_per_class_from_fixed_latents(tmp_path: Path) -> None:
    torch.manual_seed(0)
    generator = ConditionalGenerator(latent_size=4, embedding_size=2, channels=(8, 4, 4, 4))
    grid = ClassSampleGrid(generator, ["a", "b", "c"], tmp_path, per_class=2, keep_every=2)
    first = grid.samples()
    assert first.shape == (3, 2, 64, 64) and np.array_equal(grid.samples(), first)
    assert generator.training  # drawn in eval mode, then left as it was
    engine = Engine(lambda e, batch: None)
    grid.attach(engine)
    grid.attach(engine)
    engine.run([0], max_epochs=2)
    assert (tmp_path / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in (tmp_path / "samples").iterdir()] == ["epoch_002.png"]
