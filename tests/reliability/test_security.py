"""Security: weights are loaded without running code, downloads are verified, bundles come only from where the user
says, and no patient identifier from a DICOM input reaches an output file or an MLflow record.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import inspect
import json
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.handlers import CheckpointLoader
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from pipelines import api
from pipelines.data import sources
from pipelines.errors import PipelineError

REPO = Path(__file__).resolve().parents[2]
BUNDLE = "lv_segmentation_unet"
SCANNED = ("pipelines", "benchmarks", "data")  # the project's Python, tests aside

# --- checkpoints -------------------------------------------------------------------------------------------------


def unsafe_loads(source: str) -> list[str]:
    """The calls in ``source`` that could unpickle code, as ``line: call``: ``torch.load`` without
    ``weights_only=True``, ``pickle.load(s)``, and ``np.load`` with an ``allow_pickle`` other than False."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name, keywords = ast.unparse(node.func), {k.arg: k.value for k in node.keywords}
        if name == "torch.load":
            unsafe = not _is_constant(keywords.get("weights_only"), True)
        elif name in ("np.load", "numpy.load"):
            unsafe = "allow_pickle" in keywords and not _is_constant(keywords["allow_pickle"], False)
        else:
            unsafe = name in ("pickle.load", "pickle.loads")
        if unsafe:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def _is_constant(node: ast.expr | None, value: bool) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def test_the_scan_finds_unsafe_loads() -> None:
    source = "torch.load(p)\ntorch.load(p, weights_only=False)\ntorch.load(p, weights_only=True)\n" \
        "pickle.loads(b)\nnp.load(p)\nnp.load(p, allow_pickle=True)\n"  # fmt: skip
    assert [line.split(":")[0] for line in unsafe_loads(source)] == ["1", "2", "4", "6"]


def test_every_load_in_the_project_is_weights_only() -> None:
    files = [path for folder in SCANNED for path in (REPO / folder).rglob("*.py")]
    assert len(files) > 20
    unsafe = {str(path.relative_to(REPO)): unsafe_loads(path.read_text(encoding="utf-8")) for path in files}
    assert {path: calls for path, calls in unsafe.items() if calls} == {}
    # bundle configs load weights through MONAI's CheckpointLoader, or through expressions
    for config in REPO.glob("bundles/*/configs/*.json"):
        text = config.read_text(encoding="utf-8")
        assert text.count("torch.load(") == text.count("weights_only=True"), config
    assert "weights_only=True" in inspect.getsource(CheckpointLoader.__call__)


# --- downloads ---------------------------------------------------------------------------------------------------


@pytest.fixture
def published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, sources.DatasetSource]:
    """A "published" file served from a ``file://`` URL (no network), and an empty download cache."""
    original = tmp_path / "server" / "scd_lvsegs.npz"
    original.parent.mkdir()
    original.write_bytes(b"the published archive\n" * 1000)
    source = sources.DatasetSource(original.name, original.as_uri(), hashlib.sha256(original.read_bytes()).hexdigest())
    monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / "cache"))
    return original, source


def test_a_download_is_used_only_after_its_sha256_matches(published) -> None:
    original, source = published

    path = sources.resolve_source(source)  # no local copy: downloads, then verifies

    assert path.parent.name == "cache" and path.read_bytes() == original.read_bytes()


def test_a_download_with_another_sha256_is_refused_and_removed(published, tmp_path: Path) -> None:
    _, source = published
    tampered = sources.DatasetSource(source.filename, source.url, "0" * 64)

    with pytest.raises(PipelineError, match="download failed") as excinfo:
        sources.resolve_source(tampered)
    assert source.url in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert not (tmp_path / "cache" / source.filename).exists()


# --- bundles -----------------------------------------------------------------------------------------------------


def _plant_bundle(folder: Path, marker: Path) -> None:
    """A bundle folder whose config would create ``marker`` when parsed."""
    (folder / "configs").mkdir(parents=True)
    config = {"imports": [f"$open({str(marker)!r}, 'w').close()"], "network_def": {}}
    (folder / "configs" / "train.json").write_text(json.dumps(config), encoding="utf-8")


def test_a_bundle_name_is_looked_up_in_the_project_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _plant_bundle(tmp_path / BUNDLE, tmp_path / "planted")

    assert api.resolve_bundle(BUNDLE) == api.BUNDLES_DIR / BUNDLE  # not the folder of that name here
    assert api.resolve_bundle(f"./{BUNDLE}") == (tmp_path / BUNDLE).resolve()  # a path is the user's choice
    assert api.resolve_bundle(tmp_path / BUNDLE) == (tmp_path / BUNDLE).resolve()


