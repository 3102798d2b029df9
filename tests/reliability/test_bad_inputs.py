"""Bad input fed to ``predict``, ``train`` and ``data`` through the command line: a one-line error, nothing lost.

Every case is registered in :data:`CASES` under an id, with the command it targets and the problem its message must
state; ``docs/reliability.md`` lists the same ids and messages (checked by ``test_the_doc_lists_every_case``). Each
case builds its bad input, runs ``pipelines ...`` in-process and checks: a non-zero exit status (1: the input was
reported and the others would go on; 2: the command stopped before doing anything), no traceback, one line naming
the file and the problem, and no file left in the output folder.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.networks.nets import UNet

from pipelines.data import sources, sunnybrook
from pipelines.errors import InputError
from pipelines.io import images
from pipelines.io.images import ImageInput
from pipelines.io.weights import check_weights

BUNDLE = "lv_segmentation_unet"
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[2] / "bundles" / BUNDLE / "models" / "model.pt"
DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


@dataclass(frozen=True)
class Setup:
    """What a case may use: a scratch folder, fixtures on demand (real data only when a case needs it)."""

    tmp: Path
    request: pytest.FixtureRequest
    monkeypatch: pytest.MonkeyPatch

    def data(self) -> Path:
        """The real prepared Sunnybrook folder (skips the case where the data is absent)."""
        return self.request.getfixturevalue("sunnybrook_dir")

    def real_image(self) -> Path:
        return self.request.getfixturevalue("real_image")


@dataclass(frozen=True)
class Run:
    """The command a case runs and what its message must name.

    Args:
        argv: arguments of ``pipelines``.
        path: the file (or folder) the message must name.
        code: the expected exit status.
        output: a folder in which no file may exist afterwards.
    """

    argv: list[object]
    path: Path
    code: int
    output: Path


@dataclass(frozen=True)
class Case:
    command: str
    problem: str
    build: Callable[[Setup], Run]


CASES: dict[str, Case] = {}


def case(case_id: str, command: str, problem: str) -> Callable[[Callable[[Setup], Run]], Callable[[Setup], Run]]:
    """Register a bad-input case: ``problem`` is text its one-line message must contain."""

    def register(build: Callable[[Setup], Run]) -> Callable[[Setup], Run]:
        CASES[case_id] = Case(command, problem, build)
        return build

    return register


# --- predict: bad images -----------------------------------------------------------------------------------------


def _predict_one(s: Setup, image: Path) -> Run:
    """``predict`` on the single file ``image`` with the shipped weights: reported as a failed input (status 1)."""
    output = s.tmp / "out"
    return Run(["predict", BUNDLE, "--input", image, "--output", output], image, 1, output)


def _nifti(path: Path, voxels: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(voxels, np.diag([3.0, 3.0, 8.0, 1.0])), path)
    return path


def _volume(shape: tuple[int, ...] = (16, 16, 5)) -> np.ndarray:
    return np.random.default_rng(0).normal(100, 20, shape).astype(np.float32)


@case("truncated_nifti", "predict", "not a readable NIfTI file")
def _truncated(s: Setup) -> Run:
    path = _nifti(s.tmp / "cut.nii.gz", _volume())  # random voxels compress badly: half the file loses data
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return _predict_one(s, path)


@case("not_an_image", "predict", "not a readable NIfTI file")
def _not_an_image(s: Setup) -> Run:
    path = s.tmp / "report.nii.gz"
    path.write_bytes(b"%PDF-1.4 a scanned report saved under an image's name\n" * 20)
    return _predict_one(s, path)


@case("nan_voxels", "predict", "contains NaN or Inf voxels")
def _nan(s: Setup) -> Run:
    voxels = _volume()
    voxels[3, 4, 2] = np.nan
    return _predict_one(s, _nifti(s.tmp / "nan.nii.gz", voxels))


@case("inf_voxels", "predict", "contains NaN or Inf voxels")
def _inf(s: Setup) -> Run:
    voxels = _volume()
    voxels[0, 0, 0] = -np.inf
    return _predict_one(s, _nifti(s.tmp / "inf.nii.gz", voxels))


@case("empty_volume", "predict", "image has no voxels (shape (16, 16, 0))")
def _empty(s: Setup) -> Run:
    return _predict_one(s, _nifti(s.tmp / "empty.nii.gz", _volume((16, 16, 0))))


@case("constant_volume", "predict", "image is empty (all voxels are 0)")
def _constant(s: Setup) -> Run:
    return _predict_one(s, _nifti(s.tmp / "blank.nii.gz", np.zeros((16, 16, 5), np.int16)))


@case("four_d_volume_to_explain", "explain", "a 4D cine; this command takes 3D frames")
def _four_d(s: Setup) -> Run:
    # predict splits a cine into frames; explain draws one figure per slice and takes one frame at a time
    image = _nifti(s.tmp / "cine.nii.gz", _volume((16, 16, 5, 3)))
    output = s.tmp / "out"
    return Run(["explain", BUNDLE, "--input", image, "--output", output], image, 1, output)


@case("full_field_scan_to_crop_bundle", "predict", "for a full-field short-axis scan use cardiac_sax_segmentation")
def _full_field(s: Setup) -> Run:
    # a full-field short-axis frame (256x256 at 1.37 mm) given to a bundle trained on 64x64 crops at ~3 mm
    voxels = np.random.default_rng(0).normal(100, 20, (256, 256, 3)).astype(np.float32)
    path = s.tmp / "full_field.nii.gz"
    nib.save(nib.Nifti1Image(voxels, np.diag([1.37, 1.37, 10.0, 1.0])), path)
    return _predict_one(s, path)


@case("output_name_escapes", "predict", "would write")
def _escape(s: Setup) -> Run:
    # Names come from images._safe_name, which never yields "../"; this checks the next line of defence, should a
    # discovery ever hand one over.
    source = s.real_image()
    escaping = [ImageInput(name="../escape", source=source, kind="nifti")]
    s.monkeypatch.setattr(images, "discover_inputs", lambda path: escaping)
    output = s.tmp / "nested" / "out"
    return Run(["predict", BUNDLE, "--input", source, "--output", output], source, 1, s.tmp / "nested")


# --- predict: bad output folders and checkpoints -----------------------------------------------------------------


@case("output_folder_is_a_file", "predict", "cannot create output folder")
def _output_is_a_file(s: Setup) -> Run:
    output = s.tmp / "predictions"
    output.write_text("a file where the output folder should go")
    return Run(["predict", BUNDLE, "--input", s.real_image(), "--output", output], output, 2, s.tmp / "none")


@case("output_folder_read_only", "predict", "output folder is not writable")
def _output_read_only(s: Setup) -> Run:
    output = s.tmp / "predictions"
    output.mkdir()
    if os.geteuid() != 0:
        output.chmod(0o555)
        s.request.addfinalizer(lambda: output.chmod(0o755))
    else:  # root writes into read-only folders, but not into immutable ones
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", output], capture_output=True).returncode:
            pytest.skip("running as root, and chattr cannot make a folder immutable here")
        s.request.addfinalizer(lambda: subprocess.run(["chattr", "-i", output], check=True))
    return Run(["predict", BUNDLE, "--input", s.real_image(), "--output", output], output, 2, output)


def _predict_with_checkpoint(s: Setup, checkpoint: Path) -> Run:
    output = s.tmp / "out"
    argv = ["predict", BUNDLE, "--input", s.real_image(), "--output", output, "--checkpoint", checkpoint]
    return Run(argv, checkpoint, 2, output)


@case("checkpoint_other_network", "predict", "weights do not fit the bundle's network")
def _other_network(s: Setup) -> Run:
    other = UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=(8, 16), strides=(2,), num_res_units=1)
    checkpoint = s.tmp / "other_net.pt"
    torch.save(other.state_dict(), checkpoint)
    return _predict_with_checkpoint(s, checkpoint)


@case("checkpoint_truncated", "predict", "not a readable checkpoint")
def _truncated_checkpoint(s: Setup) -> Run:
    checkpoint = s.tmp / "model.pt"
    checkpoint.write_bytes(SHIPPED_WEIGHTS.read_bytes()[: SHIPPED_WEIGHTS.stat().st_size // 2])
    return _predict_with_checkpoint(s, checkpoint)


class _Planted:
    """Unpickling this would create ``marker``: what a malicious checkpoint does with a shell command instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return open, (str(self.marker), "w")


