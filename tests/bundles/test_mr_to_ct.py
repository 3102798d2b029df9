"""The MR-to-CT bundles (``mr_to_ct_cyclegan`` and its paired sibling ``mr_to_ct_paired``) on real slices.

Tiny networks (a few thousand parameters) and one training / validation patient each keep every run to seconds;
what is checked is the wiring: training, MLflow, checkpoints, exact resume, evaluation reports and predicted
NIfTI geometry.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest
import torch

from pipelines import api
from pipelines.cli import main
from pipelines.engines import CycleGANStep
from pipelines.errors import PipelineError

TINY = {"features": 4, "n_blocks": 1, "disc_channels": 8, "batch_size": 4}
BUNDLES = ("mr_to_ct_cyclegan", "mr_to_ct_paired")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(brain_mr_ct_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each bundle trained for 2 epochs on 1 patient per subset; the run folders."""
    runs = {}
    for bundle in BUNDLES:
        out = tmp_path_factory.mktemp(bundle)
        api.train(bundle, brain_mr_ct_dir, out, epochs=2, max_cases=1, overrides=TINY)
        runs[bundle] = out
    return runs


def _history(run: Path) -> list[dict[str, str]]:
    with (run / "figures" / "history.csv").open(encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_training_writes_weights_history_figures_and_an_mlflow_run(trained: dict[str, Path], bundle: str) -> None:
    run = trained[bundle]
    summary = json.loads((run / "train_summary.json").read_text(encoding="utf-8"))
    assert summary["epochs"] == 2 and 0 < summary["best_val_mae"] < 255
    history = _history(run)
    assert [row["epoch"] for row in history] == ["1", "2"]
    losses = ("loss_cycle", "loss_D_MR") if bundle == "mr_to_ct_cyclegan" else ("loss_L1", "loss_D")
    for name in ("loss_G", *losses, "val_mae", "val_psnr", "val_ssim"):
        assert all(np.isfinite(float(row[name])) for row in history), name
    best = min(float(row["val_mae"]) for row in history)
    assert summary["best_val_mae"] == pytest.approx(best)
    for figure in ("curves.png", "validation_grid.png"):
        assert (run / "figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the best generator is saved bare, loadable with weights_only, as the network of the inference config
    state = torch.load(run / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert all(key.startswith("network.") for key in state)
    # model_last.pt: the same format, holding the generator of the last epoch (the one in the resumable checkpoint)
    last = torch.load(run / "models" / "model_last.pt", map_location="cpu", weights_only=True)
    generator = torch.load(run / "models" / "checkpoint.pt", map_location="cpu", weights_only=True)["G_mr_to_ct"]
    assert last.keys() == state.keys() == {f"network.{k}" for k in generator}
    assert all(torch.equal(last[f"network.{k}"], v) for k, v in generator.items())

    record = json.loads((run / "mlflow_run.json").read_text(encoding="utf-8"))
    client = mlflow.MlflowClient(tracking_uri=record["tracking_uri"])
    logged = client.get_run(record["run_id"]).data
    assert {"val_mae", "val_ssim", "loss_G", "train_loss_iteration"} <= set(logged.metrics)
    assert logged.params["features"] == "4" and "ScaledNetwork(/2" in logged.params["network"]


def test_cyclegan_trains_unpaired_on_disjoint_patients(trained: dict[str, Path]) -> None:
    record = json.loads((trained["mr_to_ct_cyclegan"] / "mlflow_run.json").read_text(encoding="utf-8"))
    params = mlflow.MlflowClient(tracking_uri=record["tracking_uri"]).get_run(record["run_id"]).data.params
    mr_cases, ct_cases = set(params["train_mr_cases"].split(",")), set(params["train_ct_cases"].split(","))
    assert mr_cases and ct_cases and not mr_cases & ct_cases


@pytest.mark.parametrize("bundle", BUNDLES)
def test_predict_writes_a_synthetic_ct_with_the_input_geometry(
    trained: dict[str, Path], brain_mr_ct_dir: Path, tmp_path: Path, bundle: str
) -> None:
    mr = brain_mr_ct_dir / "images" / "t1" / "brain_02.nii.gz"
    checkpoint = trained[bundle] / "models" / "model.pt"
    report = api.predict(bundle, mr, tmp_path, checkpoint=checkpoint, overrides=TINY)
    assert report.ok and report.written == [tmp_path / "brain_02_sct.nii.gz"]
    out, ref = nib.load(tmp_path / "brain_02_sct.nii.gz"), nib.load(mr)
    assert out.shape == ref.shape and np.array_equal(out.affine, ref.affine)
    assert out.get_data_dtype() == np.uint8
    # a second run does not overwrite: the input is reported and skipped
    again = api.predict(bundle, mr, tmp_path, checkpoint=checkpoint, overrides=TINY)
    assert not again.ok and "exists" in next(iter(again.failed.values()))


def test_cli_names_weights_of_another_architecture(trained: dict[str, Path], brain_mr_ct_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    mr = brain_mr_ct_dir / "images" / "t1" / "brain_02.nii.gz"
    checkpoint = trained["mr_to_ct_cyclegan"] / "models" / "model.pt"  # tiny networks; the bundle's are larger
    args = ["predict", "mr_to_ct_cyclegan", "--input", str(mr), "--output", str(tmp_path), "--checkpoint", str(checkpoint)]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {checkpoint}: weights do not fit") and "\n" not in error
    assert not list(tmp_path.iterdir())


def test_predict_refuses_probabilities_for_a_synthesis_bundle(trained: dict[str, Path], brain_mr_ct_dir: Path,
                                                              tmp_path: Path) -> None:
    mr = brain_mr_ct_dir / "images" / "t1" / "brain_02.nii.gz"
    with pytest.raises(PipelineError, match="no probability maps"):
        api.predict("mr_to_ct_cyclegan", mr, tmp_path, checkpoint=trained["mr_to_ct_cyclegan"] / "models" / "model.pt",
                    probabilities=True, overrides=TINY)


def test_evaluate_reports_masked_metrics_per_patient(trained: dict[str, Path], brain_mr_ct_dir: Path,
                                                     tmp_path: Path) -> None:
    metrics = api.evaluate("mr_to_ct_cyclegan", brain_mr_ct_dir, trained["mr_to_ct_cyclegan"] / "models" / "model.pt",
                           tmp_path, overrides=TINY)
    cases = {case["case_id"]: case for case in metrics["cases"]}
    assert set(cases) == {"brain_01", "brain_02"}  # the seed split's test patients (heads)
    assert {case["region"] for case in cases.values()} == {"head"}
    for case in cases.values():
        assert 0 < case["mae"] < 255 and 0 < case["psnr"] < 60 and -1 <= case["ssim"] <= 1
    assert metrics["summary"]["mae"]["mean"] == pytest.approx(np.mean([c["mae"] for c in cases.values()]))
    assert set(metrics["by_region"]) == {"head"}
    assert (tmp_path / "metrics" / "per_case.csv").is_file()
    assert (tmp_path / "figures" / "evaluation_grid.png").is_file()


def test_cyclegan_resumes_after_a_crash_exactly(brain_mr_ct_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that crashes in epoch 2 and is resumed ends with the uninterrupted run's losses and weights.

    The checkpoint holds the networks, optimisers, schedulers, both image pools, the unpaired draws and every
    random generator, so the resumed epoch repeats the uninterrupted one bit for bit (CPU).
    """
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    api.train("mr_to_ct_cyclegan", brain_mr_ct_dir, straight, epochs=2, max_cases=1, overrides=TINY)

    original = CycleGANStep.__call__
    calls = {"n": 0}

    def crash_in_epoch_two(self, engine, batch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if engine is not None and engine.state.epoch == 2 and engine.state.iteration % engine.state.epoch_length == 2:
            raise RuntimeError("simulated crash")
        return original(self, engine, batch)

    monkeypatch.setattr(CycleGANStep, "__call__", crash_in_epoch_two)
    with pytest.raises(RuntimeError):
        api.train("mr_to_ct_cyclegan", brain_mr_ct_dir, crashed, epochs=2, max_cases=1, overrides=TINY)
    monkeypatch.setattr(CycleGANStep, "__call__", original)
    assert [row["epoch"] for row in _history(crashed)] == ["1"]
    api.train("mr_to_ct_cyclegan", brain_mr_ct_dir, crashed, epochs=2, max_cases=1, overrides=TINY, resume=True)

    assert _history(crashed) == _history(straight)
    a = torch.load(straight / "models" / "checkpoint.pt", map_location="cpu", weights_only=True)
    b = torch.load(crashed / "models" / "checkpoint.pt", map_location="cpu", weights_only=True)
    for net in ("G_mr_to_ct", "F_ct_to_mr", "D_ct", "D_mr"):
        for key, value in a[net].items():
            assert torch.equal(value, b[net][key]), f"{net}.{key}"


def test_training_names_a_datalist_without_the_unpaired_halves(brain_mr_ct_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(brain_mr_ct_dir, data)
    datalist = json.loads((data / "datalist.json").read_text(encoding="utf-8"))
    del datalist["splits"]["seed"]["train_mr"]
    (data / "datalist.json").write_text(json.dumps(datalist), encoding="utf-8")
    with pytest.raises(Exception, match="train_mr"):
        api.train("mr_to_ct_cyclegan", data, tmp_path / "run", epochs=1, max_cases=1, overrides=TINY)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_has_the_model_zoo_keys_and_the_configs_exist(bundle: str) -> None:
    bundle_dir = api.BUNDLES_DIR / bundle
    meta = json.loads((bundle_dir / "configs" / "metadata.json").read_text(encoding="utf-8"))
    for key in ("version", "changelog", "monai_version", "pytorch_version", "numpy_version", "task", "description",
                "authors", "copyright", "network_data_format", "intended_use", "data_source", "references"):
        assert key in meta, key
    assert meta["version"] in meta["changelog"]
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == 1
    assert (bundle_dir / "LICENSE").is_file() and (bundle_dir / "docs" / "README.md").is_file()
    for name in ("train.json", "evaluate.json", "inference.json"):
        assert api.config_files(bundle_dir, [name])


def test_paired_bundle_is_layered_over_the_cyclegan_bundle() -> None:
    base, own = (api.BUNDLES_DIR / b / "configs" for b in BUNDLES)
    assert api.config_files(api.BUNDLES_DIR / "mr_to_ct_paired", ["train.json", "inference.json"]) == [
        str(base / "train.json"), str(own / "train.json"), str(base / "inference.json"),
    ]


def test_monai_bundle_run_trains_the_cyclegan(brain_mr_ct_dir: Path, tmp_path: Path) -> None:
    """The model-zoo command line runs the same train.json. (Not with ``--tracking mlflow``: MONAI's default
    settings read the loss with ``from_engine(["loss"], first=True)``, which returns a tuple for the dict output of a
    GAN step; ``pipelines train`` tracks these bundles.)"""
    bundle_dir = api.BUNDLES_DIR / "mr_to_ct_cyclegan"
    out = tmp_path / "run"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle_dir / "configs" / "train.json"),
               "--meta_file", str(bundle_dir / "configs" / "metadata.json"), "--bundle_root", str(bundle_dir),
               "--dataset_dir", str(brain_mr_ct_dir), "--output_dir", str(out), "--num_epochs", "1",
               "--max_cases", "1", "--features", "4", "--n_blocks", "1", "--disc_channels", "8"]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "models" / "model.pt").is_file() and (out / "figures" / "history.csv").is_file()


@pytest.mark.parametrize("bundle", BUNDLES)
def test_shipped_weights_translate_from_the_command_line(bundle: str, brain_mr_ct_dir: Path, tmp_path: Path) -> None:
    weights = api.BUNDLES_DIR / bundle / "models" / "model.pt"
    assert weights.is_file(), f"{bundle} ships no models/model.pt"
    assert weights.stat().st_size < 10 * 2**20  # the "about 10 MB"
    mr = brain_mr_ct_dir / "images" / "t1" / "brain_02.nii.gz"
    assert main(["predict", bundle, "--input", str(mr), "--output", str(tmp_path)]) == 0
    out, ref = nib.load(tmp_path / "brain_02_sct.nii.gz"), nib.load(mr)
    assert out.shape == ref.shape and np.array_equal(out.affine, ref.affine)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_shipped_weights_reproduce_the_published_metrics(bundle: str, brain_mr_ct_dir: Path, tmp_path: Path) -> None:
    """``models/model.pt`` on the seed split's 2 test patients gives metadata.json's ``eval_metrics``."""
    bundle_dir = api.BUNDLES_DIR / bundle
    published = json.loads((bundle_dir / "configs" / "metadata.json").read_text(encoding="utf-8"))["eval_metrics"]
    metrics = api.evaluate(bundle, brain_mr_ct_dir, bundle_dir / "models" / "model.pt", tmp_path)
    for name in ("mae", "psnr", "ssim"):
        assert metrics["summary"][name]["mean"] == pytest.approx(published[f"mean_{name}"], abs=1e-3), name
