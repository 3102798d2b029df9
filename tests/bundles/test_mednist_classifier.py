"""The MedNIST classifier bundle: one tiny epoch on real images, the evaluation report, the shipped weights."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch

from pipelines import api
from pipelines.cli import main

BUNDLE = "mednist_classifier"
TINY = {"block_inplanes": [4, 8, 8, 8], "batch_size": 8}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    torch.set_num_threads(1)


def test_one_tiny_epoch_writes_weights_curves_and_an_mlflow_run(mednist_dir: Path, tmp_path: Path) -> None:
    summary = api.train(BUNDLE, mednist_dir, tmp_path, epochs=1, max_cases=12, overrides=TINY)
    assert summary["epochs"] == 1 and 0 <= summary["best_val_accuracy"] <= 1
    state = torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert state["fc.weight"].shape == (6, 8)
    assert (tmp_path / "figures" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "mlflow_run.json").read_text(encoding="utf-8"))
    logged = mlflow.MlflowClient(tracking_uri=record["tracking_uri"]).get_run(record["run_id"]).data
    assert {"train_loss", "val_accuracy", "train_loss_iteration"} <= set(logged.metrics)
    assert logged.params["train_cases"] == "12"


def test_shipped_weights_reproduce_the_published_accuracy(mednist_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    bundle_dir = api.BUNDLES_DIR / BUNDLE
    weights = bundle_dir / "models" / "model.pt"
    assert weights.stat().st_size < 2 * 2**20
    published = json.loads((bundle_dir / "configs" / "metadata.json").read_text(encoding="utf-8"))["eval_metrics"]
    assert main(["evaluate", BUNDLE, "--data", str(mednist_dir), "--checkpoint", str(weights),
                 "--output", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    metrics = json.loads((tmp_path / "metrics" / "metrics.json").read_text(encoding="utf-8"))
    assert printed == metrics["summary"] and metrics["cases"] == 600
    assert metrics["accuracy"] == pytest.approx(published["accuracy"], abs=1e-9)
    for name, accuracy in published["per_class_accuracy"].items():
        assert metrics["per_class"][name] == {"accuracy": pytest.approx(accuracy), "cases": 100}
    assert sum(map(sum, metrics["confusion_matrix"])) == 600