@case("checkpoint_with_code", "predict", "refusing to load: holds objects other than weights")
def _checkpoint_with_code(s: Setup) -> Run:
    checkpoint = s.tmp / "model.pt"
    (s.tmp / "out").mkdir()  # where the planted file would appear: the test checks the folder stays empty
    checkpoint.write_bytes(pickle.dumps({"model": _Planted(s.tmp / "out" / "planted")}, protocol=2))
    return _predict_with_checkpoint(s, checkpoint)


# --- train: a broken datalist or image/label pair ----------------------------------------------------------------


def _train_with(s: Setup, corrupt: Callable[[dict, Setup], Path]) -> Run:
    """``train`` on a copy of the real datalist (absolute paths to the real files) whose first training case is
    corrupted by ``corrupt(case, setup)``, which returns the corrupted file."""
    data = s.data()
    datalist = json.loads((data / "datalist.json").read_text(encoding="utf-8"))
    for entry in datalist["cases"]:
        entry["image"], entry["label"] = str(data / entry["image"]), str(data / entry["label"])
    first = datalist["splits"]["seed"]["train"][0]
    bad = corrupt(next(c for c in datalist["cases"] if c["case_id"] == first), s)
    folder = s.tmp / "data"
    folder.mkdir(exist_ok=True)
    (folder / "datalist.json").write_text(json.dumps(datalist), encoding="utf-8")
    run = s.tmp / "run"
    return Run(["train", BUNDLE, "--data", folder, "--output", run, "--epochs", "1", "--max-cases", "2"], bad, 2, run)


