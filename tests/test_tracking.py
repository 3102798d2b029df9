"""Tests for :mod:`pipelines.tracking`: the default MLflow store and the settings handed to MONAI."""

from __future__ import annotations

from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

from pipelines.tracking import TRACKING_ENV, default_tracking_uri, mlflow_settings


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


def test_settings_without_tracked_ids_are_monais():
    assert mlflow_settings() == DEFAULT_MLFLOW_SETTINGS
    assert mlflow_settings({"num_epochs", "output_dir"}) == DEFAULT_MLFLOW_SETTINGS


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