def test_a_bundle_folder_not_named_as_a_path_is_not_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli) -> None:
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "planted"
    _plant_bundle(tmp_path / "downloaded_bundle", marker)

    result = cli("predict", "downloaded_bundle", "--input", tmp_path, "--output", tmp_path / "out")

    assert result.code == 2
    assert result.error_lines() == [
        "error: downloaded_bundle: not a bundle (no configs/train.json); available: "
        + ", ".join(sorted(p.name for p in api.BUNDLES_DIR.iterdir() if (p / "configs").is_dir()))
        + "; to run the folder 'downloaded_bundle', give it as a path (./downloaded_bundle)"
    ]
    assert not marker.exists()


# --- DICOM identifiers -------------------------------------------------------------------------------------------

PATIENT_NAME = "Quixote^Alonso"
PATIENT_ID = "PID-8675309-X"
BIRTH_DATE = "19420213"
IDENTIFIERS = ("Quixote", "Alonso", "8675309", BIRTH_DATE)


def write_dicom_series(volume: np.ndarray, folder: Path, spacing_mm: tuple[float, float, float]) -> list[Path]:
    """Write a (rows, columns, slices) int16 volume as an MR series, one file per slice, with patient identifiers."""
    folder.mkdir(parents=True)
    study, series, paths = generate_uid(), generate_uid(), []
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "MR"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT_NAME, PATIENT_ID, BIRTH_DATE
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, k * spacing_mm[2]]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = list(spacing_mm[:2]), spacing_mm[2]
        ds.Rows, ds.Columns = volume.shape[:2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.ascontiguousarray(volume[:, :, k], dtype="<i2").tobytes()
        paths.append(folder / f"IM{k:04d}")  # scanners often write no suffix
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def _readable(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def test_dicom_patient_identifiers_reach_no_output(
    real_image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    """A real volume written as a DICOM series with a patient's name, id and birth date, predicted with MLflow
    tracking: the NIfTI header fields, every MLflow record (run name, params, tags, metrics, artifact names and
    contents) and, as a catch-all, every byte written anywhere, carry none of them."""
    work = tmp_path / "work"  # MLflow puts a SQLite store's artifacts under the working folder
    work.mkdir()
    monkeypatch.chdir(work)
    write_dicom_series(np.asarray(nib.load(real_image).dataobj), tmp_path / "dicom" / "series1", (3.0, 3.0, 8.0))
    assert PATIENT_NAME.encode() in (tmp_path / "dicom" / "series1" / "IM0000").read_bytes()
    assert pydicom.dcmread(tmp_path / "dicom" / "series1" / "IM0000").PatientID == PATIENT_ID
    output, store = tmp_path / "out", work / "mlruns.db"

    result = cli("predict", BUNDLE, "--input", tmp_path / "dicom", "--output", output, "--probabilities",
                 "--tracking-uri", f"sqlite:///{store}")  # fmt: skip

    assert result.code == 0, result.err
    for path in (output / "series1_seg.nii.gz", output / "series1_prob.nii.gz"):
        header = nib.load(path).header
        fields = [header[name].tobytes() for name in ("descrip", "intent_name", "aux_file", "db_name")]
        for identifier in IDENTIFIERS:
            assert not any(identifier.encode() in field for field in fields), (path, identifier)

    client = mlflow.MlflowClient(f"sqlite:///{store}")
    runs = [run for exp in client.search_experiments() for run in client.search_runs([exp.experiment_id])]
    assert len(runs) == 1 and runs[0].data.params["inputs"] == "1"
    run = runs[0]
    records = [run.info.run_name, json.dumps(run.data.params), json.dumps(run.data.tags), json.dumps(run.data.metrics)]
    pending, artifacts = [""], []
    while pending:
        for info in client.list_artifacts(run.info.run_id, pending.pop() or None):
            (pending if info.is_dir else artifacts).append(info.path)
    assert artifacts, "nothing logged: the test would prove nothing"
    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "downloaded")))
    records += artifacts + [p.read_bytes().decode("latin-1") for p in local.rglob("*") if p.is_file()]
    for identifier in IDENTIFIERS:
        assert not [r for r in records if identifier in r], identifier

    written = [p for p in tmp_path.rglob("*") if p.is_file() and "dicom" not in p.relative_to(tmp_path).parts]
    assert store in written and output / "series1_seg.nii.gz" in written
    for path in written:
        content = _readable(path)
        for identifier in IDENTIFIERS:
            assert identifier.encode() not in content, (path, identifier)
