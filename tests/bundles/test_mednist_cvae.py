"""The MedNIST conditional VAE bundle: one tiny epoch on real images, seeded synthesis, the shipped figures.

A tiny network (4-8 channels, 4 latent dimensions) and 12 images per subset keep training to seconds; what is checked
is the wiring: MLflow run and figures, PNGs and datalist from ``pipelines synthesize``, same seed same bytes, no
overwrite, unknown classes refused, and the shipped weights reproducing metadata.json's figures.
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
from pipelines.cli import main
from pipelines.errors import InputError, OutputExistsError
from pipelines.generate.cvae import CVAESynthesizer
from pipelines.networks.cvae import ConditionalVAE

BUNDLE = "mednist_cvae"
TINY = {"channels": [4, 8, 8, 8], "latent_size": 4, "batch_size": 4, "figure_interval": 1}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(mednist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny CVAE trained for one epoch on 12 training images; the run folder."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cvae")
    api.train(BUNDLE, mednist_dir, out, epochs=1, max_cases=12, overrides=TINY)
    return out


def _synthesize(trained: Path, output: Path, **kwargs: object) -> dict:
    options = {"count": 3, "label": "CXR", "seed": 0, **kwargs}
    return api.synthesize(BUNDLE, output=output, checkpoint=trained / "models" / "model.pt", overrides=TINY, **options)


def _cause(error: BaseException, kind: type) -> BaseException | None:
    """The first exception of type ``kind`` in the chain (MONAI wraps what a config expression raises)."""
    while error is not None and not isinstance(error, kind):
        error = error.__cause__ or error.__context__
    return error


def test_one_tiny_epoch_writes_losses_figures_and_an_mlflow_run(trained: Path) -> None:
    summary = json.loads((trained / "train_summary.json").read_text(encoding="utf-8"))
    assert summary["epochs"] == 1 and summary["best_val_loss"] > 0
    history = (trained / "figures" / "history.csv").read_text(encoding="utf-8").splitlines()
    assert history[0].split(",")[:1] == ["epoch"] and len(history) == 2
    for figure in ("curves.png", "samples.png", "interpolation.png"):
        assert (trained / "figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
    record = json.loads((trained / "mlflow_run.json").read_text(encoding="utf-8"))
    run = mlflow.MlflowClient(tracking_uri=record["tracking_uri"]).get_run(record["run_id"])
    assert {"loss", "loss_recon", "loss_kl", "val_loss", "val_recon", "val_kl", "val_mae"} <= set(run.data.metrics)
    assert run.data.params["latent_size"] == "4" and run.data.params["reconstruction"] == "bce"
    beta, metrics = float(run.data.params["beta"]), run.data.metrics
    assert metrics["loss"] == pytest.approx(metrics["loss_recon"] + beta * metrics["loss_kl"])


def test_synthesize_writes_pngs_and_a_datalist_same_seed_same_bytes(trained: Path, tmp_path: Path) -> None:
    summary = _synthesize(trained, tmp_path / "a")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["CXR_0000.png", "CXR_0001.png", "CXR_0002.png", "datalist.json", "synthesis.json"]
    image = Image.open(tmp_path / "a" / "CXR_0001.png")
    assert image.mode == "L" and image.size == (64, 64)
    datalist = json.loads((tmp_path / "a" / "datalist.json").read_text(encoding="utf-8"))
    assert [c["label"] for c in datalist["cases"]] == [3, 3, 3] and all(c["synthetic"] for c in datalist["cases"])
    assert {c["class_name"] for c in datalist["cases"]} == {"CXR"} and datalist["classes"][3] == "CXR"
    assert 0 <= summary["class_consistency"] <= 1 and summary["per_class"] == {"CXR": 3}

    _synthesize(trained, tmp_path / "b")
    _synthesize(trained, tmp_path / "c", seed=1)
    same = [(tmp_path / d / "CXR_0002.png").read_bytes() for d in "abc"]
    assert same[0] == same[1] and same[0] != same[2]


def test_without_a_label_every_class_gets_count_images(trained: Path, tmp_path: Path) -> None:
    summary = _synthesize(trained, tmp_path, count=2, label=None)
    assert summary["per_class"] == {name: 2 for name in ("CTAbd", "CTChest", "CTHead", "CXR", "MRBrain", "MRBreast")}
    assert len(list(tmp_path.glob("*_000[01].png"))) == 12


def test_existing_samples_are_not_overwritten(trained: Path, tmp_path: Path) -> None:
    tmp_path.joinpath("CXR_0001.png").write_bytes(b"the user's file")
    with pytest.raises(Exception) as caught:
        _synthesize(trained, tmp_path)
    assert _cause(caught.value, OutputExistsError) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CXR_0001.png"]
    _synthesize(trained, tmp_path, overwrite=True)
    assert np.array(Image.open(tmp_path / "CXR_0001.png")).shape == (64, 64)


def test_an_unknown_class_is_a_one_line_error_listing_the_classes(tmp_path: Path) -> None:
    network = ConditionalVAE(2, (1, 64, 64), 6, 4, (4, 8, 8, 8), (2, 2, 2, 2))
    with pytest.raises(InputError) as caught:
        CVAESynthesizer(network, tmp_path / "model.pt", tmp_path, count=1, label="Foo")
    message = str(caught.value)
    assert "unknown class 'Foo'" in message and "CTAbd, CTChest" in message and "\n" not in message


def test_cli_names_an_unknown_class_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["synthesize", BUNDLE, "--count", "1", "--label", "Foo", "--output", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --label: unknown class 'Foo'") and "\n" not in error


def test_shipped_weights_reproduce_the_published_figures(mednist_dir: Path, tmp_path: Path) -> None:
    """``models/model.pt`` on the 600 test images and 100 generated images per class gives ``eval_metrics``."""
    bundle_dir = api.BUNDLES_DIR / BUNDLE
    weights = bundle_dir / "models" / "model.pt"
    assert weights.stat().st_size < 3 * 2**20
    published = json.loads((bundle_dir / "configs" / "metadata.json").read_text(encoding="utf-8"))["eval_metrics"]
    metrics = api.evaluate(BUNDLE, mednist_dir, weights, tmp_path)["summary"]
    for name in ("eval_recon", "eval_kl", "eval_mae", "frechet_distance"):
        assert metrics[name] == pytest.approx(published[name], rel=1e-4), name
    for name in ("class_consistency", "classifier_accuracy_real"):
        assert metrics[name] == pytest.approx(published[name], abs=1e-9), name
    assert metrics["class_consistency_per_class"] == pytest.approx(published["class_consistency_per_class"])
    for figure in ("samples.png", "interpolation.png"):
        assert (tmp_path / "figures" / figure).is_file()
