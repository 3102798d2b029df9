"""The pre-training benchmark's patient selection and summary (its training runs are the bundles' own, smoke-tested
in tests/bundles)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def pretraining(load_benchmark):
    return load_benchmark("pretraining")


def test_labelled_patients_are_training_patients_of_distinct_groups(pretraining, sunnybrook_dir: Path) -> None:
    split = json.loads((sunnybrook_dir / "datalist.json").read_text(encoding="utf-8"))["splits"]["seed"]
    three = pretraining.labelled_patients(sunnybrook_dir, "seed", 3, seed=0)
    assert len(three) == 3 and {i["case_id"] for i in three} <= set(split["train"])
    assert len({i["category"] for i in three}) == 3
    assert [i["case_id"] for i in pretraining.labelled_patients(sunnybrook_dir, "seed", 3, seed=0)] == \
        [i["case_id"] for i in three]
    assert {i["case_id"] for i in pretraining.labelled_patients(sunnybrook_dir, "seed", 3, seed=1)} != \
        {i["case_id"] for i in three}


def test_summary_pairs_the_arms_by_seed(pretraining) -> None:
    scratch, pretrained = pretraining.ARMS
    rows = [{"labelled_patients": 3, "seed": s, "arm": arm, "test_dice_mean": dice}
            for s, arm, dice in [(0, scratch, 0.70), (1, scratch, 0.74), (0, pretrained, 0.75), (1, pretrained, 0.75)]]
    summary = pretraining.summarise(rows)
    assert [(s["arm"], s["test_dice_mean"]) for s in summary] == [(scratch, pytest.approx(0.72)),
                                                                  (pretrained, pytest.approx(0.75))]
    assert summary[1]["paired_differences"] == [pytest.approx(0.05), pytest.approx(0.01)]
    assert "paired_difference_mean" not in summary[0]
    assert "| 3 | denoising AE encoder | 0.750 ± 0.000 | 2 | +0.030 |" in pretraining.markdown(summary, "cpu", 320)
