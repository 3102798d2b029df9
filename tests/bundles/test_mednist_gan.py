"""The class-conditional MedNIST GAN bundle (``mednist_gan``) on real images.

A tiny generator and discriminator trained for one epoch on 8 real images per subset check the wiring: MONAI's
``GanTrainer`` with the conditional hooks, the validator's Frechet distance and class consistency, MLflow, the
checkpoints and figures, and ``pipelines synthesize`` (files, datalist, seeds).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import api
from pipelines.data.mednist import CLASSES
from pipelines.errors import InputError

BUNDLE = "mednist_gan"
TINY = {
    "g_channels": [8, 8, 4, 4], "d_channels": [4, 8, 8, 8], "latent_size": 8, "embedding_size": 4,
    "batch_size": 4, "val_batch_size": 8, "val_interval": 1,
}
SHIPPED = api.BUNDLES_DIR / BUNDLE / "models" / "model.pt"
CLASSIFIER = api.BUNDLES_DIR / "mednist_classifier" / "models" / "model.pt"  # scores generated images


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(mednist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle trained for one epoch on the first 8 images of each subset; the run folder."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp(BUNDLE)
    api.train(BUNDLE, mednist_dir, out, epochs=1, max_cases=8, overrides=TINY)
    return out


def test_one_epoch_writes_losses_generative_metrics_figures_weights_and_an_mlflow_run(trained: Path) -> None:
    summary = json.loads((trained / "train_summary.json").read_text(encoding="utf-8"))
    assert summary["epochs"] == 1 and summary["best_epoch"] == 1
    assert np.isfinite(summary["best_val_frechet_distance"]) and summary["best_val_frechet_distance"] > 0
    history = (trained / "figures" / "history.csv").read_text(encoding="utf-8").splitlines()
    assert history[0].split(",") == ["epoch", "loss_G", "loss_D", "val_frechet_distance", "val_class_consistency"]
    values = [float(v) for v in history[1].split(",")[1:]]
    assert all(np.isfinite(values)) and 0 <= values[3] <= 1
    for figure in ("curves.png", "samples.png"):
        assert (trained / "figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the best generator is saved bare, as the bundle's network_def; the checkpoint also holds D and the optimisers
    state = torch.load(trained / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert "embedding.weight" in state and state["embedding.weight"].shape == (len(CLASSES), 4)
    checkpoint = torch.load(trained / "models" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert {"model", "model_ema", "discriminator", "optimizer_G", "optimizer_D", "trainer", "rng"} <= set(checkpoint)
    # the shipped generator is the moving average of the trained one's weights
    assert all(torch.equal(state[k], checkpoint["model_ema"][k]) for k in state)
    assert not all(torch.equal(state[k], checkpoint["model"][k]) for k in state)

    record = json.loads((trained / "mlflow_run.json").read_text(encoding="utf-8"))
    run = mlflow.MlflowClient(tracking_uri=record["tracking_uri"]).get_run(record["run_id"]).data
    logged = {"loss_G", "loss_D", "train_loss_iteration", "val_frechet_distance", "val_class_consistency"}
    assert logged <= set(run.metrics)
    assert run.params["criterion"] == "bce" and run.params["train_cases"] == "8"


def test_synthesize_writes_pngs_and_a_datalist_and_the_seed_fixes_the_bytes(trained: Path, tmp_path: Path) -> None:
    weights = trained / "models" / "model.pt"
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        runs[name] = api.synthesize(BUNDLE, 3, tmp_path / name, label="CXR", checkpoint=weights, seed=seed,
                                    overrides=TINY)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["CXR_0000.png", "CXR_0001.png", "CXR_0002.png", "datalist.json", "synthesis.json"]
    image = Image.open(tmp_path / "a" / "CXR_0000.png")
    assert image.size == (64, 64) and image.mode == "L"
    datalist = json.loads((tmp_path / "a" / "datalist.json").read_text(encoding="utf-8"))
    assert [c["class_name"] for c in datalist["cases"]] == ["CXR"] * 3 and datalist["classes"] == list(CLASSES)
    assert all(c["synthetic"] and c["label"] == CLASSES.index("CXR") for c in datalist["cases"])
    read = {name: [(tmp_path / name / f"CXR_{i:04d}.png").read_bytes() for i in range(3)] for name in "abc"}
    assert read["a"] == read["b"] and read["a"] != read["c"]
    with pytest.raises(Exception) as info:
        api.synthesize(BUNDLE, 1, tmp_path / "d", label="Hand", checkpoint=weights, overrides=TINY)
    # MONAI's config parser wraps errors raised while building the synthesizer in a RuntimeError
    error = next(e for e in _chain(info.value) if isinstance(e, InputError))
    assert "unknown class 'Hand'" in str(error) and "CXR" in str(error)
    assert not (tmp_path / "d").exists() or not list((tmp_path / "d").iterdir())


def _chain(error: BaseException | None) -> list[BaseException]:
    """``error`` and its causes."""
    chain: list[BaseException] = []
    while error is not None and all(error is not seen for seen in chain):  # a context chain can loop
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def test_evaluate_scores_fakes_against_held_out_images_with_the_real_floor(trained: Path, mednist_dir: Path,
                                                                          tmp_path: Path) -> None:
    report = api.evaluate(BUNDLE, mednist_dir, trained / "models" / "model.pt", tmp_path, max_cases=8,
                          overrides=TINY)
    summary = report["summary"]
    assert summary["fakes"] == summary["reference_images"] == summary["test_images"] == 8
    # one epoch of a tiny GAN is far from real images
    assert summary["frechet_distance"] > summary["frechet_distance_real"] >= 0
    assert 0 <= summary["class_consistency"] <= 1 and 0 <= summary["real_accuracy"] <= 1
    assert set(report["per_class"]) <= set(CLASSES) and report["per_class"]
    for scores in report["per_class"].values():  # where each class's fakes go, by the classifier
        assert sum(scores["classified_as"].values()) == scores["fakes"]
    assert json.loads((tmp_path / "metrics" / "metrics.json").read_text(encoding="utf-8")) == report


@pytest.mark.skipif(not (SHIPPED.is_file() and CLASSIFIER.is_file()),
                    reason="the generator or the classifier weights are not shipped")
def test_shipped_generator_draws_images_the_classifier_recognises(tmp_path: Path) -> None:
    summary = api.synthesize(BUNDLE, 10, tmp_path, seed=0)  # 10 of each class
    assert len(summary["written"]) == 10 * len(CLASSES)
    assert summary["class_consistency"] > 0.8, summary["class_consistency_per_class"]
