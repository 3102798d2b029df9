"""Tests for :mod:`pipelines.evaluation.metrics` on cases whose Dice and HD95 are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipelines.evaluation.metrics import CaseScores, case_scores, summarise


def mask(shape: tuple[int, ...], *boxes: tuple[slice, ...]) -> torch.Tensor:
    """A ``(1, *shape)`` label map with ones in the given boxes."""
    m = torch.zeros((1, *shape))
    for box in boxes:
        m[(0, *box)] = 1
    return m


def ring(shift_px: int = 0, size: int = 32) -> torch.Tensor:
    """A ring 3 pixels thick (radii 6 to 9) centred at (16, 16 + shift_px)."""
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - size // 2, xx - size // 2 - shift_px)
    return torch.as_tensor(((radius >= 6) & (radius < 9))[None], dtype=torch.float32)


def one_hot(label_map: torch.Tensor) -> torch.Tensor:
    return torch.cat([1 - label_map, label_map])


def test_overlapping_squares_dice():
    # 4x4 squares overlapping in 2x2: Dice = 2 * 4 / (16 + 16) = 0.25
    a = mask((10, 10), (slice(0, 4), slice(0, 4)))
    b = mask((10, 10), (slice(2, 6), slice(2, 6)))
    scores = case_scores(a, b, (3.0, 3.0), "squares", group="normal")
    assert scores.dice == pytest.approx(0.25)
    assert scores == CaseScores("squares", scores.dice, scores.hd95_mm, scores.hd95_px, "normal")
    assert math.isfinite(scores.hd95_mm) and scores.hd95_px == pytest.approx(scores.hd95_mm / 3.0)


def test_one_hot_prediction_equals_label_map():
    a = mask((10, 10), (slice(0, 4), slice(0, 4)))
    b = mask((10, 10), (slice(2, 6), slice(2, 6)))
    assert case_scores(one_hot(a), b, (3.0, 3.0), "x") == case_scores(a, one_hot(b), (3.0, 3.0), "x")


def test_identical_masks():
    a = ring()
    scores = case_scores(a, a.clone(), (3.0, 3.0), "same")
    assert scores.dice == pytest.approx(1.0)
    assert scores.hd95_mm == 0.0 and scores.hd95_px == 0.0


def test_both_empty():
    empty = torch.zeros((1, 8, 8, 3))
    scores = case_scores(empty, empty, (3.0, 3.0, 8.0), "empty")
    assert scores.dice == 1.0
    assert math.isnan(scores.hd95_mm) and math.isnan(scores.hd95_px)


def test_empty_prediction_scores_zero_dice():
    label = mask((8, 8), (slice(2, 4), slice(2, 4)))
    scores = case_scores(torch.zeros_like(label), label, (3.0, 3.0), "missed")
    assert scores.dice == 0.0
    assert math.isnan(scores.hd95_mm)


def test_prediction_on_empty_label_scores_zero_dice():
    pred = mask((8, 8), (slice(2, 4), slice(2, 4)))
    scores = case_scores(pred, torch.zeros_like(pred), (3.0, 3.0), "false_positive")
    assert scores.dice == 0.0


def test_ring_shifted_by_one_pixel():
    # every boundary pixel of the shifted ring is 0 or 1 pixel from the reference boundary: HD95 = 1 px = 3 mm
    scores = case_scores(ring(shift_px=1), ring(), (3.0, 3.0), "ring")
    assert scores.hd95_px == pytest.approx(1.0)
    assert scores.hd95_mm == pytest.approx(3.0)
    inter = float((ring(1) * ring()).sum())
    assert scores.dice == pytest.approx(2 * inter / float(ring(1).sum() + ring().sum()), rel=1e-6)


@pytest.mark.parametrize(
    ("shape", "pred_at", "label_at", "spacing", "hd_mm"),
    [
        ((9, 9), (4, 4), (4, 5), (3.0, 8.0), 8.0),  # one pixel apart along axis 1 (8 mm)
        ((9, 9), (4, 4), (5, 4), (3.0, 8.0), 3.0),  # one pixel apart along axis 0 (3 mm)
        ((9, 9, 5), (4, 4, 1), (4, 4, 2), (3.0, 3.0, 8.0), 8.0),  # one slice apart
        ((9, 9, 5), (4, 4, 1), (5, 5, 1), (3.0, 3.0, 8.0), math.hypot(3.0, 3.0)),  # in-plane diagonal
    ],
)
def test_hd95_uses_the_anisotropic_spacing(shape, pred_at, label_at, spacing, hd_mm):
    pred, label = torch.zeros((1, *shape)), torch.zeros((1, *shape))
    pred[(0, *pred_at)] = 1
    label[(0, *label_at)] = 1
    scores = case_scores(pred, label, spacing, "dot")
    assert scores.dice == 0.0
    assert scores.hd95_mm == pytest.approx(hd_mm)
    assert scores.hd95_px == pytest.approx(hd_mm / spacing[0])  # in in-plane pixels


def test_summarise_ignores_nan_and_groups():
    scores = [
        CaseScores("a", 0.8, 3.0, 1.0, "normal"),
        CaseScores("b", 0.6, math.nan, math.nan, "normal"),
        CaseScores("c", 0.4, 9.0, 3.0, "hypertrophy"),
    ]
    summary = summarise(scores)
    assert summary["n_cases"] == 3
    assert summary["dice"]["n"] == 3
    assert summary["dice"]["mean"] == pytest.approx(0.6)
    assert summary["dice"]["median"] == pytest.approx(0.6)
    assert summary["dice"]["std"] == pytest.approx(np.std([0.8, 0.6, 0.4]))
    assert summary["hd95_mm"] == pytest.approx({"mean": 6.0, "std": 3.0, "median": 6.0, "n": 2})
    assert summary["hd95_px"]["mean"] == pytest.approx(2.0)
    assert set(summary["by_group"]) == {"normal", "hypertrophy"}
    normal = summary["by_group"]["normal"]
    assert normal["dice"]["mean"] == pytest.approx(0.7) and normal["dice"]["n"] == 2
    assert normal["hd95_mm"] == pytest.approx({"mean": 3.0, "std": 0.0, "median": 3.0, "n": 1})
    assert summary["by_group"]["hypertrophy"]["hd95_px"]["mean"] == pytest.approx(3.0)


def test_summarise_all_nan_and_no_groups():
    summary = summarise([CaseScores("a", 1.0, math.nan, math.nan)])
    assert summary["hd95_mm"]["n"] == 0 and math.isnan(summary["hd95_mm"]["mean"])
    assert summary["by_group"] == {}
    assert summarise([])["n_cases"] == 0
