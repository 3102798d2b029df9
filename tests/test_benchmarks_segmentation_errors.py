"""``benchmarks/segmentation_errors.py`` on real Sunnybrook labels: a perfect prediction, a shifted one, and the
refusals (a case predicted twice, a folder without predictions)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipelines.data.datalist import split_items
from pipelines.errors import InputError

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("segmentation_errors", REPO / "benchmarks" / "segmentation_errors.py")
segmentation_errors = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(segmentation_errors)

CASES = ["scd_000", "scd_001", "scd_002"]


def write_predictions(sunnybrook_dir: Path, folder: Path, shift: int = 0) -> None:
    folder.mkdir(parents=True)
    for case in CASES:
        label = nib.load(sunnybrook_dir / "labels" / f"{case}.nii.gz")
        data = np.roll(np.asarray(label.dataobj), shift, axis=0)
        nib.save(nib.Nifti1Image(data, label.affine), folder / f"{case}_seg.nii.gz")


def test_perfect_and_shifted_predictions(sunnybrook_dir: Path, tmp_path: Path) -> None:
    write_predictions(sunnybrook_dir, tmp_path / "exact")
    report = segmentation_errors.collect(sunnybrook_dir, [tmp_path / "exact"])
    depth = sum(nib.load(sunnybrook_dir / "labels" / f"{c}.nii.gz").shape[2] for c in CASES)
    assert report["cases"] == 3 and report["slices"] == depth  # every Sunnybrook slice holds myocardium
    assert report["case_dice"] == 1.0 and report["area_ratio"] == 1.0
    assert all(row["dice"] == 1.0 for thirds in report["strata"].values() for row in thirds.values())
    perturbed = report["reference_perturbations"]
    assert 0.6 < perturbed["dilate_1px"] < 0.85 and perturbed["erode_1px"] < perturbed["dilate_1px"]
    sides = report["error_sides"]
    assert sides["closed_slices"] + sides["open_slices"] == depth and sides["closed_slices"] > 0
    assert sum(v for k, v in sides.items() if k.startswith(("fp_", "fn_"))) == 0

    write_predictions(sunnybrook_dir, tmp_path / "shifted", shift=1)
    shifted = segmentation_errors.collect(sunnybrook_dir, [tmp_path / "shifted"])
    assert shifted["area_ratio"] == 1.0 and 0.5 < shifted["case_dice"] < 0.9
    # a one-pixel shift along one axis scores within the spread of the four directions' mean
    assert abs(shifted["case_dice"] - perturbed["shift_1px"]) < 0.05


def test_refusals_name_the_file(sunnybrook_dir: Path, tmp_path: Path) -> None:
    write_predictions(sunnybrook_dir, tmp_path / "a")
    write_predictions(sunnybrook_dir, tmp_path / "b")
    with pytest.raises(InputError, match="already predicted"):
        segmentation_errors.collect(sunnybrook_dir, [tmp_path / "a", tmp_path / "b"])
    cropped = tmp_path / "a" / "scd_001_seg.nii.gz"
    label = nib.load(cropped)
    nib.save(nib.Nifti1Image(np.asarray(label.dataobj)[:32], label.affine), cropped)
    with pytest.raises(InputError, match="differs from the label"):
        segmentation_errors.collect(sunnybrook_dir, [tmp_path / "a"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no \\*_seg.nii.gz"):
        segmentation_errors.collect(sunnybrook_dir, [tmp_path / "empty"])


def test_command_prints_the_table_and_writes_json(sunnybrook_dir: Path, tmp_path: Path) -> None:
    write_predictions(sunnybrook_dir, tmp_path / "exact")
    command = [sys.executable, str(REPO / "benchmarks" / "segmentation_errors.py"), "--data", str(sunnybrook_dir),
               "--predictions", str(tmp_path / "exact"), "--output", str(tmp_path / "errors.json")]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| ring area | smallest |" in result.stdout and (tmp_path / "errors.json").is_file()
    assert "| false positives | 0.0% | 0.0% | 0.0% | 0.0% |" in result.stdout
    missing = subprocess.run([*command[:5], str(tmp_path / "nowhere")], capture_output=True, encoding="utf-8",
                             errors="replace", timeout=300)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines()[-1].startswith("error: ")


def test_subsets_keep_only_their_cases(sunnybrook_dir: Path, tmp_path: Path) -> None:
    write_predictions(sunnybrook_dir, tmp_path / "exact")
    validation = {item["case_id"] for item in split_items(sunnybrook_dir, "seed", "validation")}
    kept = validation & set(CASES)
    assert kept and kept != set(CASES)  # the three cases straddle the seed split's subsets
    report = segmentation_errors.collect(sunnybrook_dir, [tmp_path / "exact"], validation)
    assert report["cases"] == len(kept)
    with pytest.raises(InputError, match="none of the predicted cases"):
        segmentation_errors.collect(sunnybrook_dir, [tmp_path / "exact"], {"scd_044"})
