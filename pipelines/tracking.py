"""Experiment tracking with MLflow through MONAI's bundle tracking mechanism.

The default tracking URI is an embedded SQLite store, ``sqlite:///<output_dir>/mlruns.db`` (artifacts in
``<output_dir>/mlruns``); ``MLFLOW_TRACKING_URI`` or ``--tracking-uri`` selects a server shared by a team
(``docs/mlflow_server.md``).

:func:`mlflow_settings` extends MONAI's ``DEFAULT_MLFLOW_SETTINGS`` (what ``monai.bundle run --tracking mlflow``
uses):

- every handler is a :class:`pipelines.handlers.MLFlowRunHandler`: a training records its run in
  ``<output_dir>/mlflow_run.json``, its validator logs into that run, a resumed training (``resume`` true)
  continues it, and a tracking server that goes away mid-run costs a warning, not the training;
- the trainer's per-iteration loss is logged as ``train_loss_iteration``, so that ``train_loss`` holds only the
  bundle's per-epoch average (MONAI's default tag would put both under one name);
- the handlers log the bundle's ``tracked_params`` as run parameters and its ``tracked_artifacts`` (figures, best
  checkpoint, metric tables) as artifacts. Bundles that lack those ids get MONAI's defaults;
- the trainer's and the evaluator's handlers tag their run with the config value ``run_tags`` and log
  ``run_datasets`` as its inputs (both empty unless the caller sets them: :mod:`pipelines.api` computes them with
  :mod:`pipelines.tracking_tags`).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

__all__ = ["default_tracking_uri", "experiment_id", "iteration_loss", "mlflow_settings", "RUN_FILE"]

TRACKING_ENV = "MLFLOW_TRACKING_URI"
HANDLER = "pipelines.handlers.MLFlowRunHandler"
RUN_FILE = "mlflow_run.json"


def default_tracking_uri(output_dir: str | Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<output_dir>/mlruns.db`` (an absolute path)."""
    env = os.environ.get(TRACKING_ENV)
    if env:
        return env
    return "sqlite:///" + (Path(output_dir) / "mlruns.db").resolve().as_posix()


def experiment_id(client: Any, name: str) -> str:
    """The id of experiment ``name`` at ``client``'s store, created if missing with its artifacts beside the
    database for a SQLite store (as MONAI's handler does), else where the server keeps them."""
    from monai.utils import path_to_uri

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    uri, location = str(client.tracking_uri), None
    if uri.startswith("sqlite:///"):
        location = path_to_uri(Path(uri[len("sqlite:///"):]).parent / "mlruns")
    return str(client.create_experiment(name, artifact_location=location))


def iteration_loss(output: Any) -> float:
    """The ``loss`` of a trainer's iteration output: a dict (our Ignite steps: CycleGAN, pix2pix) or MONAI's
    decollated list of dicts (``SupervisedTrainer``), where every item holds the batch's loss."""
    item = output[0] if isinstance(output, (list, tuple)) else output
    return float(item["loss"])


def mlflow_settings(config_ids: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """MONAI's MLflow settings with :class:`~pipelines.handlers.MLFlowRunHandler` handlers, the training's run
    recorded in ``<output_dir>/mlflow_run.json``, and params and artifacts taken from the bundle's ``tracked_*`` ids
    if present.

    Args:
        config_ids: top-level ids of the bundle config (only ids that exist may be referenced).
    """
    settings = copy.deepcopy(DEFAULT_MLFLOW_SETTINGS)
    configs = settings["configs"]
    for engine in ("trainer", "validator", "evaluator"):
        configs[engine]["_target_"] = HANDLER
    # the validator runs inside the training: it joins the run the trainer records (and continues on resume)
    run_file = f"$@output_dir + '/{RUN_FILE}'"
    configs["trainer"].update(run_file=run_file, resume="@resume" if "resume" in config_ids else False)
    configs["trainer"]["tag_name"] = "train_loss_iteration"
    configs["trainer"]["output_transform"] = {"_target_": "pipelines.tracking.iteration_loss", "_mode_": "callable"}
    configs["validator"].update(run_file=run_file, join=True)
    configs.update(run_tags={}, run_datasets=[])
    for engine in ("trainer", "evaluator"):
        configs[engine].update(tags="@run_tags", datasets="@run_datasets")
    for engine in ("trainer", "evaluator"):
        if "tracked_params" in config_ids:
            configs[engine]["experiment_param"] = "@tracked_params"
        if "tracked_artifacts" in config_ids:
            configs[engine]["artifacts"] = "$[@save_execute_config] + list(@tracked_artifacts)"
    return settings
