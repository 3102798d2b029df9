"""Exact resume after SIGKILL: ``pipelines train`` killed in the middle of an epoch, then ``--resume``, ends with
exactly the metrics and weights of an uninterrupted run with the same seed (CPU), in the same MLflow run.

Three processes on a few real Sunnybrook patients: an uninterrupted 3-epoch run and a run that is killed with SIGKILL
after the first iteration of epoch 2 (both at once, one thread each), then the killed run resumed.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
import torch

BUNDLE = "lv_segmentation_unet"
EPOCHS = 3
TRAIN = ["-m", "pipelines.cli", "train", BUNDLE, "--epochs", str(EPOCHS), "--max-cases", "2"]

# ``pipelines.cli`` with one change: after the first iteration of epoch 2 it touches a marker file and waits to be
# killed. The kill therefore lands in the middle of an epoch, one epoch after the first checkpoint was written.
PAUSE_IN_EPOCH_TWO = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pipelines import cli
    from pipelines.handlers.throughput import Throughput

    marker = Path(sys.argv[1])
    original = Throughput._iteration_completed

    def pause_in_epoch_two(self, engine):
        original(self, engine)
        if engine.state.epoch == 2 and engine.state.iteration == engine.state.epoch_length + 1:
            marker.touch()
            time.sleep(600)

    Throughput._iteration_completed = pause_in_epoch_two
    sys.exit(cli.main(sys.argv[2:]))
    """
)


def environment() -> dict[str, str]:
    """One thread per process (two runs share the machine) and no tracking server from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


@pytest.fixture
def start() -> Iterator[Callable[[list[str], Path], subprocess.Popen]]:
    """Start ``python <command>`` with its output in a log file; whatever still runs at the end is killed."""
    processes: list[subprocess.Popen] = []

    def run(command: list[str], log: Path) -> subprocess.Popen:
        with log.open("w") as stream:  # a file, not a pipe: a full pipe would block the training
            process = subprocess.Popen(
                [sys.executable, *command], stdout=stream, stderr=subprocess.STDOUT, env=environment()
            )
        processes.append(process)
        return process

    yield run
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    assert process.wait(timeout=timeout) == 0, log.read_text(encoding="utf-8", errors="replace")[-3000:]


def history(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "figures" / "history.csv").open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def mlflow_history(run_dir: Path) -> tuple[list, mlflow.MlflowClient]:
    client = mlflow.MlflowClient(tracking_uri="sqlite:///" + (run_dir / "mlruns.db").resolve().as_posix())
    experiment = client.get_experiment_by_name(BUNDLE)
    return client.search_runs([experiment.experiment_id]), client


def test_resume_after_sigkill_is_exact(sunnybrook_dir: Path, tmp_path: Path, start: Callable) -> None:
    data = ["--data", str(sunnybrook_dir)]
    reference_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    marker = tmp_path / "paused_in_epoch_2"
    reference = start([*TRAIN, *data, "--output", str(reference_dir)], tmp_path / "uninterrupted.log")
    killed_log = tmp_path / "killed.log"
    killed = start(["-c", PAUSE_IN_EPOCH_TWO, str(marker), *TRAIN[2:], *data, "--output", str(killed_dir)], killed_log)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert killed.poll() is None, killed_log.read_text(encoding="utf-8", errors="replace")[-3000:]
        assert time.monotonic() < deadline, "the run never reached epoch 2"
        time.sleep(0.1)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL

    # the checkpoint of epoch 1 is complete and nothing half-written is left next to it
    models = killed_dir / "models"
    assert sorted(p.name for p in models.iterdir()) == ["checkpoint.pt", "model.pt"]
    state = torch.load(models / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["trainer"]["iteration"] == state["trainer"]["epoch_length"]  # end of epoch 1
    assert {"rng", "transform_rng"} <= state.keys()
    run_id = json.loads((killed_dir / "mlflow_run.json").read_text(encoding="utf-8"))["run_id"]

    resumed_log = tmp_path / "resumed.log"
    resumed = start([*TRAIN, *data, "--output", str(killed_dir), "--resume"], resumed_log)
    finish(reference, tmp_path / "uninterrupted.log")
    finish(resumed, resumed_log)

    # the same loss and validation Dice at every epoch, to the last bit, and the same final weights
    expected = history(reference_dir)
    assert [int(row["epoch"]) for row in expected] == [1, 2, 3]
    assert history(killed_dir) == expected
    for name in ("checkpoint.pt", "model.pt"):
        final = torch.load(killed_dir / "models" / name, map_location="cpu", weights_only=True)
        uninterrupted = torch.load(reference_dir / "models" / name, map_location="cpu", weights_only=True)
        weights = final.get("model", final)
        for key, tensor in uninterrupted.get("model", uninterrupted).items():
            assert torch.equal(weights[key], tensor), key
    summary = json.loads((killed_dir / "train_summary.json").read_text(encoding="utf-8"))
    reference_summary = json.loads((reference_dir / "train_summary.json").read_text(encoding="utf-8"))
    assert (summary["best_val_dice"], summary["best_epoch"]) == (
        reference_summary["best_val_dice"], reference_summary["best_epoch"]
    )

    # one MLflow run, continued: every epoch's metrics, equal to the uninterrupted run's
    runs, client = mlflow_history(killed_dir)
    assert [run.info.run_id for run in runs] == [run_id]
    assert runs[0].info.status == "FINISHED"
    for metric in ("train_loss", "val_mean_dice"):
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))
        assert logged == [(int(row["epoch"]), float(row[metric])) for row in expected], metric
    # the iterations of epoch 2 that ran before the kill were logged twice, with the same values
    by_step: dict[int, set[float]] = {}
    for m in client.get_metric_history(run_id, "train_loss_iteration"):
        by_step.setdefault(m.step, set()).add(m.value)
    assert sorted(by_step) == list(range(1, EPOCHS * state["trainer"]["epoch_length"] + 1))
    assert all(len(values) == 1 for values in by_step.values()), by_step
