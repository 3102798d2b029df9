"""Pieces of ``benchmarks/cardiac_function.py`` that a quick test can check (the benchmark itself needs the shipped
weights and runs ~45 s on 2 cores: its figures are in the bundle README)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.measure.labels import LabelMap


@pytest.fixture(scope="module")
def benchmark(load_benchmark):
    return load_benchmark("cardiac_function")


def _labels(voxels: np.ndarray) -> LabelMap:
    return LabelMap(Path("phantom.nii.gz"), voxels.astype(np.uint8), (1.5, 2.0, 10.0), np.eye(4))


def test_rv_on_slices_without_expert_rv_is_counted_in_ml(benchmark) -> None:
    """Expert RV on slices 1-2 only; predicted RV on slices 0-2: only slice 0's 12 voxels count (0.03 mL each)."""
    ref = np.zeros((6, 6, 3))
    ref[1:3, 1:4, 1:] = 1
    pred = np.zeros((6, 6, 3))
    pred[0:3, 0:4, :] = 1
    pred[5, 5, 0] = 3  # LV cavity: not RV
    volume = benchmark.rv_off_expert_slices(_labels(pred), _labels(ref))
    assert volume == pytest.approx(12 * 1.5 * 2.0 * 10.0 / 1000.0)
    assert benchmark.rv_off_expert_slices(_labels(ref), _labels(ref)) == 0.0


def test_summary_reports_agreement_with_and_without_the_basal_rule(benchmark) -> None:
    """Four patients, the rule trimming two: the untrimmed agreement is computed from the untrimmed measures."""
    rows = []
    for i in range(4):
        row = {"group": "NOR", "pred_qc_flags": "", "uncertainty": 0.1 * i, "myo_dice": 0.9, "lvef_abs_error": 1.0,
               "es_rv_ml_off_expert_slices": 0.0, "rv_basal_trimmed_ml": 4.0 if i < 2 else 0.0}
        for frame in ("ed", "es"):
            row[f"{frame}_uncertainty"] = 0.1 * i
            for name in benchmark.CLASSES.values():
                row[f"{frame}_dice_{name}"], row[f"{frame}_hd95_mm_{name}"] = 0.9, 2.0
        for key in benchmark.MEASURES:
            row[f"ref_{key}"] = 50.0 + i
            row[f"pred_{key}"] = 51.0 + i  # +1 with the rule
            row[f"pred_untrimmed_{key}"] = 47.0 + i  # -3 without it
        rows.append(row)
    summary = benchmark.summarise(rows)
    assert summary["agreement"]["rv_ef_pct"]["bias"] == pytest.approx(1.0)
    assert summary["agreement_untrimmed"]["rv_ef_pct"]["bias"] == pytest.approx(-3.0)
    assert summary["agreement_untrimmed"]["rv_ef_pct"]["mae"] == pytest.approx(3.0)
    assert summary["basal_rv_trimmed"] == {"patients": 2, "mean_ml": pytest.approx(2.0)}
