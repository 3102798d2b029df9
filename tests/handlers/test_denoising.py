"""The denoising handlers driven by a bare Ignite engine: per-level report with gains, metric, figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine

from pipelines.evaluation.denoising import denoising_metrics
from pipelines.handlers.denoising import DenoisingGrid, DenoisingMetric, DenoisingReport


def _batches() -> list[list[dict]]:
    torch.manual_seed(0)
    batches = []
    for sigma in (0.05, 0.1):
        batch = []
        for case in ("a", "b"):
            clean = torch.rand(1, 24, 24, 3)
            noisy = clean + sigma * torch.randn_like(clean)
            pred = clean + 0.5 * sigma * torch.randn_like(clean)  # halves the noise
            batch.append({"image": noisy, "pred": pred, "label": clean, "case_id": case, "noise_sigma": sigma})
        batches.append(batch)
    return batches


def test_report_metric_and_grid(tmp_path: Path) -> None:
    engine = Engine(lambda e, b: b)
    report = DenoisingReport(str(tmp_path / "metrics"))
    report.attach(engine)
    DenoisingGrid(str(tmp_path), "grid.png", cases_per_level=1).attach(engine)
    DenoisingMetric("psnr").attach(engine, "psnr")
    batches = _batches()
    engine.run(batches, max_epochs=1)

    metrics = json.loads((tmp_path / "metrics" / "metrics.json").read_text(encoding="utf-8"))
    assert sorted(metrics["by_noise_sigma"]) == ["0.05", "0.1"]
    first = batches[0][0]
    expected = denoising_metrics(first["pred"], first["label"])["psnr"] - denoising_metrics(first["image"], first["label"])["psnr"]
    assert metrics["cases"][0]["psnr_gain"] == pytest.approx(expected)
    assert expected == pytest.approx(20 * torch.log10(torch.tensor(2.0)).item(), abs=0.5)  # half the noise: +6 dB
    assert metrics["by_noise_sigma"]["0.1"]["n_cases"] == 2
    assert engine.state.metrics["psnr_gain_sigma0.05"] == metrics["by_noise_sigma"]["0.05"]["psnr_gain"]["mean"]
    assert engine.state.metrics["psnr"] == pytest.approx(metrics["summary"]["psnr"]["mean"])
    assert (tmp_path / "metrics" / "per_case.csv").read_text(encoding="utf-8").count("\n") == 5
    assert (tmp_path / "grid.png").stat().st_size > 5_000