Relabel = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _relabelled(entry: dict, s: Setup, change: Relabel) -> Path:
    """Write ``change(voxels, affine)`` of the case's real label as a new label file and point the case at it."""
    label = nib.load(entry["label"])
    voxels, affine = change(np.asarray(label.dataobj).copy(), label.affine.copy())
    path = s.tmp / f"{entry['case_id']}_bad_label.nii.gz"
    nib.save(nib.Nifti1Image(voxels, affine, header=label.header), path)
    entry["label"] = str(path)
    return path


@case("label_shape_mismatch", "train", "label shape (64, 64, 12) differs from its image's (64, 64, 13)")
def _shape_mismatch(s: Setup) -> Run:
    def one_slice_short(entry: dict, s: Setup) -> Path:
        return _relabelled(entry, s, lambda v, a: (v[..., :-1], a))

    return _train_with(s, one_slice_short)


@case("label_affine_mismatch", "train", "label affine differs from its image's")
def _affine_mismatch(s: Setup) -> Run:
    def shifted(entry: dict, s: Setup) -> Path:
        def change(voxels: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            affine[:3, 3] += (5.0, 0.0, 0.0)  # one label map registered to another scan
            return voxels, affine

        return _relabelled(entry, s, change)

    return _train_with(s, shifted)


@case("label_values_outside_0_1", "train", "label values {2} outside {0, 1}")
def _label_values(s: Setup) -> Run:
    def three_classes(entry: dict, s: Setup) -> Path:
        return _relabelled(entry, s, lambda v, a: (np.where(v == 1, 2, v).astype(v.dtype), a))

    return _train_with(s, three_classes)


@case("datalist_missing_file", "train", "but missing")
def _missing_file(s: Setup) -> Run:
    def deleted(entry: dict, s: Setup) -> Path:
        entry["label"] = str(s.tmp / "deleted_label.nii.gz")
        return Path(entry["label"])

    return _train_with(s, deleted)


@case("datalist_not_json", "train", "not a JSON datalist")
def _not_json(s: Setup) -> Run:
    folder = s.tmp / "data"
    folder.mkdir()
    datalist = folder / "datalist.json"
    datalist.write_text('{"cases": [ {"case_id": "scd_000", ', encoding="utf-8")  # cut off mid-write
    run = s.tmp / "run"
    return Run(["train", BUNDLE, "--data", folder, "--output", run], datalist, 2, run)


@case("train_output_is_a_file", "train", "cannot create output folder")
def _train_output_is_a_file(s: Setup) -> Run:
    run = s.tmp / "run"
    run.write_text("not a folder")
    argv = ["train", BUNDLE, "--data", s.data(), "--output", run, "--epochs", "1", "--max-cases", "2"]
    return Run(argv, run, 2, s.tmp / "none")


# --- data preparation --------------------------------------------------------------------------------------------


@case("npz_missing_arrays", "data", "missing arrays ['caseIndices', 'caseCat', 'caseVoxelSize']")
def _npz_missing_arrays(s: Setup) -> Run:
    source = s.tmp / sunnybrook.SOURCE.filename
    np.savez(source, images=np.zeros((2, 8, 8), np.uint16), segs=np.zeros((2, 8, 8), np.int32))
    # A source that passes the checksum (say, a mirror whose published sha256 was updated) but lacks arrays: the
    # converter's own check is the last line of defence.
    published = sources.DatasetSource(source.name, sunnybrook.SOURCE.url, sources.sha256sum(source))
    s.monkeypatch.setattr(sunnybrook, "SOURCE", published)
    output = s.tmp / "prepared"
    return Run(["data", "sunnybrook", "--source", source, "--output", output], source, 2, output)


@case("data_output_is_a_file", "data", "cannot create output folder")
def _data_output_is_a_file(s: Setup) -> Run:
    output = s.tmp / "prepared"
    output.write_text("not a folder")
    scd_npz = s.request.getfixturevalue("scd_npz")
    return Run(["data", "sunnybrook", "--source", scd_npz, "--output", output], output, 2, s.tmp / "none")


# --- the tests ---------------------------------------------------------------------------------------------------


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_bad_input_gives_one_line_and_writes_nothing(
    case_id: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    spec = CASES[case_id]
    run = spec.build(Setup(tmp_path, request, monkeypatch))
    assert run.argv[0] == spec.command

    result = cli(*run.argv)

    assert result.code == run.code, result.err
    assert "Traceback" not in result.err, result.err
    lines = result.error_lines()
    named = [line for line in lines if str(run.path) in line and spec.problem in line]
    assert named, f"no line names {run.path} and {spec.problem!r}:\n{result.err}"
    if run.code == 2:  # the command stopped: besides log records, its stderr is the one line
        assert lines == [named[0]] and named[0].startswith("error: "), result.err
    else:  # the input was reported: "error: 1 of 1 inputs failed:" then its line
        assert lines == ["error: 1 of 1 inputs failed:", named[0]], result.err
    assert _files(run.output) == [], "files left for a failed input"
    assert result.out == ""


def test_weights_of_another_size_name_the_shapes(tmp_path: Path) -> None:
    """The check behind ``checkpoint_other_network``, for the same architecture with other channel counts; a
    resumable checkpoint (``{"model": state_dict, ...}``) is read like a bare state dict."""
    def unet(channels: tuple[int, int]) -> UNet:
        return UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=channels, strides=(2,), num_res_units=0)

    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"model": unet((4, 8)).state_dict(), "epoch": 3}, checkpoint)
    check_weights(checkpoint, unet((4, 8)))
    with pytest.raises(InputError, match=r"other shapes \(checkpoint != network\) \(model.0.conv.weight \(4, 1, 3, 3\) "
                       r"!= \(8, 1, 3, 3\)") as caught:  # fmt: skip
        check_weights(checkpoint, unet((8, 16)))
    assert "missing" not in str(caught.value) and "unexpected" not in str(caught.value)


def test_the_doc_lists_every_case() -> None:
    """``docs/reliability.md`` has one table row per case, with the case's command and message."""
    section = DOC.read_text(encoding="utf-8").split("## Faults and bad inputs handled", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9_]+)` \|.*$", section, re.MULTILINE)}
    assert set(rows) == set(CASES)
    for case_id, spec in CASES.items():
        assert f"`{spec.command}`" in rows[case_id], case_id
        assert spec.problem in rows[case_id].replace("\\|", "|"), case_id


def test_the_readme_lists_every_case() -> None:
    """The README's "Faults and bad input handled" section names every case, and no other."""
    readme = (DOC.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Faults and bad input handled", 1)[1].split("\n## ", 1)[0]
    items = "\n".join(line for line in section.splitlines() if line.startswith(("- ", "  ")))
    assert set(re.findall(r"`([a-z0-9_]+)`", items)) == set(CASES)
