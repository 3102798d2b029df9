"""The benchmark scripts run end to end in their quick modes and print their JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_segmentation_benchmark_quick(sunnybrook_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "segmentation.py"), "--data", str(sunnybrook_dir),
               "--output", str(tmp_path), "--quick", "--splits", "seed,0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    rows, summary = lines[:-1], lines[-1]["summary"]
    assert [r["split"] for r in rows] == ["seed", "0"]
    assert all(0 <= r["dice_mean"] <= 1 and r["train_images_per_s"] > 0 for r in rows)
    assert summary["seed_test_dice"] == rows[0]["dice_mean"]
    assert (tmp_path / "results.md").read_text(encoding="utf-8").startswith("| split |")

    # a second call reuses the finished runs and keeps their measured throughput
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = [json.loads(line) for line in again.stdout.splitlines() if line.startswith("{")][:-1]
    assert [r["train_images_per_s"] for r in rerun] == [r["train_images_per_s"] for r in rows]


def test_occlusion_benchmark_quick(sunnybrook_dir: Path) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "occlusion.py"), "--data", str(sunnybrook_dir), "--quick",
               "--repeats", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            lines.setdefault(record["what"], []).append(record)
    assert {"setup", "cost", "per_patient", "scaling", "sanity_summary"} <= lines.keys()
    cost = lines["cost"][0]
    assert cost["forward_passes_per_slice"] == 226
    assert cost["pipelines_s_per_slice"] > 0 and cost["monai_s_per_slice"] > 0
