"""Logging a ``pipelines measure`` run to MLflow: the table, the case documents and figures, per-case metrics.

Tracked only when a store is named (``--tracking-uri`` or ``MLFLOW_TRACKING_URI``); the run goes to the experiment
``measure`` under a new run name, with the measures of each case as metrics ``<case>/<measure>`` (``lv_ef_pct``,
``lv_edv_ml``...), the number of QC flags as ``<case>/qc_flag_count``, and every written file as an artifact. A
tracking store that fails costs a warning; the measures are on disk already.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["EXPERIMENT", "tracking_requested", "log_measures"]

logger = logging.getLogger(__name__)

EXPERIMENT = "measure"
TRACKING_ENV = "MLFLOW_TRACKING_URI"


def tracking_requested(tracking_uri: str | None) -> bool:
    """Whether a tracking store is named, by the argument or by ``MLFLOW_TRACKING_URI``."""
    return bool(tracking_uri or os.environ.get(TRACKING_ENV))


def _metrics(summaries: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for summary in summaries:
        for name, value in summary["measures"].items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                metrics[f"{summary['case']}/{name}"] = float(value)
        metrics[f"{summary['case']}/qc_flag_count"] = float(len(summary["qc_flags"]))
    return metrics


def log_measures(
    tracking_uri: str | None,
    run_name: str,
    summaries: Sequence[Mapping[str, Any]],
    files: Sequence[Path],
    params: Mapping[str, str],
) -> str | None:
    """Log one run to MLflow; return its id, or None when the store failed (logged as a warning).

    Args:
        tracking_uri: the store (None: ``MLFLOW_TRACKING_URI``).
        run_name: the run's name.
        summaries: what :func:`~pipelines.measure.measure_pair` / ``measure_cine`` returned for each case.
        files: the files to log as artifacts.
        params: run parameters (the command's form and inputs).
    """
    import mlflow
    from mlflow.entities import Metric, Param
    from monai.utils import path_to_uri

    from pipelines.handlers.mlflow_run import TRACKING_ERRORS

    uri = tracking_uri or os.environ[TRACKING_ENV]
    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            # as MONAI's handler does for a SQLite store: artifacts beside the database, not in the working folder
            location = None
            if uri.startswith("sqlite:///"):
                location = path_to_uri(Path(uri[len("sqlite:///"):]).parent / "mlruns")
            experiment_id = client.create_experiment(EXPERIMENT, artifact_location=location)
        run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, now, 0) for key, value in _metrics(summaries).items()],
            params=[Param(key, str(value)) for key, value in params.items()],
        )
        for path in files:
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id)
    except TRACKING_ERRORS as exc:
        logger.warning("MLflow tracking at %s failed; the measures are written but not tracked (%s)",
                       uri, " ".join(str(exc).split())[:300])
        return None
    logger.info("logged MLflow run %s (%s) to %s", run_name, run_id, uri)
    return run_id
