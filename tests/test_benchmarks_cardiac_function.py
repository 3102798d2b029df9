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
