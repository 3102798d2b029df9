"""Shared fixtures: the real Sunnybrook source file and one conversion of it per test session.

The data are never invented: ``scd_npz`` is the published ``scd_lvsegs.npz``, looked for in the folders of
``PIPELINES_DATA`` (``os.pathsep``-separated) and then in ``<repo>/../shared/data``; tests that need it are skipped,
with the reason, where it is absent.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCD_FILENAME = "scd_lvsegs.npz"


def _data_folders() -> list[Path]:
    folders = [Path(f) for f in os.environ.get("PIPELINES_DATA", "").split(os.pathsep) if f]
    return [*folders, REPO_ROOT.parent / "shared" / "data"]


def _shared_file(filename: str) -> Path:
    """The first ``filename`` in the data folders, or skip the test, naming the folders searched."""
    for folder in _data_folders():
        candidate = folder / filename
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(f) for f in _data_folders())
    pytest.skip(f"{filename} not found (searched {searched}); set PIPELINES_DATA to a folder holding it")


@pytest.fixture(scope="session")
def scd_npz() -> Path:
    """Path of the real ``scd_lvsegs.npz`` (Sunnybrook LV myocardium), or skip."""
    return _shared_file(SCD_FILENAME)


@pytest.fixture(scope="session")
def sunnybrook_dir(scd_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the Sunnybrook data converted once per session: ``images/``, ``labels/``, ``datalist.json``.

    Session-wide and shared: tests must not modify it (copy what they need to corrupt).
    """
    from pipelines.data import sunnybrook

    output = tmp_path_factory.mktemp("sunnybrook")
    sunnybrook.convert(scd_npz, output)
    return output


BRAIN_FILENAME = "brain_mr_ct_paired.npz"


@pytest.fixture(scope="session")
def brain_npz() -> Path:
    """Path of the real ``brain_mr_ct_paired.npz`` (paired CT / T1 / T2 slices), or skip."""
    return _shared_file(BRAIN_FILENAME)


@pytest.fixture(scope="session")
def mednist_zip() -> Path:
    """Path of the real ``MedNIST_64x64_500.zip`` (6 classes of 500 64x64 JPEGs), or skip."""
    return _shared_file("MedNIST_64x64_500.zip")


@pytest.fixture(scope="session")
def brain_mr_ct_dir(brain_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The paired MR / CT data converted once per session (``pipelines.data.brain_mr_ct.convert``); read only."""
    from pipelines.data import brain_mr_ct

    output = tmp_path_factory.mktemp("brain_mr_ct")
    brain_mr_ct.convert(brain_npz, output)
    return output


@pytest.fixture(scope="session")
def mednist_dir(mednist_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real MedNIST zip converted once per session (``pipelines.data.mednist.convert``); read only."""
    from pipelines.data import mednist

    output = tmp_path_factory.mktemp("mednist")
    mednist.convert(mednist_zip, output)
    return output


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One torch thread and no MLflow server inherited from the environment (the generative bundles' smoke tests)."""
    import torch

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


SUNNYBROOK_DICOM_FOLDER = "sunnybrook_dicom_sample"


@pytest.fixture(scope="session")
def sunnybrook_dicom_sample() -> Path:
    """The real Sunnybrook DICOM sample folder (``SCD_DeidentifiedImages/``, ``SCD_ManualContours/``), or skip."""
    for folder in _data_folders():
        if (folder / SUNNYBROOK_DICOM_FOLDER / "SCD_DeidentifiedImages").is_dir():
            return folder / SUNNYBROOK_DICOM_FOLDER
    searched = ", ".join(str(f) for f in _data_folders())
    pytest.skip(
        f"{SUNNYBROOK_DICOM_FOLDER}/ not found (searched {searched}); set PIPELINES_DATA to a folder holding it"
    )


@pytest.fixture(scope="session")
def sunnybrook_dicom_dir(sunnybrook_dicom_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Sunnybrook DICOM sample converted once per session (:func:`pipelines.data.sunnybrook_dicom.convert`).

    Session-wide and shared: tests must not modify it.
    """
    from pipelines.data import sunnybrook_dicom

    output = tmp_path_factory.mktemp("sunnybrook_dicom")
    sunnybrook_dicom.convert(sunnybrook_dicom_sample, output)
    return output


@pytest.fixture(scope="session")
def acdc_dir() -> Path:
    """The shared ACDC folder (``acdc/training/patientXXX/``, see ``../shared/data/README.md``), or skip."""
    for folder in _data_folders():
        if (folder / "acdc" / "training").is_dir():
            return folder / "acdc"
    searched = ", ".join(str(f) for f in _data_folders())
    pytest.skip(f"acdc/training not found (searched {searched}); set PIPELINES_DATA to a folder holding it")


@pytest.fixture(scope="session")
def load_benchmark() -> Callable[[str], ModuleType]:
    """Import a script of ``benchmarks/`` by name (the folder is not a package): ``load_benchmark("pretraining")``."""
    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO_ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
