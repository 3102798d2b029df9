"""Training against a real ``mlflow server`` (SQLite backend, proxied artifact store, bound to 127.0.0.1): the run
reads back through ``MlflowClient``, and a server that goes away mid-run costs a warning, not the training.

The tests share one server (started on a free port, stopped with its whole process group at the end of the module);
the one that stops it mid-run leaves the next test, if any, to start another.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import requests

from pipelines import api, cli
from pipelines.handlers.figures import TrainingCurves
from pipelines.handlers.mlflow_run import MLFlowRunHandler

BUNDLE = "lv_segmentation_unet"


@dataclass
class Server:
    uri: str
    process: subprocess.Popen
    artifacts: Path

    def stop(self) -> None:
        """Stop the server and the worker it spawned (they share the process group started for it)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
                return


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(root: Path) -> Server:
    """``mlflow server`` on 127.0.0.1 with its own SQLite store and artifact folder, answering ``/health``."""
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
    ]
    # no background job runner: the tests need only tracking and artifacts, and it doubles the start-up time
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with (root / "server.log").open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", process, root / "artifacts")
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"mlflow server did not answer within 60 s:\n{(root / 'server.log').read_text(encoding='utf-8', errors='replace')[-3000:]}")
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"{server.uri}/health", timeout=2).ok:
                return server
        time.sleep(0.2)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Server]]:
    """A function returning the module's running server, starting one if there is none (or it was stopped)."""
    started: list[Server] = []

    def running() -> Server:
        if not started or started[-1].process.poll() is not None:
            started.append(start_server(tmp_path_factory.mktemp("mlflow_server")))
        return started[-1]

    yield running
    for server in started:
        server.stop()


@pytest.fixture
def server(servers: Callable[[], Server]) -> Server:
    return servers()


def only_run(client: mlflow.MlflowClient) -> mlflow.entities.Run:
    experiment = client.get_experiment_by_name(BUNDLE)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [run.info.run_name for run in runs]
    return runs[0]


def test_training_reads_back_from_the_server(server: Server, sunnybrook_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["train", BUNDLE, "--data", str(sunnybrook_dir), "--output", str(out), "--epochs", "2", "--max-cases", "1",
            "--tracking-uri", server.uri]
    assert cli.main(argv) == 0

    client = mlflow.MlflowClient(tracking_uri=server.uri)
    run = only_run(client)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["num_epochs"], params["split"], params["train_cases"]) == ("2", "seed", "1")
    with (out / "figures" / "history.csv").open(newline="", encoding="utf-8") as stream:
        local = list(csv.DictReader(stream))
    for metric in ("train_loss", "val_mean_dice"):
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, metric))
        assert logged == [(int(row["epoch"]), float(row[metric])) for row in local], metric
    assert [m.step for m in client.get_metric_history(run.info.run_id, "images_per_s")] == [1, 2]

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"curves.png", "history.csv", "validation_overlay.png", "model.pt"} <= artifacts
    assert any(name.startswith("config_") and name.endswith(".json") for name in artifacts)
    downloaded = client.download_artifacts(run.info.run_id, "model.pt", str(tmp_path))
    assert Path(downloaded).read_bytes() == (out / "models" / "model.pt").read_bytes()
    # artifacts went through the server into its store, nothing into a local MLflow store
    assert any(server.artifacts.rglob("model.pt"))
    assert not (out / "mlruns").exists() and not (out / "mlruns.db").exists()


