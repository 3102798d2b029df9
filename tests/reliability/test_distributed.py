"""``multi_gpu_train.json`` with ``torchrun``: 2 CPU processes (Gloo) on a few real Sunnybrook patients.

Checked against a single-process run with the same global batch (2 ranks x 4 slices vs 1 process x 8 slices, same
seed): only rank 0 writes checkpoints, figures and MLflow records; every training slice is seen exactly once per
epoch, by one rank; and the two runs end with the same weights, loss and validation Dice, up to float rounding.

What makes the comparison honest: both runs draw their order from the same sampler permutation (``DistributedSampler``
with seed + epoch; the single process uses it with one replica), so global batch k holds the same slices in both
runs; and everything that depends on how a batch is split across processes is switched off for both runs:

- augmentation and dropout draw from each process's own generators;
- batch normalisation normalises over each rank's part of the batch (``SyncBatchNorm`` would fix that, but PyTorch
  supports it on GPUs only). Instance normalisation is no way out either: it cancels the bias of the convolution
  before it, whose gradient is then zero up to rounding, and Adam scales that rounding noise up to steps of the size
  of the learning rate (measured: 3e-4 relative weight difference, all in those biases, outputs equal to 1e-6).
  So the network runs without normalisation here;
- a batch-wise Dice loss (``batch=True``) would pool the Dice over each rank's part: it is made per-sample.

What remains is float rounding: DDP averages the ranks' gradients (mean of two 4-slice means) where the single
process takes one 8-slice mean. Measured after 8 Adam steps: relative weight difference 1.3-1.4e-7, training loss
equal to 4e-8, validation Dice equal to the last bit; the tolerances below leave a margin of about 100.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import ignite.distributed as idist
import mlflow
import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser

from pipelines.tracking import mlflow_settings

REPO = Path(__file__).resolve().parents[2]
BUNDLE_DIR = REPO / "bundles" / "lv_segmentation_unet"
CONFIGS = BUNDLE_DIR / "configs"
MAX_CASES = 3  # 32 training slices: an even number, so no rank is padded or cut; 3 validation volumes: 2 + 1
EPOCHS = 2
RANK_BATCH = 4
WEIGHTS_RTOL = 1e-5  # ||w_ddp - w_single|| / ||w_single||, measured 1.4e-7
METRIC_RTOL = 1e-5  # per-epoch training loss and validation Dice, measured 3e-8 and 0


class SampleLog:
    """Test-only trainer handler: writes the ``(case_id, slice)`` of every sample this rank trained on, per epoch,
    to ``<output_dir>/samples_rank<r>.json``."""

    def __init__(self, output_dir: str) -> None:
        self.path = Path(output_dir) / f"samples_rank{idist.get_rank()}.json"
        self.seen: dict[int, list[tuple[str, int]]] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.record)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def record(self, engine: Engine) -> None:
        batch = engine.state.batch
        items = batch if isinstance(batch, list) else [dict(zip(batch, v)) for v in zip(*batch.values())]
        self.seen.setdefault(engine.state.epoch, []).extend((str(i["case_id"]), int(i["slice"])) for i in items)

    def write(self, engine: Engine) -> None:
        self.path.write_text(json.dumps(self.seen), encoding="utf-8")


def comparable(config: dict) -> dict:
    """Overrides that make a run's result independent of how its batches are split over processes (see above)."""
    overrides: dict = {"train#augmentation": [], "num_epochs": EPOCHS, "max_cases": MAX_CASES}

    def network_options(node: object, path: str) -> None:  # "dropout" / "norm" wherever the network config has them
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "dropout":
                    overrides[f"{path}#dropout"] = 0.0
                elif key == "norm":
                    overrides[f"{path}#norm"] = None
                else:
                    network_options(value, f"{path}#{key}")

    network_options(config["network_def"], "network_def")
    if "batch" in config["loss"]:
        overrides["loss#batch"] = False
    return overrides


def per_rank(path: str) -> str:
    """A config expression: ``path`` on rank 0, ``path_rank<r>`` elsewhere, so that a write by another rank shows."""
    return f"$@output_dir + '/{path}' + ('' if @is_rank0 else '_rank%d' % dist.get_rank())"


def write_probe(folder: Path, single_process: bool) -> Path:
    config = ConfigParser.load_config_files([str(CONFIGS / "train.json")])
    probe = {
        **comparable(config),
        "ckpt_dir": per_rank("models"),
        "figures_dir": per_rank("figures"),
        "tracking_uri": "$'sqlite:///' + " + per_rank("mlruns")[1:] + " + '.db'",
        "+train#handlers": [{"_target_": "tests.reliability.test_distributed.SampleLog", "output_dir": "@output_dir"}],
    }
    if single_process:  # the permutation the 2 ranks share, walked by one process
        probe["batch_size"] = 2 * RANK_BATCH
        probe["train#dataloader#shuffle"] = False
        probe["train#dataloader#sampler"] = {
            "_target_": "DistributedSampler", "dataset": "@train#dataset", "num_replicas": 1, "rank": 0,
            "shuffle": True, "seed": "@seed",
        }
    else:
        probe["batch_size"] = RANK_BATCH
    path = folder / ("probe_single.json" if single_process else "probe_ddp.json")
    path.write_text(json.dumps(probe), encoding="utf-8")
    return path


