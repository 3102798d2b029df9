"""MaskPlausibilityMetric driven by a bare Ignite engine over real Sunnybrook pairs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Engine

from pipelines import api
from pipelines.evaluation.realism import mask_plausibility, real_slices
from pipelines.handlers.realism import MaskPlausibilityMetric


def _score(network: torch.nn.Module, pairs: torch.Tensor) -> float:
    engine = Engine(lambda e, batch: {"pred": batch})
    MaskPlausibilityMetric(network).attach(engine, "plausibility")
    return engine.run(list(torch.split(pairs, 16))).metrics["plausibility"]


def test_metric_is_the_pair_weighted_mean_over_batches(sunnybrook_dir: Path) -> None:
    network = api.load_network("lv_segmentation_unet")
    real = real_slices(sunnybrook_dir, "seed", ("test",), max_cases=3)
    pairs = torch.cat([real["image"], real["label"]], dim=1)
    whole = mask_plausibility(network, real["image"], real["label"])["mean_dice"]
    assert _score(network, pairs) == pytest.approx(whole, abs=1e-6)
    wrong = torch.cat([real["image"], torch.flip(real["label"], dims=[3])], dim=1)
    assert _score(network, wrong) < whole
