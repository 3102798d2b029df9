"""The quality bar of the U-Net bundle: its default full schedule on the seed split (about 20-30 minutes on 2 CPU
cores, so marked ``slow``; run with ``make test-slow``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import api

pytestmark = pytest.mark.slow


def test_default_schedule_beats_the_seed_notebook_on_its_test_patients(sunnybrook_dir: Path, tmp_path: Path) -> None:
    run = api.train("lv_segmentation_unet", sunnybrook_dir, tmp_path / "run")
    metrics = api.evaluate("lv_segmentation_unet", sunnybrook_dir, tmp_path / "run" / "models" / "model.pt",
                           tmp_path / "eval")
    assert run["epochs"] > 1
    assert metrics["summary"]["n_cases"] == 6
    # the seed notebook's U-Net re-run here: 0.79-0.80 pooled, 0.75-0.77 per slice, on the same 6 patients;
    # this schedule measured 0.840 (README) and the foundation issue's bar is 0.83; a retrain on another machine
    # may differ in the last digits (CPU kernels), not by a Dice point
    assert metrics["summary"]["dice"]["mean"] >= 0.83

