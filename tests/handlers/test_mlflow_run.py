"""Tests for :mod:`pipelines.handlers.mlflow_run`, driven by tiny Ignite engines against a local SQLite store (one
per module, an experiment per test) and an address where no server listens."""

from __future__ import annotations

import json
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from ignite.engine import Engine, Events

from pipelines.handlers.mlflow_run import MLFlowRunHandler



@pytest.fixture(autouse=True)
def no_tracking_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@dataclass
class Store:
    uri: str
    experiment: str

    def handler(self, **kwargs) -> MLFlowRunHandler:
        return MLFlowRunHandler(self.uri, experiment_name=self.experiment, iteration_log=False, **kwargs)

    def runs(self) -> list:
        client = mlflow.MlflowClient(tracking_uri=self.uri)
        return client.search_runs([client.get_experiment_by_name(self.experiment).experiment_id])

    def history(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        client = mlflow.MlflowClient(tracking_uri=self.uri)
        return sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    return "sqlite:///" + (tmp_path_factory.mktemp("mlflow") / "mlruns.db").as_posix()


@pytest.fixture
def store(database: str, request: pytest.FixtureRequest) -> Store:
    """The module's database (created once: that takes seconds) with an experiment named after the test."""
    return Store(database, request.node.name)


def engine_with_loss(offset: float = 0.0) -> Engine:
    """An engine that puts ``loss = epoch + offset`` into its metrics at every epoch."""
    engine = Engine(lambda e, b: None)
    engine.add_event_handler(
        Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(loss=e.state.epoch + offset)
    )
    return engine


def test_a_training_records_its_run_and_the_validator_joins_it(store: Store, tmp_path: Path) -> None:
    run_file = tmp_path / "mlflow_run.json"
    trainer, validator = engine_with_loss(), engine_with_loss(offset=0.5)
    store.handler(run_file=run_file, close_on_complete=True).attach(trainer)
    store.handler(run_file=run_file, join=True).attach(validator)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: validator.run([0], max_epochs=e.state.epoch))
    trainer.run([0, 1], max_epochs=2)

    (run,) = store.runs()
    assert json.loads(run_file.read_text(encoding="utf-8")) == {
        "tracking_uri": store.uri, "experiment_id": run.info.experiment_id, "run_id": run.info.run_id,
    }
    assert run.info.status == "FINISHED"
    assert store.history(run.info.run_id, "loss") == [(1, 1.0), (1, 1.5), (2, 2.0), (2, 2.5)]


def crash(engine: Engine) -> None:
    raise RuntimeError("simulated crash")


