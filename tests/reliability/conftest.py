"""Fixtures for the reliability tests: the command line run as a user runs it, a clean environment, a real image.

Bad inputs are tiny synthetic files written by the tests; good inputs are the real prepared Sunnybrook volumes
(``sunnybrook_dir`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.data import sources


@dataclass(frozen=True)
class CliResult:
    """Exit status and captured output of one ``pipelines`` command."""

    code: int
    out: str
    err: str

    def error_lines(self) -> list[str]:
        """The stderr lines that are not log records (``HH:MM:SS LEVEL logger: ...``): the final report."""
        return [line for line in self.err.splitlines() if not re.match(r"\d\d:\d\d:\d\d \w+ ", line)]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No dataset folders or tracking server from the caller's environment leak into a test."""
    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``pipelines <argv>`` in-process and return its exit status, stdout and stderr."""

    def run(*argv: object) -> CliResult:
        capsys.readouterr()  # drop anything printed before the command
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def real_image(sunnybrook_dir: Path) -> Path:
    """One real prepared Sunnybrook volume (64 x 64 x slices, int16)."""
    return sunnybrook_dir / "images" / "scd_044.nii.gz"
