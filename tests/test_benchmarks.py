"""The benchmark scripts run end to end in their quick modes and print their JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _benchmark(sunnybrook_dir: Path, output: Path, *options: str) -> tuple[list[dict], dict]:
    command = [sys.executable, str(REPO / "benchmarks" / "segmentation.py"), "--data", str(sunnybrook_dir),
               "--output", str(output), "--quick", *options]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return lines[:-1], lines[-1]["summary"]


def test_segmentation_benchmark_quick(sunnybrook_dir: Path, tmp_path: Path) -> None:
    options = ("--splits", "seed,0", "--rows", "U-Net,course baseline")  # SegNet: tests/bundles smoke-trains it
    rows, summary = _benchmark(sunnybrook_dir, tmp_path / "a", *options)
    assert [(r["variant"], r["split"]) for r in rows] == [
        (v, s) for v in ("U-Net", "course baseline") for s in ("seed", "0")
    ]
    assert all(0 <= r["dice_mean"] <= 1 and r["train_images_per_s"] > 0 and r["inference_s_per_patient"] > 0
               for r in rows)
    assert summary["U-Net"]["seed_dice"] == rows[0]["dice_mean"]
    assert summary["course baseline"]["parameters"] < 10_000 < summary["U-Net"]["parameters"]
    assert set(summary["U-Net"]["cv_dice_by_group"]) <= {"normal", "hypertrophy", "heart failure A",
                                                         "heart failure B"}
    table = (tmp_path / "a" / "results.md").read_text(encoding="utf-8")
    assert table.startswith("| variant |") and "| course baseline |" in table and "per diagnostic group" in table

    # a second call reuses the finished runs and keeps their measured timings
    again, _ = _benchmark(sunnybrook_dir, tmp_path / "a", *options)
    assert [r["train_wall_s"] for r in again] == [r["train_wall_s"] for r in rows]

    # deterministic: a fresh run of the same variant and split scores the same
    fresh, _ = _benchmark(sunnybrook_dir, tmp_path / "b", "--splits", "seed", "--rows", "U-Net")
    assert fresh[0]["dice_mean"] == rows[0]["dice_mean"]
    assert fresh[0]["best_val_dice"] == rows[0]["best_val_dice"]


def test_segmentation_benchmark_refuses_a_folder_of_another_variant(sunnybrook_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "u-net_seed"
    run_dir.mkdir()
    (run_dir / "variant.json").write_text(json.dumps({"variant": {"name": "U-Net", "bundle": "lv_segmentation_unet",
                                                                   "overrides": {"batch_size": 4}}}))
    command = [sys.executable, str(REPO / "benchmarks" / "segmentation.py"), "--data", str(sunnybrook_dir),
               "--output", str(tmp_path), "--quick", "--splits", "seed", "--rows", "U-Net"]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=600)
    assert result.returncode != 0
    assert "made for another variant definition" in result.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == ["variant.json"]


def test_occlusion_benchmark_quick(sunnybrook_dir: Path) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "occlusion.py"), "--data", str(sunnybrook_dir), "--quick",
               "--repeats", "1"]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=600)
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


def test_mr_to_ct_benchmark_quick(brain_mr_ct_dir: Path, tmp_path: Path) -> None:
    """Identity baseline, paired model and CycleGAN on the test patients; finished runs are reused, not retrained."""
    import nibabel as nib
    import numpy as np

    command = [sys.executable, str(REPO / "benchmarks" / "mr_to_ct.py"), "--data", str(brain_mr_ct_dir),
               "--output", str(tmp_path), "--quick"]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["row"]: r for r in json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["rows"]}
    blurs = ["ct_blur (sigma 1 px)", "ct_blur (sigma 1.5 px)", "ct_blur (sigma 2 px)"]
    assert list(rows) == ["identity", *blurs, "ct_half (real CT at half resolution)", "paired", "cyclegan"]
    # the half-resolution round trip of a perfect prediction loses little: far better than the MR, short of perfect
    half = rows["ct_half (real CT at half resolution)"]
    assert 0 < half["mae"]["mean"] < rows["identity"]["mae"]["mean"] / 4 and half["ssim"]["mean"] < 1
    # the more the real CT is smoothed, the lower its SSIM and the higher its MAE; even sigma 2 beats the MR
    ssim = [rows[b]["ssim"]["mean"] for b in blurs]
    mae = [rows[b]["mae"]["mean"] for b in blurs]
    assert ssim == sorted(ssim, reverse=True) and mae == sorted(mae)
    assert ssim[-1] > rows["identity"]["ssim"]["mean"]
    # the identity row is the MR's display values scored as CT, inside the mask
    case = next(iter(rows["identity"]["mae_by_case"]))
    mr, ct, mask = (np.asarray(nib.load(brain_mr_ct_dir / sub / f"{case}.nii.gz").dataobj, dtype=float)
                    for sub in ("images/t1", "images/ct", "masks"))
    assert rows["identity"]["mae_by_case"][case] == pytest.approx(np.abs(mr - ct)[mask > 0].mean(), rel=1e-5)
    for name in ("paired", "cyclegan"):
        assert 0 < rows[name]["mae"]["mean"] < 255 and rows[name]["inference_s_per_patient"] > 0
    table = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "| cyclegan |" in table
    # the data's CT window harmonisation is part of the record; the quick test patient's CT was not moved
    assert "CT window harmonisation: on (level shifts: brain_06 -43, brain_07 -41, brain_09 -40)" in table
    assert "scored against a moved CT level: none." in table
    assert "CT slices registered onto the T1 (2D affine, nearest neighbour): no." in table
    stamp = json.loads((tmp_path / "mr_to_ct_paired" / "benchmark.json").read_text(encoding="utf-8"))
    assert stamp["ct_shifts"] == {"brain_06": -43, "brain_07": -41, "brain_09": -40} and not stamp["ct_registered"]

    again = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = {r["row"]: r for r in json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["rows"]}
    assert rerun["cyclegan"]["train_time_s"] == rows["cyclegan"]["train_time_s"]
    assert rerun["cyclegan"]["mae"] == rows["cyclegan"]["mae"]

    # a second seed: seed 0's run is reused, and the spread over seeds gets its own row
    seeds = subprocess.run(command + ["--rows", "cyclegan", "--seeds", "0,1"], capture_output=True, encoding="utf-8",
                           errors="replace", timeout=900)
    assert seeds.returncode == 0, seeds.stderr[-3000:]
    by_seed = {r["row"]: r for r in json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["rows"]}
    assert list(by_seed) == ["cyclegan", "cyclegan seed 1", "cyclegan over seeds"]
    assert by_seed["cyclegan"]["mae"] == rows["cyclegan"]["mae"]
    maes = [by_seed[r]["mae"]["mean"] for r in ("cyclegan", "cyclegan seed 1")]
    assert by_seed["cyclegan over seeds"]["mae"]["mean"] == pytest.approx(np.mean(maes))
    assert by_seed["cyclegan over seeds"]["mae"]["std"] == pytest.approx(np.std(maes))

    # the quick runs are never passed off as a full run
    full = subprocess.run(command[:-1] + ["--rows", "paired"], capture_output=True, encoding="utf-8", errors="replace", timeout=900)
    assert full.returncode != 0 and "made for another definition" in full.stderr


@pytest.mark.parametrize("value", ["0", "-1", "2,wide"])
def test_mr_to_ct_benchmark_refuses_a_blur_sigma_that_is_not_positive(value: str, tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "mr_to_ct.py"), "--data", str(tmp_path),
               "--output", str(tmp_path / "out"), "--rows", "ct_blur", "--blur-sigma", value]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("--blur-sigma: ")
    assert not (tmp_path / "out").exists()


def test_rows_split_at_commas_but_keep_names_that_hold_commas(load_benchmark) -> None:
    module = load_benchmark("segmentation")
    ablations = REPO / "benchmarks" / "segmentation_ablations.json"
    picked = module.load_variants(ablations, "U-Net, no test-time flips,U-Net 0.2.0 recipe (seed 1)")
    assert [v["name"] for v in picked] == ["U-Net, no test-time flips", "U-Net 0.2.0 recipe (seed 1)"]  # file order
    known = ["U-Net", "U-Net, no TTA", "SegNet"]
    assert module.parse_rows("U-Net, no TTA,SegNet", known) == ["U-Net, no TTA", "SegNet"]
    assert module.parse_rows("U-Net,SegNet", known) == ["U-Net", "SegNet"]
    with pytest.raises(SystemExit, match="no variant named"):
        module.load_variants(ablations, "U-Net, no such row")


def test_segmentation_benchmark_folds_are_children_of_a_parent_run(
    sunnybrook_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_benchmark
) -> None:
    """The variant's parent run holds the summary metrics; its split's training and evaluation are its children."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    module = load_benchmark("segmentation")
    variant = {"name": "U-Net", "bundle": "lv_segmentation_unet", "overrides": {"batch_size": 8}}
    uri = "sqlite:///" + (tmp_path / "mlruns.db").as_posix()
    parents = module.start_parent_runs(uri, [variant], ["1"])
    row = module.run_split(variant, sunnybrook_dir, tmp_path / "out", "1", 1, 2, uri, parents["U-Net"])
    module.finish_parent_runs(uri, parents, module.summarise([row]))

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("lv_segmentation_unet")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    parent = runs["U-Net cross-validation"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["cv_dice_mean"] == row["dice_mean"]
    children = {name for name, r in runs.items() if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert children == {"lv_segmentation_unet train fold 1", "lv_segmentation_unet evaluate test fold 1"}