def test_a_resumed_training_continues_its_run_and_a_new_one_starts_another(store: Store, tmp_path: Path) -> None:
    run_file = tmp_path / "mlflow_run.json"
    crashed = engine_with_loss()
    store.handler(run_file=run_file, close_on_complete=True).attach(crashed)
    crashed.add_event_handler(Events.EPOCH_COMPLETED(once=1), crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.run([0], max_epochs=3)
    (run,) = store.runs()
    assert run.info.status == "RUNNING"

    resumed = engine_with_loss()
    store.handler(run_file=run_file, resume=True, close_on_complete=True).attach(resumed)
    resumed.run([0], max_epochs=3)
    (again,) = store.runs()
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    steps = [step for step, _ in store.history(run.info.run_id, "loss")]
    assert steps == [1, 1, 2, 3]  # epoch 1 of the crashed engine, then epochs 1-3 of the fresh one

    fresh = engine_with_loss()
    store.handler(run_file=run_file, close_on_complete=True).attach(fresh)
    fresh.run([0], max_epochs=1)
    assert len(store.runs()) == 2
    assert json.loads(run_file.read_text(encoding="utf-8"))["run_id"] != run.info.run_id


def test_without_a_run_file_each_start_is_a_new_run(store: Store) -> None:
    """MONAI's handler would log into the first unfinished run of the experiment: someone else's, on a server."""
    first = engine_with_loss()
    store.handler().attach(first)  # left unfinished (RUNNING)
    first.run([0], max_epochs=1)
    second = engine_with_loss()
    store.handler(close_on_complete=True).attach(second)
    second.run([0], max_epochs=1)
    assert len(store.runs()) == 2


def test_resume_without_a_record_starts_a_new_run(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_with_loss()
    store.handler(run_file=tmp_path / "missing.json", resume=True, close_on_complete=True).attach(engine)
    with caplog.at_level(logging.WARNING, logger="pipelines"):
        engine.run([0], max_epochs=1)
    assert len(store.runs()) == 1
    assert any("no MLflow run recorded" in record.getMessage() for record in caplog.records)


def test_changed_parameters_keep_the_logged_values(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_file = tmp_path / "mlflow_run.json"
    first = engine_with_loss()
    store.handler(run_file=run_file, experiment_param={"lr": 0.1, "seed": 0}).attach(first)
    first.run([0], max_epochs=1)
    resumed = engine_with_loss()
    params = {"lr": 0.2, "seed": 0, "note": "resumed"}
    store.handler(run_file=run_file, resume=True, experiment_param=params, close_on_complete=True).attach(resumed)
    with caplog.at_level(logging.WARNING, logger="pipelines"):
        resumed.run([0], max_epochs=2)
    (run,) = store.runs()
    assert run.data.params["lr"] == "0.1" and run.data.params["note"] == "resumed"
    assert any("keeps its logged parameters" in record.getMessage() for record in caplog.records)


def test_an_unreachable_server_costs_one_warning_and_seconds(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{probe.getsockname()[1]}"
    engine = engine_with_loss()
    tracking = Store(uri, "unreachable").handler(close_on_complete=True, http_max_retries=1)
    tracking.attach(engine)
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="pipelines"):
        state = engine.run([0, 1], max_epochs=3)
    assert state.epoch == 3 and tracking.disabled
    assert time.perf_counter() - start < 15
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("pipelines")]
    assert len(warnings) == 1 and uri in warnings[0] and "tracking is off" in warnings[0]


def test_the_argument_wins_over_the_environment(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--tracking-uri`` reaches the handler as its argument; MONAI's handler would let the variable win."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing there
    engine = engine_with_loss()
    tracking = store.handler(close_on_complete=True)
    tracking.attach(engine)
    engine.run([0], max_epochs=2)
    assert tracking.tracking_uri == store.uri and not tracking.disabled
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (run,) = store.runs()
    assert store.history(run.info.run_id, "loss") == [(1, 1.0), (2, 2.0)]


def test_the_run_gets_its_tags_and_content_digested_datasets_once(store: Store, tmp_path: Path) -> None:
    run_file = tmp_path / "mlflow_run.json"
    datasets = [{"name": "seed/train", "context": "training", "digest": "a" * 64, "cases": "2",
                 "source": str(tmp_path)},
                {"name": "seed/validation", "context": "validation", "digest": "b" * 64, "cases": "1",
                 "source": str(tmp_path)}]
    tags = {"pipelines.command": "train", "pipelines.dataset_digest": "c" * 64}
    trainer, validator = engine_with_loss(), engine_with_loss()
    store.handler(run_file=run_file, tags=tags, datasets=datasets, close_on_complete=True).attach(trainer)
    store.handler(run_file=run_file, join=True, tags={"pipelines.command": "validate"}).attach(validator)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: validator.run([0], max_epochs=e.state.epoch))
    trainer.run([0], max_epochs=1)
    resumed = engine_with_loss()  # a resumed training logs the same datasets: not twice
    store.handler(run_file=run_file, resume=True, tags=tags, datasets=datasets, close_on_complete=True).attach(resumed)
    resumed.run([0], max_epochs=2)

    (run,) = store.runs()
    assert run.data.tags["pipelines.command"] == "train"  # the validator that joined set none
    assert run.data.tags["pipelines.pid"].isdigit() and run.data.tags["pipelines.host"]
    inputs = {(i.dataset.name, i.dataset.digest, next(t.value for t in i.tags if t.key == "mlflow.data.context"))
              for i in run.inputs.dataset_inputs}
    assert inputs == {("seed/train", "a" * 36, "training"), ("seed/validation", "b" * 36, "validation")}
    assert len(run.inputs.dataset_inputs) == 2
    assert json.loads(run.inputs.dataset_inputs[0].dataset.profile)["sha256"] in ("a" * 64, "b" * 64)


@pytest.mark.parametrize(("error", "status"), [(RuntimeError("simulated crash"), "FAILED"),
                                               (KeyboardInterrupt(), "KILLED")])
def test_a_run_interrupted_inside_the_scope_ends_failed_or_killed(
    store: Store, tmp_path: Path, error: BaseException, status: str
) -> None:
    from pipelines.handlers.mlflow_run import ending_runs_on_error

    def interrupt(engine: Engine) -> None:
        raise error

    run_file = tmp_path / "mlflow_run.json"
    trainer, validator = engine_with_loss(), engine_with_loss()
    store.handler(run_file=run_file, close_on_complete=True).attach(trainer)
    store.handler(run_file=run_file, join=True).attach(validator)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: validator.run([0], max_epochs=e.state.epoch))
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=2), interrupt)
    with pytest.raises(type(error)), ending_runs_on_error():
        trainer.run([0], max_epochs=3)
    (run,) = store.runs()
    assert run.info.status == status
    assert run.data.tags["pipelines.end_reason"].startswith(type(error).__name__)

    finished = engine_with_loss()  # a run that finished before the error is left as it is
    with pytest.raises(RuntimeError), ending_runs_on_error():
        store.handler(close_on_complete=True).attach(finished)
        finished.run([0], max_epochs=1)
        raise RuntimeError("after the run")
    assert sorted(r.info.status for r in store.runs()) == sorted([status, "FINISHED"])


def test_a_run_left_running_by_a_dead_process_is_ended_at_the_next_start(store: Store) -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = engine_with_loss()
    store.handler().attach(abandoned)  # never closed: RUNNING, as after a server outage or a kill -9
    abandoned.run([0], max_epochs=1)
    (left,) = store.runs()
    mlflow.MlflowClient(tracking_uri=store.uri).set_tag(left.info.run_id, "pipelines.pid", dead.stdout.strip())
    alive = engine_with_loss()
    store.handler().attach(alive)  # this process's own unfinished run is not touched
    alive.run([0], max_epochs=1)

    nxt = engine_with_loss()
    store.handler(close_on_complete=True).attach(nxt)
    nxt.run([0], max_epochs=1)
    statuses = {r.info.run_id: r.info.status for r in store.runs()}
    assert statuses[left.info.run_id] == "KILLED"
    assert sorted(statuses.values()) == ["FINISHED", "KILLED", "RUNNING"]
