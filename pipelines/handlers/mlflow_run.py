"""MONAI's ``MLFlowHandler`` made fit for long runs on a shared tracking server.

MONAI's handler, given no ``run_name``, logs into whichever unfinished run of the experiment it finds first, so on
a shared server two trainings of one bundle can end up in one run; any failed request to the server raises out
of the Ignite event and ends the training; and ``MLFLOW_TRACKING_URI`` overrides its ``tracking_uri`` argument.
:class:`MLFlowRunHandler` (what :func:`pipelines.tracking.mlflow_settings` gives every workflow) changes that:

- the run is always one this workflow created or recorded: a new training creates a run and records its id in a
  JSON file in the output folder, the validator logs into that run, and a resumed training continues it;
- if the tracking server stops answering, the handler logs one warning and switches itself off; the training goes
  on, and its metrics stay in the run folder (``figures/history.csv``);
- MLflow's HTTP retries are bounded (by default 2 retries, 15 s timeout, unless ``MLFLOW_HTTP_REQUEST_*`` are set),
  so a server that went away costs seconds, not MLflow's default of several minutes of back-off per request;
- a ``tracking_uri`` argument wins over ``MLFLOW_TRACKING_URI``: the bundles resolve it as ``--tracking-uri``, else
  the variable, else the run folder's SQLite store, and the handler keeps that choice;
- the run it creates gets ``tags`` (``pipelines.*``: commit, bundle, digests, see :mod:`pipelines.tracking_tags`)
  and ``datasets`` as MLflow inputs, whose digest is that of their content, not of their paths as in MONAI;
- a run does not stay ``RUNNING`` for ever: inside :func:`ending_runs_on_error` (what :mod:`pipelines.api` runs
  every workflow in) an exception ends it ``FAILED`` and a ``KeyboardInterrupt`` ``KILLED``; a run whose
  tracking server went away is ended (``FINISHED``, tagged ``pipelines.tracking_incomplete``) at the end of the
  training if the server is back by then, else the next handler to start in that experiment on the same machine
  ends it ``KILLED`` once its process is gone (tags ``pipelines.host`` / ``pipelines.pid``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import requests
from ignite.engine import Engine
from mlflow.entities import RunStatus, RunTag
from mlflow.exceptions import MlflowException
from monai.handlers import MLFlowHandler
from monai.utils import path_to_uri

from pipelines.io.atomic import atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["MLFlowRunHandler", "TRACKING_ERRORS", "bounded_http", "ending_runs_on_error"]

# what a tracking server that went away (or a full disk under a local store) raises through the MLflow client
TRACKING_ERRORS: tuple[type[BaseException], ...] = (MlflowException, requests.RequestException, OSError)

HOST_TAG, PID_TAG = "pipelines.host", "pipelines.pid"
INCOMPLETE_TAG, END_REASON_TAG = "pipelines.tracking_incomplete", "pipelines.end_reason"

# the handlers started inside each active ending_runs_on_error block, innermost last
_scopes: list[list[MLFlowRunHandler]] = []


@contextlib.contextmanager
def ending_runs_on_error() -> Iterator[None]:
    """End the runs that handlers started inside the block when it raises: ``KILLED`` for a ``KeyboardInterrupt``
    (or ``SystemExit``), ``FAILED`` for any other exception, with its type and message as ``pipelines.end_reason``.
    Runs that their handlers finished are left alone; the exception goes on."""
    started: list[MLFlowRunHandler] = []
    _scopes.append(started)
    try:
        yield
    except BaseException as exc:
        status = RunStatus.KILLED if isinstance(exc, (KeyboardInterrupt, SystemExit)) else RunStatus.FAILED
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
        ended: set[str] = set()
        for handler in started:
            run_id = handler.end_unfinished(RunStatus.to_string(status), reason, skip=ended)
            if run_id:
                ended.add(run_id)
        raise
    finally:
        _scopes.remove(started)


@contextlib.contextmanager
def _environment_defaults(defaults: dict[str, str]) -> Iterator[None]:
    """Set the environment variables in ``defaults`` that are unset, for the duration of the block."""
    added = {name: value for name, value in defaults.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def bounded_http(max_retries: int = 2, timeout_s: int = 15) -> contextlib.AbstractContextManager[None]:
    """MLflow's HTTP retries and timeout bounded for the block (unless ``MLFLOW_HTTP_REQUEST_*`` are set), so that
    a server that went away costs seconds, not minutes of back-off."""
    return _environment_defaults({
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(max_retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s),
    })


class MLFlowRunHandler(MLFlowHandler):
    """An :class:`monai.handlers.MLFlowHandler` that logs into a known run and survives a failing tracking server.

    Args:
        tracking_uri: the tracking store or server; None for ``MLFLOW_TRACKING_URI``, else ``./mlruns.db``.
        args: further positional arguments of :class:`~monai.handlers.MLFlowHandler`.
        run_file: JSON file recording the run (``tracking_uri``, ``experiment_id``, ``run_id``); None to create a
            new run at every start and record nothing (evaluation, prediction).
        resume: continue the run recorded in ``run_file`` (a resumed training) instead of starting a new one; a
            missing or foreign record (another tracking URI, a deleted run) starts a new run, with a warning.
        join: log into the run recorded in ``run_file`` by another handler of the same workflow (the validator
            into the trainer's run); a new run is created only if none is recorded.
        tags: run tags set when this handler creates or resumes its run (not when it joins one).
        datasets: the datasets the run reads, logged as MLflow inputs (once per digest): mappings with ``name``,
            ``digest``, ``context`` (``training``...), ``source`` and ``cases``
            (:meth:`pipelines.tracking_tags.DatasetDigest.as_dict`).
        http_max_retries: MLflow's retries per HTTP request, unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` is set.
        http_timeout_s: seconds MLflow waits for an HTTP response, unless ``MLFLOW_HTTP_REQUEST_TIMEOUT`` is set.
        kwargs: keyword arguments of :class:`~monai.handlers.MLFlowHandler`.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *args: Any,
        run_file: str | Path | None = None,
        resume: bool = False,
        join: bool = False,
        tags: Mapping[str, str] | None = None,
        datasets: Sequence[Mapping[str, str]] | None = None,
        http_max_retries: int = 2,
        http_timeout_s: int = 15,
        **kwargs: Any,
    ) -> None:
        super().__init__(tracking_uri, *args, **kwargs)
        if tracking_uri and os.environ.get("MLFLOW_TRACKING_URI") not in (None, "", tracking_uri):
            # MONAI's handler talks to the environment's URI whenever it is set; here the argument is the user's choice
            if kwargs.get("artifact_location") is None:  # as MONAI does for a SQLite store: artifacts next to it
                sqlite = tracking_uri.startswith("sqlite:///")
                db_folder = Path(tracking_uri[len("sqlite:///"):]).parent
                self.artifact_location = path_to_uri(db_folder / "mlruns") if sqlite else None
            self.client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        self.run_file = Path(run_file) if run_file is not None else None
        self.resume = resume
        self.join = join
        self.tags = dict(tags or {})
        self.datasets = list(datasets or [])
        self.http_limits = {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(http_max_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(http_timeout_s),
        }
        self.disabled = False

    @property
    def tracking_uri(self) -> str:
        """The URI the client talks to."""
        return str(self.client.tracking_uri)

    def _guarded(self, method: Callable[..., Any], *args: Any) -> None:
        """Run ``method`` with bounded HTTP retries; on a tracking failure warn once and switch tracking off."""
        if self.disabled:
            return
        try:
            with _environment_defaults(self.http_limits):
                method(*args)
        except TRACKING_ERRORS as exc:
            self.disabled = True
            reason = " ".join(str(exc).split())[:300]
            logger.warning(
                "MLflow tracking at %s failed (%s: %s); tracking is off for the rest of this run, whose metrics "
                "stay in its output folder", self.tracking_uri, type(exc).__name__, reason,
            )

    def start(self, engine: Engine) -> None:
        self._guarded(self._start, engine)

    def iteration_completed(self, engine: Engine) -> None:
        self._guarded(super().iteration_completed, engine)

    def epoch_completed(self, engine: Engine) -> None:
        self._guarded(super().epoch_completed, engine)

    def complete(self) -> None:
        self._guarded(super().complete)

    def close(self) -> None:
        if self.disabled:
            self._end_after_outage()
            with contextlib.suppress(*TRACKING_ERRORS):
                self._dispose_sqlite_store()
            return
        self._guarded(super().close)

    def _end_after_outage(self) -> None:
        """One try to end the run that lost its server mid-way (it may be back); else the next start ends it."""
        if self.cur_run is None:
            return
        run_id = self.cur_run.info.run_id
        try:
            with _environment_defaults(self.http_limits):
                self.client.set_tag(run_id, INCOMPLETE_TAG, "true")
                self.client.set_terminated(run_id, self.run_finish_status)
            logger.info("MLflow run %s ended after the outage; its metrics are incomplete", run_id)
            self.cur_run = None
        except TRACKING_ERRORS:
            logger.info("MLflow run %s stays RUNNING until a later start on this machine ends it", run_id)

    def end_unfinished(self, status: str, reason: str, skip: set[str] | frozenset[str] = frozenset()) -> str | None:
        """End this handler's run with ``status`` unless it ended already (or its id is in ``skip``); return the
        run id when the run was this handler's to end. Tracking failures cost a warning."""
        if self.cur_run is None or self.disabled or self.cur_run.info.run_id in skip:
            return None
        run_id = self.cur_run.info.run_id

        def end() -> None:
            if self.client.get_run(run_id).info.status == RunStatus.to_string(RunStatus.RUNNING):
                self.client.set_tag(run_id, END_REASON_TAG, reason)
                self.client.set_terminated(run_id, status)
                logger.info("MLflow run %s ended %s (%s)", run_id, status, reason)

        self._guarded(end)
        return run_id

    def _start(self, engine: Engine) -> None:
        """Pick the run (recorded or new), tag it and log its datasets, before MONAI's ``start`` logs the
        parameters into it."""
        if self.cur_run is None:
            self._set_experiment()
            joined = False
            if self.resume or self.join:
                self.cur_run = self._recorded_run()
                joined = self.join and self.cur_run is not None
            if self.cur_run is None:
                run_name = self.run_name or f"run_{time.strftime('%Y%m%d_%H%M%S')}"
                self.cur_run = self.client.create_run(self.experiment.experiment_id, run_name=run_name)
                logger.info("MLflow run %s (%s) at %s", run_name, self.cur_run.info.run_id, self.tracking_uri)
            if _scopes:
                _scopes[-1].append(self)
            if not joined:
                self._end_stale_runs()
                self._tag_run()
            if self.run_file is not None:
                record = {
                    "tracking_uri": self.tracking_uri,
                    "experiment_id": self.cur_run.info.experiment_id,
                    "run_id": self.cur_run.info.run_id,
                }
                atomic_write_json(self.run_file, record)
        super().start(engine)

    def _tag_run(self) -> None:
        """Set the run's tags (with this machine and process, see :meth:`_end_stale_runs`) and log its datasets."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        run_id = self.cur_run.info.run_id
        tags = {**self.tags, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
        self.client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])
        if not self.datasets:
            return
        logged = {d.dataset.digest for d in self.client.get_run(run_id).inputs.dataset_inputs}
        inputs = []
        for dataset in self.datasets:
            if dataset["digest"][:36] in logged:
                continue
            # MLflow keeps 36 characters of a digest; the full sha256 is in the profile
            entity = Dataset(
                name=dataset["name"], digest=dataset["digest"][:36], source_type="local",
                source=json.dumps({"uri": dataset["source"]}),
                profile=json.dumps({"cases": int(dataset["cases"]), "sha256": dataset["digest"]}),
            )
            inputs.append(DatasetInput(entity, tags=[InputTag("mlflow.data.context", dataset["context"])]))
        if inputs:
            self.client.log_inputs(run_id, datasets=inputs)

    def _end_stale_runs(self) -> None:
        """End ``KILLED`` the runs of this experiment left ``RUNNING`` by processes of this machine that are gone
        (a training killed outright, or one whose server was away when it ended)."""
        host = socket.gethostname().replace("'", "")
        stale = self.client.search_runs(
            [self.experiment.experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
        )
        for run in stale:
            pid = run.data.tags.get(PID_TAG, "")
            if run.info.run_id == self.cur_run.info.run_id or not pid.isdigit() or _process_alive(int(pid)):
                continue
            reason = f"process {pid} on {host} ended without ending the run; ended at the next start"
            self.client.set_tag(run.info.run_id, END_REASON_TAG, reason)
            self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
            logger.warning("MLflow run %s (%s) was left RUNNING by %s; marked KILLED",
                           run.info.run_name, run.info.run_id, reason.split(";")[0])

    def _recorded_run(self) -> Any:
        """The run recorded in ``run_file``, marked running again when resumed; None if there is no usable one."""
        if self.run_file is None or not self.run_file.is_file():
            if self.resume:
                logger.warning("no MLflow run recorded in %s; the resumed training starts a new run", self.run_file)
            return None
        record = json.loads(self.run_file.read_text(encoding="utf-8"))
        if record.get("tracking_uri") != self.tracking_uri:
            logger.warning(
                "%s records a run at %s, not at %s; starting a new run",
                self.run_file, record.get("tracking_uri"), self.tracking_uri,
            )
            return None
        try:
            run = self.client.get_run(record["run_id"])
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            logger.warning(
                "MLflow run %s recorded in %s no longer exists; starting a new run", record["run_id"], self.run_file
            )
            return None
        if run.info.lifecycle_stage != "active":
            logger.warning("MLflow run %s was deleted; starting a new run", run.info.run_id)
            return None
        if self.resume:
            if run.info.status != RunStatus.to_string(RunStatus.RUNNING):
                self.client.update_run(run.info.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            logger.info("continuing MLflow run %s at %s", run.info.run_id, self.tracking_uri)
        return run

    def _log_params(self, params: dict[str, Any]) -> None:
        """Log the parameters the run lacks; MLflow refuses to change a logged value, so a resumed run keeps its own
        values (a warning names any that differ)."""
        if self.cur_run is not None and params:
            logged = self.client.get_run(self.cur_run.info.run_id).data.params
            changed = {k: (logged[k], str(v)) for k, v in params.items() if k in logged and logged[k] != str(v)}
            if changed:
                logger.warning("MLflow run %s keeps its logged parameters, not: %s", self.cur_run.info.run_id, changed)
            params = {k: v for k, v in params.items() if k not in logged}
            if not params:
                return
        super()._log_params(params)
