"""Tests for :mod:`pipelines.data.brain_mr_ct`: npz -> NIfTI round trip, head masks, patient-level split, errors."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipelines.data import brain_mr_ct
from pipelines.errors import InputError, OutputExistsError, PipelineError

N_PATIENTS = 14
N_SLICES = 306


@pytest.fixture(scope="module")
def npz(brain_npz: Path) -> dict[str, np.ndarray]:
    with np.load(brain_npz) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.fixture(scope="module")
def datalist(brain_mr_ct_dir: Path) -> dict:
    return json.loads((brain_mr_ct_dir / "datalist.json").read_text(encoding="utf-8"))


def test_voxels_survive_npz_to_nifti(brain_mr_ct_dir, datalist, npz):
    assert [c["case_id"] for c in datalist["cases"]] == [f"brain_{p:02d}" for p in range(1, N_PATIENTS + 1)]
    assert sum(c["num_slices"] for c in datalist["cases"]) == N_SLICES
    for case in datalist["cases"]:
        indices = np.flatnonzero(npz["patient"] == case["patient"])
        indices = indices[np.argsort(npz["slice"][indices])]  # slices stacked in slice order
        assert case["npz_indices"] == indices.tolist()
        for modality in brain_mr_ct.MODALITIES:
            image = nib.load(brain_mr_ct_dir / case[modality])
            voxels = np.asanyarray(image.dataobj)
            assert voxels.dtype == np.uint8 and voxels.shape == (256, 256, len(indices))
            np.testing.assert_array_equal(voxels, np.moveaxis(npz[modality][indices], 0, -1), err_msg=case[modality])
        assert case["image"] == case["t1"] and case["label"] == case["ct"]


def test_headers_carry_the_documented_nominal_affine(brain_mr_ct_dir, datalist):
    expected = np.diag([brain_mr_ct.DEFAULT_SPACING_MM] * 2 + [brain_mr_ct.DEFAULT_SLICE_SPACING_MM, 1.0])
    assert datalist["inplane_spacing_mm"] == 1.0 and datalist["slice_spacing_mm"] == 5.0
    for case in datalist["cases"][:2]:
        header = nib.load(brain_mr_ct_dir / case["ct"]).header
        np.testing.assert_allclose(header.get_sform(), expected)
        np.testing.assert_allclose(header.get_qform(), expected)
        assert header.get_xyzt_units()[0] == "mm"


def test_masks_cover_the_head_and_agree_with_t1(brain_mr_ct_dir, datalist):
    """The CT mask is binary, non-trivial and overlaps a crude T1 foreground (the README's ~0.9 Dice)."""
    dices = []
    for case in datalist["cases"]:
        mask = np.asanyarray(nib.load(brain_mr_ct_dir / case["mask"]).dataobj)
        t1 = np.asanyarray(nib.load(brain_mr_ct_dir / case["t1"]).dataobj)
        assert set(np.unique(mask).tolist()) <= {0, 1}
        assert 0.1 < mask.mean() < 0.95, case["case_id"]
        t1_foreground = t1 > brain_mr_ct.DEFAULT_MASK_THRESHOLD
        dices.append(2 * (mask & t1_foreground).sum() / (mask.sum() + t1_foreground.sum()))
    assert np.median(dices) > 0.85


def test_head_mask_fills_a_ring_and_drops_specks():
    image = np.zeros((64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    radius = np.hypot(yy - 32, xx - 32)
    image[(radius > 20) & (radius < 24)] = 200  # skull ring, dark inside
    image[2:4, 2:4] = 255  # a speck, removed by the opening
    mask = brain_mr_ct.head_mask(image)
    assert mask[32, 32] and mask[32, 12] and not mask[2, 2] and not mask[32, 60]
    assert not brain_mr_ct.head_mask(np.zeros((8, 8), np.uint8)).any()


@pytest.mark.parametrize("name", ["seed", "all"])
def test_splits_are_by_patient_disjoint_and_complete(datalist, name):
    split = datalist["splits"][name]
    region = {c["case_id"]: c["region"] for c in datalist["cases"]}
    covered = {c for c in region if name == "all" or region[c] == "head"}  # seed: the 9 heads only
    train, validation, test = (set(split[k]) for k in ("train", "validation", "test"))
    assert not train & validation and not train & test and not validation & test
    assert train | validation | test == covered
    assert (len(validation), len(test)) == (1, 2)
    assert {region[c] for c in test} == ({"head", "body"} if name == "all" else {"head"})
    # unpaired training: every train patient gives either its MR or its CT, never both
    assert not set(split["train_mr"]) & set(split["train_ct"])
    assert set(split["train_mr"]) | set(split["train_ct"]) == train
    assert abs(len(split["train_mr"]) - len(split["train_ct"])) <= 1
    assert datalist["seed"] == 0


def test_split_depends_only_on_the_seed(brain_npz, datalist, tmp_path, monkeypatch):
    """Re-splitting with the same seed gives the same subsets (images are not rewritten: they are stubbed out)."""
    monkeypatch.setattr(brain_mr_ct, "write_volume", lambda *args, **kwargs: None)
    monkeypatch.setattr(brain_mr_ct, "head_mask", lambda image, threshold: image > threshold)
    again = json.loads(brain_mr_ct.convert(brain_npz, tmp_path / "same").read_text(encoding="utf-8"))
    other = json.loads(brain_mr_ct.convert(brain_npz, tmp_path / "other", seed=5).read_text(encoding="utf-8"))
    assert again["splits"] == datalist["splits"]
    assert other["splits"] != datalist["splits"] and other["seed"] == 5


def test_refuses_to_overwrite(brain_npz, brain_mr_ct_dir, tmp_path):
    with pytest.raises(OutputExistsError, match="datalist.json"):
        brain_mr_ct.convert(brain_npz, brain_mr_ct_dir)
    # a stray image from an earlier run is not replaced either
    stray = tmp_path / "images" / "ct" / "brain_01.nii.gz"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="brain_01.nii.gz"):
        brain_mr_ct.convert(brain_npz, tmp_path)
    assert stray.read_bytes() == b"precious"
    assert not (tmp_path / "datalist.json").exists()


def test_missing_array_is_a_one_line_error_naming_the_file(tmp_path):
    path = tmp_path / "partial.npz"
    images = np.zeros((3, 8, 8), np.uint8)
    np.savez(path, ct=images, t1=images, patient=np.ones(3, np.int16), slice=np.arange(3, dtype=np.int16))
    with pytest.raises(InputError) as excinfo:
        brain_mr_ct.load_npz(path)
    message = str(excinfo.value)
    assert str(path) in message and "t2" in message and "\n" not in message


def test_mismatched_shapes_and_unreadable_files_are_errors(tmp_path):
    path = tmp_path / "bad.npz"
    images = np.zeros((3, 8, 8), np.uint8)
    np.savez(path, ct=images, t1=images, t2=images[:2], patient=np.ones(3), slice=np.arange(3))
    with pytest.raises(InputError, match="shapes do not match"):
        brain_mr_ct.load_npz(path)
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with pytest.raises(InputError, match="not a readable"):
        brain_mr_ct.load_npz(text)


def test_prepare_without_a_local_file_says_there_is_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINES_DATA", str(tmp_path))
    with pytest.raises(PipelineError, match="no public download") as excinfo:
        brain_mr_ct.prepare(tmp_path / "out")
    assert "--source" in str(excinfo.value) and "\n" not in str(excinfo.value)
    with pytest.raises(InputError, match="no such file"):
        brain_mr_ct.prepare(tmp_path / "out", source=tmp_path / "elsewhere.npz")


def test_cli_prepares_brain_mr_ct_and_names_a_missing_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pipelines.cli import main

    code = main(["data", "brain_mr_ct", "--source", str(tmp_path / "absent.npz"), "--output", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "absent.npz" in err[0]
