"""Tests for :mod:`pipelines.tracking`: the default MLflow store and the settings handed to MONAI."""

from __future__ import annotations

from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

from pipelines.tracking import RUN_FILE, TRACKING_ENV, default_tracking_uri, iteration_loss, mlflow_settings


def test_default_uri_is_an_absolute_sqlite_path(tmp_path, monkeypatch):
    monkeypatch.delenv(TRACKING_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    uri = default_tracking_uri("runs/unet")
    assert uri == "sqlite:///" + (tmp_path.resolve() / "runs" / "unet" / "mlruns.db").as_posix()
    assert uri.startswith("sqlite:////")  # three slashes of the scheme, then the absolute path's own


def test_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(TRACKING_ENV, "http://mlflow.example:5000")
    assert default_tracking_uri(tmp_path) == "http://mlflow.example:5000"


def test_empty_environment_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv(TRACKING_ENV, "")
    assert default_tracking_uri(tmp_path) == "sqlite:///" + (tmp_path.resolve() / "mlruns.db").as_posix()


def _monai_part(settings: dict) -> dict:
    """The settings without what :func:`mlflow_settings` adds to or changes in every handler."""
    ours = {"_target_", "run_file", "resume", "join", "tag_name", "output_transform", "tags", "datasets"}
    configs = {
        k: ({kk: vv for kk, vv in v.items() if kk not in ours} if isinstance(v, dict) else v)
        for k, v in settings["configs"].items() if k not in ("run_tags", "run_datasets")
    }
    return {**settings, "configs": configs}


def test_settings_without_tracked_ids_are_monais_with_our_handler():
    for ids in (set(), {"num_epochs", "output_dir"}):
        settings = mlflow_settings(ids)
        assert _monai_part(settings) == _monai_part(DEFAULT_MLFLOW_SETTINGS)
        configs = settings["configs"]
        assert {configs[e]["_target_"] for e in ("trainer", "validator", "evaluator")} == {
            "pipelines.handlers.MLFlowRunHandler"
        }
        assert configs["trainer"]["resume"] is False  # no "resume" id to refer to
        assert configs["trainer"]["output_transform"] == {"_target_": "pipelines.tracking.iteration_loss",
                                                          "_mode_": "callable"}


def test_the_iteration_loss_is_read_from_dict_and_decollated_outputs():
    """A GAN step returns one dict; MONAI's SupervisedTrainer a list of per-image dicts that share the loss."""
    import torch

    assert iteration_loss({"loss": 1.5, "loss_D": 0.2}) == 1.5
    assert iteration_loss([{"loss": torch.tensor(0.25)}, {"loss": torch.tensor(0.25)}]) == 0.25


def test_the_training_records_its_run_and_the_validator_joins_it():
    configs = mlflow_settings({"resume", "output_dir"})["configs"]
    assert configs["trainer"]["run_file"] == configs["validator"]["run_file"] == f"$@output_dir + '/{RUN_FILE}'"
    assert configs["trainer"]["resume"] == "@resume"
    assert configs["validator"]["join"] is True
    assert "run_file" not in configs["evaluator"]  # evaluation and prediction: a new run every time
    # the per-iteration loss does not share a name with the per-epoch train_loss
    assert configs["trainer"]["tag_name"] == "train_loss_iteration"
    # the run's own handler tags it and logs its datasets; the validator joins a run tagged already
    assert configs["trainer"]["tags"] == configs["evaluator"]["tags"] == "@run_tags"
    assert configs["trainer"]["datasets"] == configs["evaluator"]["datasets"] == "@run_datasets"
    assert "tags" not in configs["validator"] and (configs["run_tags"], configs["run_datasets"]) == ({}, [])


def test_settings_with_tracked_params_and_artifacts():
    settings = mlflow_settings({"tracked_params", "tracked_artifacts", "num_epochs"})
    for engine in ("trainer", "evaluator"):
        handler = settings["configs"][engine]
        assert handler["experiment_param"] == "@tracked_params"
        assert handler["artifacts"] == "$[@save_execute_config] + list(@tracked_artifacts)"
    assert "experiment_param" not in settings["configs"]["validator"]
    assert "experiment_param" not in DEFAULT_MLFLOW_SETTINGS["configs"]["trainer"]  # MONAI's copy is untouched


def test_settings_with_only_params():
    settings = mlflow_settings(frozenset({"tracked_params"}))
    assert settings["configs"]["trainer"]["experiment_param"] == "@tracked_params"
    assert settings["configs"]["trainer"]["artifacts"] == DEFAULT_MLFLOW_SETTINGS["configs"]["trainer"]["artifacts"]
