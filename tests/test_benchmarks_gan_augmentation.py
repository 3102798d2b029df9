"""Issue #5 end to end in quick mode: the GAN trained on 3 patients of fold 0, synthetic NIfTI pairs, realism
measures logged to MLflow, and the two segmentation arms; plus the synthesis contract on the trained GAN."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest

from pipelines import api
from pipelines.data import split_items
from pipelines.errors import OutputExistsError

REPO = Path(__file__).resolve().parents[1]
TINY = {"g_channels": [16, 8, 8, 4], "d_channels": [4, 8, 8, 16], "latent_size": 16}


@pytest.fixture(scope="module")
def quick_run(sunnybrook_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("gan_aug")
    command = [sys.executable, str(REPO / "benchmarks" / "gan_augmentation.py"), "--data", str(sunnybrook_dir),
               "--output", str(output), "--quick"]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return output, json.loads((output / "results.json").read_text(encoding="utf-8"))


def test_rows_realism_and_mlflow(quick_run: tuple[Path, dict], sunnybrook_dir: Path) -> None:
    output, results = quick_run
    (row,) = results["rows"]
    assert row["labelled_patients"] == 3 and row["synthetic_pairs"] == row["real_slices"]
    assert row["real_slices"] == sum(i["num_slices"] for i in split_items(sunnybrook_dir, "0", "train", max_cases=3))
    assert 0 <= row["dice_without"] <= 1 and 0 <= row["dice_with"] <= 1
    assert 0 <= row["c2st_accuracy"] <= 1 and 0 <= row["mask_plausibility"] <= 1
    assert row["frechet_distance"] > 0 and row["frechet_distance_real"] > 0
    assert "| 3 | 1 |" in (output / "results.md").read_text(encoding="utf-8")
    # the GAN saw the 3 labelled patients only
    gan = output / "fold0_n3" / "gan"
    record = json.loads((gan / "mlflow_run.json").read_text(encoding="utf-8"))
    run = mlflow.MlflowClient(record["tracking_uri"]).get_run(record["run_id"])
    assert run.data.params["train_cases"] == "3"
    assert run.data.metrics["realism_c2st_accuracy"] == pytest.approx(row["c2st_accuracy"])
    assert {"loss_G", "loss_D", "val_frechet_distance", "val_mask_plausibility"} <= run.data.metrics.keys()


def test_synthesize_writes_reproducible_binary_pairs(quick_run: tuple[Path, dict], tmp_path: Path) -> None:
    checkpoint = quick_run[0] / "fold0_n3" / "gan" / "models" / "model.pt"
    for name in ("a", "b"):
        api.synthesize("mr_synthesis_gan", 4, tmp_path / name, checkpoint=checkpoint, seed=3, overrides=TINY)
    for k in range(4):
        for part in ("image", "mask"):
            file = f"syn_{k:04d}_{part}.nii.gz"
            assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
        mask = np.asarray(nib.load(tmp_path / "a" / f"syn_{k:04d}_mask.nii.gz").dataobj)
        assert mask.shape == (64, 64, 1) and set(np.unique(mask).tolist()) <= {0, 1}
    assert json.loads((tmp_path / "a" / "datalist.json").read_text(encoding="utf-8"))["synthetic"] is True
    with pytest.raises(OutputExistsError):
        api.synthesize("mr_synthesis_gan", 4, tmp_path / "a", checkpoint=checkpoint, overrides=TINY)


def test_shipped_generator_synthesizes_one_group(tmp_path: Path) -> None:
    """`pipelines synthesize mr_synthesis_gan` works right after installation, and its metadata keys are there."""
    summary = api.synthesize("mr_synthesis_gan", 3, tmp_path, label="hypertrophy")
    assert summary["per_group"] == {"hypertrophy": 3} and len(summary["written"]) == 6
    meta = json.loads((REPO / "bundles" / "mr_synthesis_gan" / "configs" / "metadata.json").read_text(encoding="utf-8"))
    assert {"version", "changelog", "network_data_format", "eval_metrics", "base_bundle"} <= meta.keys()


def test_mask_conditioned_rows_with_the_deformed_real_control(sunnybrook_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "p2p"
    command = [sys.executable, str(REPO / "benchmarks" / "gan_augmentation.py"), "--data", str(sunnybrook_dir),
               "--output", str(output), "--quick", "--gan", "mr_synthesis_pix2pix", "--control", "--jobs", "2"]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads((output / "results.json").read_text(encoding="utf-8"))["rows"]
    assert row["control_gain"] == pytest.approx(row["dice_control"] - row["dice_without"])
    assert row["gan_gain_over_control"] == pytest.approx(row["dice_with"] - row["dice_control"])
    # the iteration-matched arm: twice the epochs of the quick schedule (ratio 1)
    assert row["longer_epochs"] == 4 and row["longer_gain"] == pytest.approx(row["dice_longer"] - row["dice_without"])
    longer = json.loads((output / "fold0_n3" / "segmentation_longer" / "train_summary.json").read_text(encoding="utf-8"))
    assert longer["epochs"] == 4
    folder = output / "fold0_n3"
    synthetic, control = (json.loads((folder / f / "datalist.json").read_text(encoding="utf-8"))["cases"]
                          for f in ("synthetic", "deformed_real"))
    assert len(synthetic) == len(control) == row["real_slices"]
    for a, b in zip(synthetic[:4], control[:4]):  # the control's masks are the synthetic pairs' masks
        assert (folder / "synthetic" / a["label"]).read_bytes() == (folder / "deformed_real" / b["label"]).read_bytes()
    table = (output / "results.md").read_text(encoding="utf-8")
    assert "control gain" in table and "2 row(s) at a time" in table  # rows ran in a process pool
    # a row made before the iteration-matched arm existed is completed from the finished steps, nothing retrained
    done = output / "fold0_n3" / "row.json"
    older = {k: v for k, v in row.items() if k not in ("dice_longer", "longer_gain", "longer_epochs")}
    done.write_text(json.dumps(older), encoding="utf-8")
    stamps = {p: p.stat().st_mtime_ns for p in (output / "fold0_n3").glob("*/train_summary.json")}
    again = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(done.read_text(encoding="utf-8")) == pytest.approx(row)
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    # the generator was trained on the row's 3 labelled patients only
    record = json.loads((folder / "gan" / "mlflow_run.json").read_text(encoding="utf-8"))
    run = mlflow.MlflowClient(record["tracking_uri"]).get_run(record["run_id"])
    assert run.data.params["train_cases"].count(",") == 2


def test_control_needs_a_mask_conditioned_generator(tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "gan_augmentation.py"), "--data", str(tmp_path),
               "--output", str(tmp_path / "x"), "--control"]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=300)
    assert result.returncode == 2 and "--control needs a mask-conditioned --gan" in result.stderr
    command[-1:] = ["--jobs", "0"]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=300)
    assert result.returncode == 2 and "--jobs must be at least 1" in result.stderr


def test_realism_of_a_mask_conditioned_generator(sunnybrook_dir: Path, tmp_path: Path) -> None:
    """benchmarks/gan_realism.py on the pix2pix bundle: it draws from the split's training masks, scores the pairs."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()  # the bundle's default network, with untrained weights
    parser.read_config(api.config_files(api.BUNDLES_DIR / "mr_synthesis_pix2pix", ["train.json"]))
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "g.pt")
    command = [sys.executable, str(REPO / "benchmarks" / "gan_realism.py"), "--data", str(sunnybrook_dir),
               "--output", str(tmp_path / "out"), "--bundle", "mr_synthesis_pix2pix", "--checkpoint",
               str(tmp_path / "g.pt"), "--count", "8"]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "realism.json").read_text(encoding="utf-8"))
    assert report["bundle"] == "mr_synthesis_pix2pix" and report["synthetic_pairs"] == 8
    assert 0 <= report["c2st_accuracy"] <= 1 and report["frechet_distance"] > 0
    summary = json.loads((tmp_path / "out" / "synthetic" / "synthesis.json").read_text(encoding="utf-8"))
    train = {i["case_id"] for i in split_items(sunnybrook_dir, "seed", "train")}
    assert set(summary["mask_cases"]) == train  # the masks come from the split's training patients only
