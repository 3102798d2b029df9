"""``benchmarks/segmentation_ensemble.py`` on real Sunnybrook patients with the shipped U-Net weights: an ensemble of
a model with itself scores exactly what the model scores and agrees with itself, and the output folder refuses
other members."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "bundles" / "lv_segmentation_unet" / "models" / "model.pt"


def test_an_ensemble_of_one_model_twice_scores_like_the_model(sunnybrook_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ensemble"
    command = [sys.executable, str(REPO / "benchmarks" / "segmentation_ensemble.py"), "--data", str(sunnybrook_dir),
               "--checkpoints", str(SHIPPED), str(SHIPPED), "--subsets", "test", "--max-cases", "2",
               "--output", str(out)]
    subprocess.run(command, check=True, capture_output=True, text=True, encoding="utf-8", timeout=600)
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    member, _, ensemble = result["rows"]
    assert ensemble["model"] == "ensemble of 2" and ensemble["cases"] == 2
    assert ensemble["dice_mean"] == pytest.approx(member["dice_mean"], abs=1e-6)
    assert member["dice_mean"] > 0.7  # real weights on real patients
    assert len(result["network_def_override"]["members"]) == 2
    assert (out / "ensemble.pt").is_file() and "| ensemble of 2 |" in (out / "results.md").read_text(encoding="utf-8")
    # a model agrees with itself everywhere, and with the reference as its evaluation says
    agreement = result["agreement"]
    assert agreement["patients"] == 2 and agreement["dice_between_members"] == 1.0
    assert agreement["dice_members_to_reference"] == pytest.approx(member["dice_mean"], abs=1e-4)

    # the folder remembers its members: another list (three members) is refused instead of mixed in
    refused = subprocess.run(command[:7] + [str(SHIPPED)] + command[7:], capture_output=True, text=True, encoding="utf-8", timeout=600)
    assert refused.returncode != 0 and "made for other members" in refused.stderr


def test_fewer_than_two_members_is_refused(sunnybrook_dir: Path, tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "segmentation_ensemble.py"), "--data", str(sunnybrook_dir),
         "--checkpoints", str(SHIPPED), "--output", str(tmp_path / "one")], capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert refused.returncode != 0 and "at least two members" in refused.stderr
