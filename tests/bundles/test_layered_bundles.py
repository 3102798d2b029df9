"""The SegNet and course-baseline bundles reuse the U-Net bundle's graph (``base_bundle``): config layering, a smoke
run of each on real Sunnybrook patients, the model-zoo command line with the layered file list, and (SegNet) the
shipped weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from pipelines import api
from pipelines.errors import InputError
from pipelines.networks import SegNet, StridedEncoderDecoder

BASE = api.BUNDLES_DIR / "lv_segmentation_unet"
LAYERED = {"lv_segmentation_segnet": SegNet, "lv_segmentation_baseline": StridedEncoderDecoder}


@pytest.mark.parametrize("bundle", sorted(LAYERED))
def test_configs_are_layered_over_the_base_bundle(bundle: str) -> None:
    own = api.BUNDLES_DIR / bundle / "configs"
    assert api.config_files(api.BUNDLES_DIR / bundle, ["train.json", "evaluate.json"]) == [
        str(BASE / "configs" / "train.json"), str(own / "train.json"), str(BASE / "configs" / "evaluate.json"),
    ]
    meta = json.loads((own / "metadata.json").read_text(encoding="utf-8"))
    assert meta["base_bundle"] == "lv_segmentation_unet" and meta["version"] in meta["changelog"]
    assert (api.BUNDLES_DIR / bundle / "LICENSE").is_file()
    assert (api.BUNDLES_DIR / bundle / "docs" / "README.md").is_file()


def test_a_config_missing_from_bundle_and_base_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such config"):
        api.config_files(api.BUNDLES_DIR / "lv_segmentation_segnet", ["nonexistent.json"])


@pytest.mark.parametrize("bundle", sorted(LAYERED))
def test_smoke_train_and_evaluate(bundle: str, sunnybrook_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    summary = api.train(bundle, sunnybrook_dir, run_dir, epochs=1, max_cases=2, overrides={"batch_size": 8})
    assert summary["epochs"] == 1 and 0 <= summary["best_val_dice"] <= 1
    executed = json.loads(next(run_dir.glob("config_*.json")).read_text(encoding="utf-8"))
    assert executed["network_def"]["_target_"].endswith(LAYERED[bundle].__name__)
    assert executed["experiment_name"] == bundle
    metrics = api.evaluate(bundle, sunnybrook_dir, run_dir / "models" / "model.pt", run_dir / "eval", max_cases=2)
    assert metrics["summary"]["n_cases"] == 2 and (run_dir / "eval" / "metrics" / "per_case.csv").is_file()


def test_baseline_trains_with_dice_loss_and_no_augmentation(sunnybrook_dir: Path, tmp_path: Path) -> None:
    from monai.bundle import ConfigWorkflow

    files = api.config_files(api.BUNDLES_DIR / "lv_segmentation_baseline", ["train.json"])
    workflow = ConfigWorkflow(config_file=files, workflow_type=None, logging_file=False,
                              bundle_root=str(api.BUNDLES_DIR / "lv_segmentation_baseline"),
                              dataset_dir=str(sunnybrook_dir), output_dir=str(tmp_path))
    parser = workflow.parser
    assert type(parser.get_parsed_content("loss")).__name__ == "DiceLoss"
    assert parser.get_parsed_content("train#augmentation") == []
    assert sum(p.numel() for p in parser.get_parsed_content("network_def").parameters()) < 10_000


def test_monai_bundle_run_with_the_layered_file_list(sunnybrook_dir: Path, tmp_path: Path) -> None:
    """The model-zoo command line takes the base bundle's train.json, then the SegNet bundle's."""
    bundle_dir = api.BUNDLES_DIR / "lv_segmentation_segnet"
    configs = [str(BASE / "configs" / "train.json"), str(bundle_dir / "configs" / "train.json")]
    out = tmp_path / "run"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", repr(configs),
               "--bundle_root", str(bundle_dir), "--dataset_dir", str(sunnybrook_dir), "--output_dir", str(out),
               "--num_epochs", "1", "--max_cases", "2", "--batch_size", "8"]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    SegNet(**_segnet_args()).load_state_dict(torch.load(out / "models" / "model.pt", weights_only=True))


def _segnet_args() -> dict:
    network = json.loads((api.BUNDLES_DIR / "lv_segmentation_segnet" / "configs" / "train.json")
                         .read_text(encoding="utf-8"))["network_def"]
    return {k: v for k, v in network.items() if k != "_target_"}


def test_segnet_shipped_weights_predict_with_the_input_geometry(sunnybrook_dir: Path, tmp_path: Path) -> None:
    bundle_dir = api.BUNDLES_DIR / "lv_segmentation_segnet"
    if not (bundle_dir / "models" / "model.pt").is_file():
        pytest.fail("lv_segmentation_segnet ships no models/model.pt")
    source = sunnybrook_dir / "images" / "scd_044.nii.gz"
    report = api.predict("lv_segmentation_segnet", source, tmp_path)
    assert report.ok
    seg, image = nib.load(tmp_path / "scd_044_seg.nii.gz"), nib.load(source)
    assert seg.shape == image.shape
    np.testing.assert_array_equal(seg.affine, image.affine)
    label = np.asarray(nib.load(sunnybrook_dir / "labels" / "scd_044.nii.gz").dataobj) > 0
    pred = np.asarray(seg.dataobj) > 0
    assert 2 * (pred & label).sum() / (pred.sum() + label.sum()) > 0.7  # a trained model, not noise


def test_segnet_shipped_weights_reproduce_the_published_metrics(sunnybrook_dir: Path, tmp_path: Path) -> None:
    meta = json.loads((api.BUNDLES_DIR / "lv_segmentation_segnet" / "configs" / "metadata.json")
                      .read_text(encoding="utf-8"))
    weights = api.BUNDLES_DIR / "lv_segmentation_segnet" / "models" / "model.pt"
    metrics = api.evaluate("lv_segmentation_segnet", sunnybrook_dir, weights, tmp_path / "eval")
    assert metrics["summary"]["n_cases"] == 6
    assert metrics["summary"]["dice"]["mean"] == pytest.approx(meta["eval_metrics"]["mean_dice"], abs=1e-3)