def bundle_run(configs: list[Path], data: Path, output: Path, tracking: Path) -> list[str]:
    return [
        "-m", "monai.bundle", "run", "--config_file", repr([str(c) for c in configs]),
        "--bundle_root", str(BUNDLE_DIR), "--dataset_dir", str(data), "--output_dir", str(output),
        "--tracking", str(tracking),
    ]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "models" / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def history(run: Path) -> list[dict[str, float]]:
    with (run / "figures" / "history.csv").open(newline="", encoding="utf-8") as stream:
        return [{name: float(value) for name, value in row.items()} for row in csv.DictReader(stream)]


def test_sampler_shards_an_odd_dataset_without_repeats() -> None:
    """The training sampler of multi_gpu_train.json drops the odd sample out rather than repeating one."""
    layered = ConfigParser.load_config_files([str(CONFIGS / "train.json"), str(CONFIGS / "multi_gpu_train.json")])
    config = layered["train"]["sampler"]
    dataset = list(range(43))
    shards = []
    for rank in range(2):
        sampler_config = {**config, "num_replicas": 2, "rank": rank}
        parser = ConfigParser({"seed": 0, "train": {"dataset": dataset}, "sampler": sampler_config})
        sampler = parser.get_parsed_content("sampler")
        sampler.set_epoch(3)
        shards.append(list(sampler))
    assert len(shards[0]) == len(shards[1]) == 21
    assert not set(shards[0]) & set(shards[1])
    assert len(set(shards[0]) | set(shards[1])) == 42


def test_two_processes_match_one_with_the_same_global_batch(sunnybrook_dir: Path, tmp_path: Path) -> None:
    settings = tmp_path / "tracking.json"
    ids = set(ConfigParser.load_config_files([str(CONFIGS / "train.json")]))
    settings.write_text(json.dumps(mlflow_settings(ids)), encoding="utf-8")
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ddp_configs = [CONFIGS / "train.json", CONFIGS / "multi_gpu_train.json", write_probe(tmp_path, False)]
    single_configs = [CONFIGS / "train.json", write_probe(tmp_path, True)]
    commands = {
        "ddp": [*launch, *bundle_run(ddp_configs, sunnybrook_dir, ddp_dir, settings)],
        "single": [sys.executable, *bundle_run(single_configs, sunnybrook_dir, single_dir, settings)],
    }
    runs = {}
    try:
        for name, command in commands.items():  # both at once: 3 single-threaded processes
            with (tmp_path / f"{name}.log").open("w") as log:
                runs[name] = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
                )
        for name, process in runs.items():
            assert process.wait(timeout=400) == 0, (tmp_path / f"{name}.log").read_text(encoding="utf-8", errors="replace")[-3000:]
    finally:
        for process in runs.values():  # after a failure: the launcher and its workers
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    # only rank 0 wrote: rank 1 was given its own folders and tracking store, which must not exist
    assert (ddp_dir / "models" / "checkpoint.pt").is_file() and (ddp_dir / "figures" / "history.csv").is_file()
    assert not {"models_rank1", "figures_rank1", "mlruns_rank1.db"} & {p.name for p in ddp_dir.iterdir()}
    client = mlflow.MlflowClient(tracking_uri="sqlite:///" + (ddp_dir / "mlruns.db").as_posix())
    experiment = client.get_experiment_by_name("lv_segmentation_unet")
    (run,) = client.search_runs([experiment.experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_mean_dice")] == list(range(1, EPOCHS + 1))

    # sharded: in every epoch the two ranks saw disjoint halves that together cover the training slices once
    single = {int(k): v for k, v in json.loads((single_dir / "samples_rank0.json").read_text(encoding="utf-8")).items()}
    ranks = [
        {int(k): v for k, v in json.loads((ddp_dir / f"samples_rank{r}.json").read_text(encoding="utf-8")).items()} for r in range(2)
    ]
    for epoch in range(1, EPOCHS + 1):
        everything = sorted(map(tuple, single[epoch]))
        assert len(everything) == len(set(everything)) == 32
        shards = [sorted(map(tuple, rank[epoch])) for rank in ranks]
        assert len(shards[0]) == len(shards[1]) == 16
        assert not set(shards[0]) & set(shards[1])
        assert sorted(shards[0] + shards[1]) == everything
    assert ranks[0][1] != ranks[0][2]  # reshuffled each epoch

    # the same result as one process, up to rounding
    ddp_weights, single_weights = weights(ddp_dir), weights(single_dir)
    assert ddp_weights.keys() == single_weights.keys()
    floats = [k for k, v in single_weights.items() if v.is_floating_point()]
    difference = torch.sqrt(sum(((ddp_weights[k] - single_weights[k]) ** 2).sum() for k in floats))
    norm = torch.sqrt(sum((single_weights[k] ** 2).sum() for k in floats))
    assert float(difference / norm) < WEIGHTS_RTOL
    # the trainer's loss metric is averaged over both ranks, the validation Dice over the volumes of both ranks
    ddp_history, single_history = history(ddp_dir), history(single_dir)
    assert [row["epoch"] for row in ddp_history] == [1.0, 2.0]
    for ddp_row, single_row in zip(ddp_history, single_history):
        assert ddp_row == pytest.approx(single_row, rel=METRIC_RTOL)
