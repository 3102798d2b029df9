"""Tests for :mod:`pipelines.handlers.case_metrics`, driven by an engine that returns known predictions."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from pipelines.handlers.case_metrics import CaseMetrics

SHAPE = (9, 9, 4)
AFFINE = torch.diag(torch.tensor([3.0, 3.0, 8.0, 1.0], dtype=torch.float64))


def volume(*voxels: tuple[int, int, int], box: bool = False) -> MetaTensor:
    """A ``(1, 9, 9, 4)`` mask (a 3x3x2 box, or the given voxels) with spacing 3 x 3 x 8 mm."""
    array = torch.zeros((1, *SHAPE))
    if box:
        array[0, 3:6, 3:6, 1:3] = 1
    for voxel in voxels:
        array[(0, *voxel)] = 1
    return MetaTensor(array, affine=AFFINE.clone())


def cases() -> list[list[dict]]:
    """Two batches, as a MONAI evaluator leaves them after decollation (lists of per-case dicts)."""
    same = {"case_id": "same", "category_name": "normal", "pred": volume(box=True), "label": volume(box=True)}
    # one voxel each, one slice apart: Dice 0, HD95 = 8 mm = 8/3 in-plane pixels
    apart = {"case_id": "apart", "category_name": "hypertrophy", "pred": volume((4, 4, 1)), "label": volume((4, 4, 2))}
    missed = {"case_id": "missed", "category_name": "normal", "pred": volume(), "label": volume(box=True)}
    return [[same, apart], [missed]]


def evaluator() -> Engine:
    return Engine(lambda engine, batch: [{"pred": item["pred"], "label": item["label"]} for item in batch])


def test_reports_per_case_rows_and_summary(tmp_path):
    engine = evaluator()
    handler = CaseMetrics(output_dir=str(tmp_path))
    handler.attach(engine)
    handler.attach(engine)  # attaching twice must not score twice
    engine.run(cases(), max_epochs=2)  # the table is reset every epoch

    with open(tmp_path / "per_case.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [
        {"case_id": "same", "group": "normal", "dice": "1", "hd95_mm": "0", "hd95_px": "0"},
        {"case_id": "apart", "group": "hypertrophy", "dice": "0", "hd95_mm": "8", "hd95_px": "2.66667"},
        {"case_id": "missed", "group": "normal", "dice": "0", "hd95_mm": "nan", "hd95_px": "nan"},
    ]

    report = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert [case["case_id"] for case in report["cases"]] == ["same", "apart", "missed"]
    summary = report["summary"]
    assert summary["n_cases"] == 3
    assert summary["dice"]["mean"] == pytest.approx(1 / 3)
    assert summary["hd95_mm"]["mean"] == pytest.approx(4.0) and summary["hd95_mm"]["n"] == 2
    assert summary["by_group"]["normal"]["dice"]["mean"] == pytest.approx(0.5)
    assert summary["by_group"]["hypertrophy"]["hd95_px"]["mean"] == pytest.approx(8 / 3)

    metrics = engine.state.metrics
    assert metrics["mean_dice"] == pytest.approx(1 / 3)
    assert metrics["std_dice"] == pytest.approx(np.std([1.0, 0.0, 0.0]))
    assert metrics["mean_hd95_mm"] == pytest.approx(4.0)
    assert metrics["mean_hd95_px"] == pytest.approx(4 / 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "per_case.csv"]


def test_without_output_dir_only_fills_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = evaluator()
    CaseMetrics().attach(engine)
    engine.run(cases()[:1], max_epochs=1)
    assert engine.state.metrics["mean_dice"] == pytest.approx(0.5)
    assert list(tmp_path.iterdir()) == []


def test_group_names_and_default_ids():
    batch = [
        {"category": 3, "pred": volume((4, 4, 1)), "label": volume((4, 4, 1))},
        {"pred": volume(), "label": volume()},
    ]
    engine = evaluator()
    handler = CaseMetrics(group_key="category", group_names={"3": "hypertrophy"})
    handler.attach(engine)
    engine.run([batch], max_epochs=1)
    assert [(s.case_id, s.group) for s in handler.scores] == [("case_0", "hypertrophy"), ("case_1", "")]
    assert [s.dice for s in handler.scores] == [1.0, 1.0]  # the empty pair counts as a perfect match
    assert math.isnan(handler.scores[1].hd95_mm)
