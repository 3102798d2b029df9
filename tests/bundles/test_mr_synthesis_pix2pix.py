"""mr_synthesis_pix2pix: layered on mr_synthesis_gan (itself on mednist_gan), one tiny epoch on real patients,
and synthesis from deformed real masks through the API and the command line."""

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
from pipelines.errors import InputError

BUNDLES = api.BUNDLES_DIR
TINY = {"g_channels": [4, 8, 8], "disc_channels": 4, "samples_per_epoch": 32, "batch_size": 8, "val_interval": 1,
        "train#items#max_cases": 2, "validate#items#max_cases": 1}


def test_configs_layer_the_whole_chain_of_bases() -> None:
    names = ["mednist_gan", "mr_synthesis_gan", "mr_synthesis_pix2pix"]
    assert api.config_files(BUNDLES / "mr_synthesis_pix2pix", ["train.json", "synthesize.json"]) == [
        *(str(BUNDLES / n / "configs" / "train.json") for n in names),
        *(str(BUNDLES / n / "configs" / "synthesize.json") for n in names),
    ]


def test_a_cycle_of_bases_is_a_clear_error(tmp_path: Path) -> None:
    for name, base in (("a", "b"), ("b", "a")):
        (tmp_path / name / "configs").mkdir(parents=True)
        (tmp_path / name / "configs" / "train.json").write_text("{}", encoding="utf-8")
        meta = {"base_bundle": str(tmp_path / base)}
        (tmp_path / name / "configs" / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(InputError, match="cycle"):
        api.config_files(tmp_path / "a", ["train.json"])


@pytest.fixture(scope="module")
def tiny_run(sunnybrook_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("pix2pix")
    summary = api.train("mr_synthesis_pix2pix", sunnybrook_dir, run, epochs=1, overrides=TINY)
    assert summary["epochs"] == 1 and summary["best_val_frechet_distance"] > 0
    return run


def test_one_epoch_trains_the_pix2pix_step_and_tracks_it(tiny_run: Path) -> None:
    executed = json.loads(next(tiny_run.glob("config_*.json")).read_text(encoding="utf-8"))
    assert executed["train"]["step"]["_target_"].endswith("Pix2PixStep")
    assert executed["network_def"]["_target_"].endswith("MaskConditionedGenerator")
    record = json.loads((tiny_run / "mlflow_run.json").read_text(encoding="utf-8"))
    run = mlflow.MlflowClient(record["tracking_uri"]).get_run(record["run_id"])
    assert {"loss_G", "loss_L1", "loss_D", "val_frechet_distance", "val_mask_plausibility"} <= run.data.metrics.keys()
    assert run.data.params["train_cases"].count(",") == 1  # the 2 patients asked for
    assert (tiny_run / "figures" / "pairs.png").stat().st_size > 0


def test_synthesize_from_the_command_line(tiny_run: Path, sunnybrook_dir: Path, tmp_path: Path) -> None:
    overrides = {k: v for k, v in TINY.items() if k in ("g_channels",)}
    a = api.synthesize("mr_synthesis_pix2pix", 3, tmp_path / "a", checkpoint=tiny_run / "models" / "model.pt",
                       data=sunnybrook_dir, seed=2, overrides=overrides)
    assert a["source"] == "generator" and len(a["written"]) == 6
    # the CLI has no --override: the tiny network is given as a bundle folder layered on the real one
    bundle = tmp_path / "tiny_bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "train.json").write_text(json.dumps(overrides), encoding="utf-8")
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"base_bundle": "mr_synthesis_pix2pix"}),
                                                      encoding="utf-8")
    command = [sys.executable, "-m", "pipelines", "synthesize", str(bundle), "--count", "3", "--seed", "2",
               "--output", str(tmp_path / "b"), "--checkpoint", str(tiny_run / "models" / "model.pt"),
               "--data", str(sunnybrook_dir)]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for k in range(3):
        name = f"syn_{k:04d}_mask.nii.gz"  # the same deformed masks, to the byte
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        mask = np.asarray(nib.load(tmp_path / "b" / name).dataobj)
        assert set(np.unique(mask).tolist()) <= {0, 1}
        # the images agree to float rounding: this process and the CLI's may run the convolutions on other thread counts
        images = [np.asarray(nib.load(tmp_path / d / f"syn_{k:04d}_image.nii.gz").dataobj) for d in ("a", "b")]
        np.testing.assert_allclose(images[0], images[1], atol=1e-5)


def test_shipped_generator_synthesizes_one_group(sunnybrook_dir: Path, tmp_path: Path) -> None:
    """`pipelines synthesize mr_synthesis_pix2pix --data DIR` works right after installation, with its metadata."""
    summary = api.synthesize("mr_synthesis_pix2pix", 3, tmp_path, data=sunnybrook_dir, label="hypertrophy")
    assert summary["per_group"] == {"hypertrophy": 3} and len(summary["written"]) == 6
    meta = json.loads((BUNDLES / "mr_synthesis_pix2pix" / "configs" / "metadata.json").read_text(encoding="utf-8"))
    assert {"version", "changelog", "network_data_format", "eval_metrics", "base_bundle"} <= meta.keys()
    assert meta["version"] in meta["changelog"]
