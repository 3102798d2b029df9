"""Smoke run of the U-Net bundle on a few real Sunnybrook patients: train (and resume), evaluate, predict, and the
same bundle through ``python -m monai.bundle run --tracking mlflow``."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from pipelines import api
from pipelines.errors import OutputExistsError, PipelineError

BUNDLE = "lv_segmentation_unet"
BUNDLE_DIR = api.BUNDLES_DIR / BUNDLE
FAST = {"batch_size": 8}


def _client(run_dir: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri="sqlite:///" + (run_dir / "mlruns.db").resolve().as_posix())


def _runs(run_dir: Path) -> list:
    client = _client(run_dir)
    experiment = client.get_experiment_by_name(BUNDLE)
    assert experiment is not None, "no MLflow experiment named after the bundle"
    return client.search_runs([experiment.experiment_id])


def _artifacts(client: mlflow.MlflowClient, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id)}


@pytest.fixture(scope="module")
def trained(sunnybrook_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("train")
    summary = api.train(BUNDLE, sunnybrook_dir, run_dir, epochs=1, max_cases=3, overrides=FAST)
    return run_dir, summary


def test_train_writes_checkpoints_figures_and_summary(trained: tuple[Path, dict]) -> None:
    run_dir, summary = trained
    assert summary["epochs"] == 1 and summary["best_epoch"] == 1
    assert 0.0 <= summary["best_val_dice"] <= 1.0
    assert summary["images_per_s"] > 0
    model = torch.load(run_dir / "models" / "model.pt", weights_only=True)
    assert "network.model.0.conv.unit0.conv.weight" in model  # a bare state dict, as in the model zoo
    resume = torch.load(run_dir / "models" / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "lr_scheduler", "trainer", "validation"} <= resume.keys()
    assert resume["trainer"]["iteration"] == resume["trainer"]["epoch_length"]  # one full epoch
    for name in ("curves.png", "history.csv", "validation_overlay.png"):
        assert (run_dir / "figures" / name).stat().st_size > 1000 or name.endswith(".csv")
    assert json.loads((run_dir / "train_summary.json").read_text(encoding="utf-8"))["epochs"] == 1


def test_train_logs_params_metrics_and_artifacts_to_mlflow(trained: tuple[Path, dict]) -> None:
    run_dir, _ = trained
    runs = _runs(run_dir)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["network"] == "ScaledNetwork(x2, UNet)"
    assert run.data.params["split"] == "seed"
    assert int(run.data.params["train_cases"]) == 3
    client = _client(run_dir)
    for metric in ("train_loss", "val_mean_dice", "images_per_s"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert history, f"{metric} not logged"
    artifacts = _artifacts(client, run.info.run_id)
    assert {"curves.png", "validation_overlay.png", "model.pt"} <= artifacts
    assert any(a.startswith("config_") and a.endswith(".json") for a in artifacts)


def test_resume_after_a_crash_continues_the_run(
    sunnybrook_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.handlers.throughput import Throughput

    run_dir = tmp_path / "run"
    original = Throughput._epoch_started

    def crash_in_epoch_two(self: Throughput, engine) -> None:  # noqa: ANN001
        if engine.state.epoch == 2:
            raise RuntimeError("simulated crash")
        original(self, engine)

    monkeypatch.setattr(Throughput, "_epoch_started", crash_in_epoch_two)
    with pytest.raises(RuntimeError):
        api.train(BUNDLE, sunnybrook_dir, run_dir, epochs=2, max_cases=2, overrides=FAST)
    monkeypatch.setattr(Throughput, "_epoch_started", original)
    assert torch.load(run_dir / "models" / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] > 0
    (crashed,) = _runs(run_dir)
    assert crashed.info.status == "FAILED"  # not RUNNING for ever
    assert crashed.data.tags["pipelines.end_reason"].startswith("RuntimeError")

    with pytest.raises(OutputExistsError):  # a new run would overwrite the crashed run's checkpoint
        api.train(BUNDLE, sunnybrook_dir, run_dir, epochs=2, max_cases=2, overrides=FAST)
    with pytest.raises(PipelineError, match="planned for 2 epochs"):
        api.train(BUNDLE, sunnybrook_dir, run_dir, epochs=3, max_cases=2, resume=True, overrides=FAST)
    summary = api.train(BUNDLE, sunnybrook_dir, run_dir, max_cases=2, resume=True, overrides=FAST)
    assert summary["epochs"] == 2
    with open(run_dir / "figures" / "history.csv", encoding="utf-8") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == [1, 2]
    (resumed,) = _runs(run_dir)  # the same run, continued and finished
    assert resumed.info.run_id == crashed.info.run_id and resumed.info.status == "FINISHED"


def test_evaluate_reports_per_patient_dice_and_hd95(trained: tuple[Path, dict], sunnybrook_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    metrics = api.evaluate(BUNDLE, sunnybrook_dir, trained[0] / "models" / "model.pt", out, max_cases=3)
    datalist = json.loads((sunnybrook_dir / "datalist.json").read_text(encoding="utf-8"))
    expected = datalist["splits"]["seed"]["test"][:3]
    assert [c["case_id"] for c in metrics["cases"]] == expected
    assert metrics["summary"]["n_cases"] == 3
    with open(out / "metrics" / "per_case.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["case_id"] for r in rows] == expected
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    runs = _runs(out)
    assert len(runs) == 1 and "mean_dice" in runs[0].data.metrics
    assert {"per_case.csv", "metrics.json"} <= _artifacts(_client(out), runs[0].info.run_id)


def _rotated_copy(source: Path, target: Path) -> Path:
    """The same voxels under an oblique, translated affine with other spacings: geometry must survive prediction."""
    image = nib.load(source)
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([2.5, 2.5, 9.0])
    affine[:3, 3] = [-40.0, 12.5, 7.0]
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), target)
    return target


def test_predict_keeps_the_input_geometry(trained: tuple[Path, dict], sunnybrook_dir: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(sunnybrook_dir / "images" / "scd_044.nii.gz", inputs / "plain.nii.gz")
    _rotated_copy(sunnybrook_dir / "images" / "scd_043.nii.gz", inputs / "oblique.nii.gz")
    out = tmp_path / "pred"
    checkpoint = trained[0] / "models" / "model.pt"
    report = api.predict(BUNDLE, inputs, out, checkpoint=checkpoint, probabilities=True)
    assert report.ok and len(report.written) == 4
    for name in ("plain", "oblique"):
        source = nib.load(inputs / f"{name}.nii.gz")
        seg = nib.load(out / f"{name}_seg.nii.gz")
        assert seg.shape == source.shape
        np.testing.assert_array_equal(seg.affine, source.affine)
        assert seg.get_data_dtype() == np.uint8
        assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1}
        prob = np.asarray(nib.load(out / f"{name}_prob.nii.gz").dataobj)
        assert prob.dtype == np.float32 and prob.min() >= 0 and prob.max() <= 1
        a, b = sitk.ReadImage(str(inputs / f"{name}.nii.gz")), sitk.ReadImage(str(out / f"{name}_seg.nii.gz"))
        assert a.GetSize() == b.GetSize()
        np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-5)
        np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-5)
        np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)

    before = (out / "plain_seg.nii.gz").read_bytes()
    again = api.predict(BUNDLE, inputs / "plain.nii.gz", out, checkpoint=checkpoint)
    assert not again.ok and "exists" in next(iter(again.failed.values()))
    assert (out / "plain_seg.nii.gz").read_bytes() == before
    assert api.predict(BUNDLE, inputs / "plain.nii.gz", out, checkpoint=checkpoint, overwrite=True).ok
    assert not list(out.glob(".*tmp*")), "temporary files left behind"


def test_monai_bundle_run_with_mlflow_tracking(sunnybrook_dir: Path, tmp_path: Path, monai_bundle_run) -> None:
    """The model-zoo way: ``python -m monai.bundle run ... --tracking mlflow`` with the standard ids."""
    out = tmp_path / "bundle_run"
    result = monai_bundle_run(BUNDLE_DIR, sunnybrook_dir, out, "--num_epochs", "1", "--max_cases", "2", "--batch_size", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "models" / "model.pt").is_file()
    runs = _runs(out)
    assert runs and "val_mean_dice" in runs[0].data.metrics


def test_metadata_has_the_model_zoo_keys() -> None:
    meta = json.loads((BUNDLE_DIR / "configs" / "metadata.json").read_text(encoding="utf-8"))
    for key in ("version", "changelog", "monai_version", "pytorch_version", "numpy_version", "task", "description",
                "authors", "copyright", "network_data_format", "eval_metrics", "intended_use", "data_source"):
        assert key in meta, key
    assert meta["version"] in meta["changelog"]
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 1 and image["spatial_shape"] == [64, 64]
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 2
    assert 0 < meta["eval_metrics"]["mean_dice"] <= 1
    for name in ("train.json", "evaluate.json", "inference.json", "multi_gpu_train.json", "logging.conf"):
        assert (BUNDLE_DIR / "configs" / name).is_file(), name
    assert (BUNDLE_DIR / "LICENSE").is_file() and (BUNDLE_DIR / "docs" / "README.md").is_file()


def test_multi_gpu_config_trains_with_torchrun_and_gloo(sunnybrook_dir: Path, tmp_path: Path) -> None:
    """``multi_gpu_train.json`` on 2 CPU processes (Gloo); the saved model loads without the DDP wrapper."""
    out = tmp_path / "ddp"
    configs = [str(BUNDLE_DIR / "configs" / n) for n in ("train.json", "multi_gpu_train.json")]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "monai.bundle", "run", "--config_file", repr(configs),
        "--bundle_root", str(BUNDLE_DIR), "--dataset_dir", str(sunnybrook_dir), "--output_dir", str(out),
        "--num_epochs", "1", "--max_cases", "4", "--batch_size", "8",
    ]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(out / "models" / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    assert (out / "figures" / "curves.png").is_file()


def test_shipped_weights_reproduce_the_published_metrics(sunnybrook_dir: Path, tmp_path: Path) -> None:
    """``models/model.pt`` evaluated on the seed split's 6 test patients gives metadata.json's ``eval_metrics``."""
    meta = json.loads((BUNDLE_DIR / "configs" / "metadata.json").read_text(encoding="utf-8"))
    metrics = api.evaluate(BUNDLE, sunnybrook_dir, BUNDLE_DIR / "models" / "model.pt", tmp_path / "eval")
    assert metrics["summary"]["n_cases"] == 6
    assert metrics["summary"]["dice"]["mean"] == pytest.approx(meta["eval_metrics"]["mean_dice"], abs=1e-3)
    # the seed notebook's U-Net re-run here: 0.79-0.80 pooled, 0.75-0.77 per slice, on the same 6 patients;
    # the foundation issue's bar is 0.83
    assert metrics["summary"]["dice"]["mean"] >= 0.83
