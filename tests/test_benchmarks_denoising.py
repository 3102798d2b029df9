"""The denoising benchmark's quick mode: every method at every level, tuned on validation patients, one table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ["noisy input", "Gaussian filter", "non-local means", "denoising autoencoder (mr_denoising_ae)"]


def test_denoising_benchmark_quick(sunnybrook_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "denoising.py"), "--data", str(sunnybrook_dir),
               "--output", str(tmp_path), "--quick"]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    rows, summary = lines[:-1], lines[-1]["summary"]
    assert [(r["noise_sigma"], r["method"]) for r in rows] == [(s, m) for s in (0.05, 0.1, 0.15) for m in METHODS]
    assert all(r["test_cases"] == 2 for r in rows)
    noisy = [r["psnr_mean"] for r in rows if r["method"] == "noisy input"]
    assert noisy[0] > noisy[1] > noisy[2]
    for r in rows:
        assert -1 <= r["ssim_mean"] <= 1
        if r["method"] in ("Gaussian filter", "non-local means"):
            tuning = summary["tuning"][f"{r['method']} sigma {r['noise_sigma']:g}"]
            # the parameter is the one with the best validation PSNR (never chosen on the test patients)
            best = max(tuning["validation_psnr"], key=tuning["validation_psnr"].get)
            assert r["parameter"] == float(best) == tuning["chosen"]
    for r in rows:
        if r["method"].startswith("denoising autoencoder"):
            assert r["psnr_gain"] > 0 and r["ssim_gain"] > 0  # the shipped weights denoise
    table = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert table.startswith("| noise sigma | method |") and table.count("| non-local means |") == 3
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["quick"] is True
