"""Smoke run of the denoising autoencoder bundle on a few real Sunnybrook patients: train one tiny epoch (MLflow
run written), evaluate at the fixed noise levels, predict with the input's geometry, and the shipped weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from pipelines import api
from pipelines.data import split_items
from pipelines.evaluation.denoising import denoising_metrics
from pipelines.networks.transfer import encoder_keys, load_encoder
from pipelines.transforms.rician import RicianNoised

BUNDLE = "mr_denoising_ae"
BUNDLE_DIR = api.BUNDLES_DIR / BUNDLE
FAST = {"batch_size": 8}
LEVELS = ["0.05", "0.1", "0.15"]


def _client(run_dir: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri="sqlite:///" + (run_dir / "mlruns.db").resolve().as_posix())


@pytest.fixture(scope="module")
def trained(sunnybrook_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("train_denoise")
    summary = api.train(BUNDLE, sunnybrook_dir, run_dir, epochs=1, max_cases=3, overrides=FAST)
    return run_dir, summary


def test_train_writes_checkpoints_figures_and_an_mlflow_run(trained: tuple[Path, dict]) -> None:
    run_dir, summary = trained
    assert summary["epochs"] == 1 and summary["best_epoch"] == 1
    assert 5 < summary["best_val_psnr"] < 60
    model = torch.load(run_dir / "models" / "model.pt", weights_only=True)
    assert "network.model.0.conv.unit0.conv.weight" in model
    assert {"model", "optimizer", "lr_scheduler", "trainer", "validation"} <= torch.load(
        run_dir / "models" / "checkpoint.pt", weights_only=True).keys()
    assert (run_dir / "figures" / "validation_grid.png").stat().st_size > 10_000
    client = _client(run_dir)
    runs = client.search_runs([client.get_experiment_by_name(BUNDLE).experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["network"] == "ScaledNetwork(x2, UNet)"
    assert int(runs[0].data.params["train_cases"]) == 3
    for metric in ("train_loss", "val_psnr", "val_ssim"):
        assert client.get_metric_history(runs[0].info.run_id, metric), metric
    assert {"validation_grid.png", "curves.png", "model.pt"} <= {a.path for a in client.list_artifacts(runs[0].info.run_id)}


def test_evaluate_writes_metrics_per_noise_level(trained: tuple[Path, dict], sunnybrook_dir: Path, tmp_path: Path) -> None:
    metrics = api.evaluate(BUNDLE, sunnybrook_dir, trained[0] / "models" / "model.pt", tmp_path / "eval", max_cases=2)
    test_ids = json.loads((sunnybrook_dir / "datalist.json").read_text(encoding="utf-8"))["splits"]["seed"]["test"][:2]
    assert sorted(metrics["by_noise_sigma"]) == LEVELS
    assert [(c["case_id"], c["noise_sigma"]) for c in metrics["cases"]] == [
        (case, float(level)) for level in LEVELS for case in test_ids]
    noisy = [metrics["by_noise_sigma"][level]["noisy_psnr"]["mean"] for level in LEVELS]
    assert noisy[0] > noisy[1] > noisy[2]  # more noise, lower PSNR of the input
    for level in LEVELS:
        summary = metrics["by_noise_sigma"][level]
        assert summary["n_cases"] == 2
        assert summary["psnr_gain"]["mean"] == pytest.approx(summary["psnr"]["mean"] - summary["noisy_psnr"]["mean"])

    # the noisy input is the seeded Rician noise of the case and level, recomputed here independently
    item = split_items(sunnybrook_dir / "datalist.json", "seed", "test", 1, path_fields=["image"])[0]
    parser = ConfigParser()
    parser.read_config(str(BUNDLE_DIR / "configs" / "train.json"))
    clean = parser.get_parsed_content("intensity")({"image": torch.as_tensor(nib.load(item["image"]).get_fdata())[None]})
    noisy_volume = RicianNoised("image", sigma_key="noise_sigma")({**clean, "case_id": item["case_id"], "noise_sigma": 0.1})
    expected = denoising_metrics(noisy_volume["image"], clean["image"])["psnr"]
    assert metrics["cases"][2]["noisy_psnr"] == pytest.approx(expected, abs=1e-4)
    assert (tmp_path / "eval" / "metrics" / "per_case.csv").is_file()
    assert (tmp_path / "eval" / "figures" / "evaluation_grid.png").is_file()


def test_predict_keeps_the_input_geometry(trained: tuple[Path, dict], sunnybrook_dir: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    source = sunnybrook_dir / "images" / "scd_044.nii.gz"
    image = nib.load(source)
    affine = np.diag([2.5, 2.5, 9.0, 1.0])
    affine[:3, 3] = [-40.0, 12.5, 7.0]
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), inputs / "shifted.nii.gz")
    shutil.copy(source, inputs / "plain.nii.gz")
    out = tmp_path / "pred"
    checkpoint = trained[0] / "models" / "model.pt"
    report = api.predict(BUNDLE, inputs, out, checkpoint=checkpoint)
    assert report.ok and len(report.written) == 2
    for name in ("plain", "shifted"):
        reference = nib.load(inputs / f"{name}.nii.gz")
        denoised = nib.load(out / f"{name}_denoised.nii.gz")
        assert denoised.shape == reference.shape
        np.testing.assert_array_equal(denoised.affine, reference.affine)
        values = np.asarray(denoised.dataobj)
        assert values.dtype == np.float32 and values.min() >= 0 and values.max() <= 1
    again = api.predict(BUNDLE, inputs / "plain.nii.gz", out, checkpoint=checkpoint)
    assert not again.ok and "exists" in next(iter(again.failed.values()))


def test_shipped_weights_reproduce_the_published_metrics(sunnybrook_dir: Path, tmp_path: Path) -> None:
    """``models/model.pt`` on the seed split's 6 test patients gives metadata.json's per-level figures."""
    published = json.loads((BUNDLE_DIR / "configs" / "metadata.json").read_text(encoding="utf-8"))["eval_metrics"]
    metrics = api.evaluate(BUNDLE, sunnybrook_dir, BUNDLE_DIR / "models" / "model.pt", tmp_path / "eval")
    assert metrics["summary"]["n_cases"] == 6 * len(LEVELS)
    for level in LEVELS:
        measured = metrics["by_noise_sigma"][level]
        expected = published["by_noise_sigma"][level]
        assert measured["psnr"]["mean"] == pytest.approx(expected["psnr"], abs=0.01)
        assert measured["ssim"]["mean"] == pytest.approx(expected["ssim"], abs=1e-3)
        assert measured["psnr_gain"]["mean"] > 0 and measured["ssim_gain"]["mean"] > 0


def test_shipped_encoder_initialises_the_segmentation_unet() -> None:
    parser = ConfigParser()
    parser.read_config(str(api.BUNDLES_DIR / "lv_segmentation_unet" / "configs" / "train.json"))
    segmenter = parser.get_parsed_content("network_def")
    keys = encoder_keys(segmenter)
    load_encoder(segmenter, BUNDLE_DIR / "models" / "model.pt")
    shipped = torch.load(BUNDLE_DIR / "models" / "model.pt", weights_only=True)
    assert len(keys) > 20 and all(torch.equal(segmenter.state_dict()[k], shipped[k]) for k in keys)


def test_metadata_and_bundle_files() -> None:
    meta = json.loads((BUNDLE_DIR / "configs" / "metadata.json").read_text(encoding="utf-8"))
    for key in ("version", "changelog", "monai_version", "task", "description", "network_data_format",
                "eval_metrics", "intended_use", "data_source"):
        assert key in meta, key
    assert meta["version"] in meta["changelog"]
    for name in ("train.json", "evaluate.json", "inference.json", "logging.conf", "metadata.json"):
        assert (BUNDLE_DIR / "configs" / name).is_file(), name
    assert (BUNDLE_DIR / "LICENSE").is_file() and (BUNDLE_DIR / "docs" / "README.md").is_file()
    assert (BUNDLE_DIR / "models" / "model.pt").stat().st_size < 8_000_000  # as lv_segmentation_unet: 6.5 MB
