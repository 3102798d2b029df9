"""Tests for :mod:`pipelines.handlers.synthesis`, driven by an engine that returns decollated synthesis outputs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.handlers import from_engine

from pipelines.evaluation.synthesis import synthesis_metrics
from pipelines.handlers.synthesis import SynthesisGrid, SynthesisMetric, SynthesisReport

SHAPE = (1, 16, 16, 2)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def case(case_id: str, region: str, offset: float, seed: int) -> dict:
    """One case as a batch item: a textured real CT, the synthetic one ``offset`` above it inside a box mask."""
    generator = torch.Generator().manual_seed(seed)
    label = torch.rand(SHAPE, generator=generator) * 200
    mask = torch.zeros(SHAPE)
    mask[:, 3:13, 3:13] = 1
    pred = label + offset * mask + torch.rand(SHAPE, generator=generator) * 10 * (1 - mask)  # noise off the mask
    image = torch.rand(SHAPE, generator=generator) * 2 - 1
    return {"case_id": case_id, "region": region, "image": image, "pred": pred, "label": label, "eval_mask": mask}


def batches() -> list[list[dict]]:
    """Two batches of per-case dicts, as a MONAI evaluator sees them after decollation."""
    return [
        [case("p01", "head", 4.0, 0), case("p02", "neck", 8.0, 1)],
        [case("p03", "head", 16.0, 2)],
    ]


def evaluator() -> Engine:
    """Returns, per case, the dict a MONAI evaluator's postprocessing leaves (no ids: those are in the batch)."""
    keys = ("image", "pred", "label", "eval_mask")
    return Engine(lambda engine, batch: [{k: item[k] for k in keys} for item in batch])


def expected_metrics() -> dict[str, dict[str, float]]:
    return {
        item["case_id"]: synthesis_metrics(item["pred"], item["label"], item["eval_mask"])
        for batch in batches() for item in batch
    }


def test_metric_is_the_mean_over_cases_of_the_masked_metric() -> None:
    engine = evaluator()
    for name in ("mae", "psnr", "ssim"):
        SynthesisMetric(name, output_transform=from_engine(["pred", "label", "eval_mask"])).attach(engine, name)
    engine.run(batches(), max_epochs=1)

    expected = expected_metrics()
    for name in ("mae", "psnr", "ssim"):
        assert engine.state.metrics[name] == pytest.approx(np.mean([m[name] for m in expected.values()]), rel=1e-6)
    # the offsets 4, 8, 16 inside the mask are the per-case MAEs; the noise outside it does not count
    assert engine.state.metrics["mae"] == pytest.approx((4 + 8 + 16) / 3, rel=1e-5)
    psnr = np.mean([10 * math.log10(255**2 / c**2) for c in (4, 8, 16)])
    assert engine.state.metrics["psnr"] == pytest.approx(psnr, rel=1e-5)


def test_metric_rejects_an_unknown_name() -> None:
    with pytest.raises(ValueError, match="metric must be one of"):
        SynthesisMetric("dice")


def test_report_writes_per_case_rows_summary_and_regions(tmp_path: Path) -> None:
    engine = evaluator()
    SynthesisReport(str(tmp_path), mask_key="eval_mask").attach(engine)
    engine.run(batches(), max_epochs=2)  # the table is reset every epoch
    expected = expected_metrics()

    with open(tmp_path / "per_case.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["case_id"], r["region"]) for r in rows] == [("p01", "head"), ("p02", "neck"), ("p03", "head")]
    for row in rows:
        for name in ("mae", "psnr", "ssim"):
            assert float(row[name]) == pytest.approx(expected[row["case_id"]][name], rel=1e-5)

    report = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert [c["case_id"] for c in report["cases"]] == ["p01", "p02", "p03"] and report["n_cases"] == 3
    for name in ("mae", "psnr", "ssim"):
        values = np.array([expected[c][name] for c in ("p01", "p02", "p03")])
        assert report["summary"][name] == pytest.approx(
            {"mean": values.mean(), "std": values.std(), "median": np.median(values)}, rel=1e-6
        )
        assert engine.state.metrics[f"mean_{name}"] == pytest.approx(values.mean(), rel=1e-6)
        head = np.array([expected["p01"][name], expected["p03"][name]])
        assert report["by_region"]["head"][name]["mean"] == pytest.approx(head.mean(), rel=1e-6)
        assert report["by_region"]["neck"][name] == pytest.approx(
            {"mean": expected["p02"][name], "std": 0.0, "median": expected["p02"][name]}, rel=1e-6, abs=1e-12
        )
    assert sorted(report["by_region"]) == ["head", "neck"]


def test_grid_writes_a_png_and_keeps_one_per_epoch(tmp_path: Path) -> None:
    engine = evaluator()
    grid = SynthesisGrid(str(tmp_path), mask_key="eval_mask", max_cases=2, keep_every=1)
    grid.attach(engine)
    engine.run(batches()[:1], max_epochs=1)

    assert [row["name"] for row in grid.rows] == ["p01", "p02"]
    assert grid.rows[0]["pred"].shape == (16, 16) and grid.rows[0]["mask"].dtype == bool
    for path in (tmp_path / "validation_grid.png", tmp_path / "samples" / "epoch_001.png"):
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path


def test_grid_without_keep_every_keeps_no_samples(tmp_path: Path) -> None:
    engine = evaluator()
    SynthesisGrid(str(tmp_path), filename="latest.png", mask_key=None, max_cases=1).attach(engine)
    engine.run([batches()[1]], max_epochs=1)
    assert (tmp_path / "latest.png").read_bytes()[:8] == PNG_SIGNATURE
    assert not (tmp_path / "samples").exists()
