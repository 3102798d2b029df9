"""Shared helpers of the bundle smoke tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def _monai_bundle_run(bundle_dir: Path, dataset_dir: Path, output_dir: Path, *options: str) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` of ``bundle_dir``'s train.json, the model-zoo way, with MLflow tracking."""
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(bundle_dir / "configs" / "train.json"),
        "--meta_file", str(bundle_dir / "configs" / "metadata.json"),
        "--logging_file", str(bundle_dir / "configs" / "logging.conf"),
        "--bundle_root", str(bundle_dir),
        "--dataset_dir", str(dataset_dir),
        "--output_dir", str(output_dir),
        *options,
        "--tracking", "mlflow",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=300, env=env)


@pytest.fixture
def monai_bundle_run() -> Callable[..., subprocess.CompletedProcess]:
    """``monai_bundle_run(bundle_dir, dataset_dir, output_dir, *options)``: the model-zoo command, run."""
    return _monai_bundle_run
