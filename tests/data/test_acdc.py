"""``pipelines data acdc``: the official ACDC layout read, checked and split by patient, on real ACDC patients."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipelines.data import acdc
from pipelines.data.datalist import split_items
from pipelines.errors import InputError, OutputExistsError

# one patient of each diagnosis group, and a second of two groups
PATIENTS = ("patient002", "patient004", "patient021", "patient023", "patient041", "patient061", "patient085")


@pytest.fixture
def source(acdc_dir: Path, tmp_path: Path) -> Path:
    """A small ACDC download: the official layout (database/training/patientXXX), the patients' files linked."""
    training = acdc_dir / "training"
    root = tmp_path / "ACDC" / "database" / "training"
    for patient in PATIENTS:
        if not (training / patient).is_dir():
            pytest.skip(f"{patient} missing from {training}")
        (root / patient).mkdir(parents=True)
        for file in (training / patient).iterdir():
            (root / patient / file.name).symlink_to(file)
    return tmp_path / "ACDC"


def _replace(source: Path, patient: str, name: str) -> Path:
    """Make ``patient/name`` a real file (not a link) that the test may change; return its path."""
    path = next(source.rglob(f"{patient}/{name}"))
    target = path.resolve()
    path.unlink()
    shutil.copyfile(target, path)
    return path


def test_datalist_has_both_frames_of_every_patient_and_patient_level_folds(source: Path, tmp_path: Path) -> None:
    datalist_path = acdc.convert(source, tmp_path / "out", n_val=1)
    datalist = json.loads(datalist_path.read_text(encoding="utf-8"))
    cases = {c["case_id"]: c for c in datalist["cases"]}
    assert sorted(cases) == sorted(f"{p}_{f}" for p in PATIENTS for f in ("ed", "es"))
    info = acdc.read_info(next(source.rglob("patient002/Info.cfg")))
    assert cases["patient002_ed"]["frame_number"] == info["ED"] and cases["patient002_es"]["frame_number"] == info["ES"]
    assert cases["patient002_ed"]["label"].endswith(f"patient002_frame{info['ED']:02d}_gt.nii.gz")
    assert cases["patient002_ed"]["category_name"] == "DCM" and cases["patient085_es"]["category_name"] == "RV"
    image = nib.load(cases["patient002_ed"]["image"])
    assert cases["patient002_ed"]["num_slices"] == image.shape[2]
    assert cases["patient002_ed"]["spacing_mm"] == [round(float(z), 4) for z in image.header.get_zooms()[:3]]
    assert datalist["splits"]["seed"] == datalist["splits"]["fold0"]
    for k in range(5):
        split = datalist["splits"][f"fold{k}"]
        patients = {s: {cases[c]["patient"] for c in split[s]} for s in ("train", "validation", "test")}
        assert not (patients["train"] & patients["test"]) and not (patients["validation"] & patients["test"])
        assert not (patients["train"] & patients["validation"])
        assert set().union(*patients.values()) == set(PATIENTS)
        for subset in split.values():  # both frames of a patient on the same side
            assert {c for c in subset} == {f"{cases[c]['patient']}_{f}" for c in subset for f in ("ed", "es")}
    # every patient is a test patient of exactly one fold
    tests = [cases[c]["patient"] for k in range(5) for c in datalist["splits"][f"fold{k}"]["test"]]
    assert sorted(set(tests)) == sorted(PATIENTS) and len(tests) == 2 * len(PATIENTS)
    items = split_items(datalist_path, 0, "test")
    assert all(Path(item["image"]).is_file() and Path(item["label"]).is_file() for item in items)


def test_existing_datalist_is_kept_unless_overwrite(source: Path, tmp_path: Path) -> None:
    path = acdc.convert(source, tmp_path / "out", n_val=1)
    with pytest.raises(OutputExistsError):
        acdc.convert(source, tmp_path / "out", n_val=1)
    assert acdc.convert(source, tmp_path / "out", n_val=1, overwrite=True) == path


def test_label_on_another_grid_is_refused_by_name(source: Path, tmp_path: Path) -> None:
    label = _replace(source, "patient004", "patient004_frame01_gt.nii.gz")
    original = nib.load(label)
    cropped = np.asarray(original.dataobj)[:-8]
    nib.save(nib.Nifti1Image(cropped, original.affine, original.header), label)
    with pytest.raises(InputError, match="label shape .* differs from its image's") as caught:
        acdc.convert(source, tmp_path / "out", n_val=1)
    assert caught.value.path == label
    assert not (tmp_path / "out" / "datalist.json").exists()


def test_label_with_shifted_origin_is_refused(source: Path, tmp_path: Path) -> None:
    label = _replace(source, "patient021", "patient021_frame01_gt.nii.gz")
    original = nib.load(label)
    affine = original.affine.copy()
    affine[0, 3] += 5.0
    nib.save(nib.Nifti1Image(np.asarray(original.dataobj), affine), label)
    with pytest.raises(InputError, match="label affine differs") as caught:
        acdc.convert(source, tmp_path / "out", n_val=1)
    assert caught.value.path == label


def test_unknown_label_value_is_refused(source: Path, tmp_path: Path) -> None:
    label = _replace(source, "patient041", "patient041_frame01_gt.nii.gz")
    original = nib.load(label)
    voxels = np.asarray(original.dataobj).copy()
    voxels[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(voxels, original.affine, original.header), label)
    with pytest.raises(InputError, match=r"label values \{7\} outside \{0, 1, 2, 3\}"):
        acdc.convert(source, tmp_path / "out", n_val=1)


def test_broken_info_and_missing_frame_are_named(source: Path, tmp_path: Path) -> None:
    info = _replace(source, "patient061", "Info.cfg")
    info.write_text("ED: 1\nES: 9\nGroup: XYZ\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown diagnosis group 'XYZ'") as caught:
        acdc.convert(source, tmp_path / "out", n_val=1)
    assert caught.value.path == info
    info.write_text("ED: 1\nES: 99\nGroup: NOR\n", encoding="utf-8")
    with pytest.raises(InputError, match="missing \\(ES frame 99"):
        acdc.convert(source, tmp_path / "out", n_val=1)


def test_a_folder_without_patients_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no patientXXX/Info.cfg folders found"):
        acdc.convert(tmp_path, tmp_path / "out")
