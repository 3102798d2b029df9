"""Bland-Altman statistics, per-class Dice / HD95 and the uncertainty AUROC against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.evaluation.agreement import bland_altman, class_scores, uncertainty_auroc


def test_bland_altman_matches_the_textbook_formulas() -> None:
    reference = [50.0, 60.0, 40.0, 55.0]
    predicted = [52.0, 59.0, 43.0, 55.0]
    d = np.array(predicted) - np.array(reference)  # 2, -1, 3, 0
    stats = bland_altman(predicted, reference)
    assert stats["n"] == 4 and stats["bias"] == pytest.approx(1.0) and stats["mae"] == pytest.approx(1.5)
    assert stats["sd"] == pytest.approx(d.std(ddof=1))
    assert (stats["loa_low"], stats["loa_high"]) == pytest.approx((1 - 1.96 * d.std(ddof=1), 1 + 1.96 * d.std(ddof=1)))
    assert stats["r"] == pytest.approx(np.corrcoef(predicted, reference)[0, 1])


def test_bland_altman_leaves_out_missing_pairs() -> None:
    assert bland_altman([1.0, math.nan, 3.0], [1.0, 2.0, 2.0])["n"] == 2
    assert math.isnan(bland_altman([], [])["bias"])


def test_class_scores_per_label_with_spacing() -> None:
    reference = np.zeros((20, 20, 2), np.uint8)
    reference[5:10, 5:10] = 3
    predicted = reference.copy()
    predicted[5:10, 10] = 3  # one extra column of 5 x 2 voxels
    predicted[0, 0, 0] = 1  # an RV voxel the reference lacks
    scores = class_scores(predicted, reference, (1.5, 1.5, 10.0), {1: "rv", 2: "myo", 3: "lv"})
    assert scores["dice_lv"] == pytest.approx(2 * 50 / (50 + 60))
    assert scores["dice_myo"] == 1.0 and math.isnan(scores["hd95_mm_myo"])  # both empty
    assert scores["dice_rv"] == 0.0 and math.isnan(scores["hd95_mm_rv"])
    assert scores["hd95_mm_lv"] == pytest.approx(1.5)


def test_uncertainty_auroc_counts_the_cases() -> None:
    assert uncertainty_auroc([0.1, 0.4, 0.35, 0.8], [False, True, False, True]) == {
        "auroc": 1.0, "n_bad": 2, "n_good": 2}
    assert uncertainty_auroc([0.9, 0.1], [False, True])["auroc"] == 0.0
    undefined = uncertainty_auroc([0.1, 0.2], [False, False])
    assert math.isnan(undefined["auroc"]) and undefined["n_bad"] == 0