def test_train_evaluate_predict_chain_is_named_tagged_and_registered(
    server: Server, sunnybrook_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readable run names, ``pipelines.*`` tags, content digests as inputs, the trained model registered with a
    link to its run, and evaluation / prediction runs that name the registered version they used."""
    import shutil

    import mlflow.pytorch
    import torch

    from pipelines.tracking_tags import datalist_digest, file_sha256, git_commit

    fast = {"batch_size": 8}
    train_dir = tmp_path / "train"
    argv = ["train", BUNDLE, "--data", str(sunnybrook_dir), "--output", str(train_dir), "--epochs", "1",
            "--max-cases", "2", "--fold", "2", "--set", "batch_size=8", "--tracking-uri", server.uri]
    assert cli.main(argv) == 0
    checkpoint = train_dir / "models" / "model.pt"
    api.evaluate(BUNDLE, sunnybrook_dir, checkpoint, tmp_path / "eval", fold=2, max_cases=2, overrides=fast,
                 tracking_uri=server.uri)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(sunnybrook_dir / "images" / "scd_044.nii.gz", inputs / "one.nii.gz")
    assert api.predict(BUNDLE, inputs, tmp_path / "pred", checkpoint=checkpoint, tracking_uri=server.uri).ok

    client = mlflow.MlflowClient(tracking_uri=server.uri)
    experiment = client.get_experiment_by_name(BUNDLE)
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    names = [f"{BUNDLE} train fold 2", f"{BUNDLE} evaluate test fold 2", f"{BUNDLE} predict"]
    assert set(names) <= set(runs), sorted(runs)
    train, evaluate, predict = (runs[name] for name in names)
    assert {r.info.status for r in (train, evaluate, predict)} == {"FINISHED"}
    sha = file_sha256(checkpoint)
    for run, command in ((train, "train"), (evaluate, "evaluate"), (predict, "predict")):
        tags = run.data.tags
        assert tags["pipelines.command"] == command
        assert tags["pipelines.git_commit"] == git_commit() and tags["pipelines.bundle"] == BUNDLE
        assert tags["pipelines.bundle_version"] and tags["pipelines.device"]
        assert len(tags["pipelines.dataset_digest"]) == 64
    assert train.data.tags["pipelines.command_line"].startswith(f"pipelines train {BUNDLE} ")
    assert (train.data.tags["pipelines.split"], train.data.tags["pipelines.fold"]) == ("fold2", "2")
    digests = datalist_digest(sunnybrook_dir, "fold2", ["train", "validation"], max_cases=2)
    contexts = {i.dataset.digest: {t.value for t in i.tags} for i in train.inputs.dataset_inputs}
    assert contexts == {digests[0].digest[:36]: {"training"}, digests[1].digest[:36]: {"validation"}}

    # the best checkpoint, logged as an MLflow PyTorch model and registered, links to its training run
    versions = client.search_model_versions(f"name = '{BUNDLE}'")  # one per training on this server
    (version,) = [v for v in versions if v.tags["pipelines.checkpoint_sha256"] == sha]
    assert version.run_id == train.info.run_id
    assert "model/MLmodel" in {a.path for a in client.list_artifacts(train.info.run_id, "model")}
    for run in (evaluate, predict):
        assert run.data.tags["pipelines.checkpoint_sha256"] == sha
        assert run.data.tags["pipelines.registered_model"] == f"{BUNDLE}/{version.version}"
        assert run.data.tags["pipelines.registered_run_id"] == train.info.run_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)  # models:/ URIs are resolved by the fluent API
    model = mlflow.pytorch.load_model(f"models:/{BUNDLE}/{version.version}")  # a torch.export graph
    assert tuple(model(torch.zeros(3, 1, 64, 64)).shape) == (3, 2, 64, 64)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")

    assert cli.main(["register", BUNDLE, "--tracking-uri", server.uri]) == 0
    shipped = client.get_model_version_by_alias(BUNDLE, "shipped")
    assert shipped.tags["pipelines.checkpoint_sha256"] == file_sha256(api.BUNDLES_DIR / BUNDLE / "models" / "model.pt")
    assert float(shipped.tags["eval.mean_dice"]) > 0.8
    assert client.get_run(shipped.run_id).info.run_name == f"{BUNDLE} register"


def test_server_going_away_mid_run_costs_a_warning(
    server: Server, sunnybrook_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "run"
    record_epoch = TrainingCurves.__call__

    def stop_server_after_epoch_one(self: TrainingCurves, engine) -> None:  # noqa: ANN001
        record_epoch(self, engine)
        if engine.state.epoch == 1:
            server.stop()

    calls: list[float] = []
    guarded = MLFlowRunHandler._guarded

    def timed(self: MLFlowRunHandler, method, *args) -> None:  # noqa: ANN001
        start = time.perf_counter()
        guarded(self, method, *args)
        calls.append(time.perf_counter() - start)

    monkeypatch.setattr(TrainingCurves, "__call__", stop_server_after_epoch_one)
    monkeypatch.setattr(MLFlowRunHandler, "_guarded", timed)
    with caplog.at_level(logging.WARNING, logger="pipelines"):
        summary = api.train(BUNDLE, sunnybrook_dir, out, epochs=2, max_cases=1, tracking_uri=server.uri)

    assert server.process.poll() is not None
    assert summary["epochs"] == 2
    assert (out / "models" / "model.pt").is_file() and (out / "models" / "checkpoint.pt").is_file()
    with (out / "figures" / "history.csv").open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert all(row["train_loss"] and row["val_mean_dice"] for row in rows)
    warnings = [r.getMessage() for r in caplog.records if "MLflow tracking at" in r.getMessage()]
    assert 1 <= len(warnings) <= 2, warnings  # the trainer's handler and the validator's, once each
    assert server.uri in warnings[0] and "tracking is off" in warnings[0]
    # bounded retries: MLflow's defaults (7 retries, exponential back-off) would take minutes per request
    assert max(calls) < 20, sorted(calls)[-3:]
