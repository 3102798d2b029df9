"""Tests for :mod:`pipelines.data.sunnybrook`: npz -> NIfTI round trip, geometry, datalist, folds and splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from pipelines.data import sunnybrook
from pipelines.errors import InputError, OutputExistsError

N_CASES = 45
N_FOLDS = 5
SPLITS = ("seed", *(f"fold{k}" for k in range(N_FOLDS)))


@pytest.fixture(scope="module")
def npz(scd_npz: Path) -> dict[str, np.ndarray]:
    with np.load(scd_npz) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.fixture(scope="module")
def datalist(sunnybrook_dir: Path) -> dict:
    return json.loads((sunnybrook_dir / "datalist.json").read_text(encoding="utf-8"))


def case_arrays(npz: dict[str, np.ndarray], index: int) -> tuple[np.ndarray, np.ndarray]:
    """The npz image and label of case ``index`` with slices moved to the last axis, as the converter writes them."""
    start, end = npz["caseIndices"][index]
    return np.moveaxis(npz["images"][start:end], 0, -1), np.moveaxis(npz["segs"][start:end], 0, -1)


def expected_affine(npz: dict[str, np.ndarray], index: int) -> np.ndarray:
    start = npz["caseIndices"][index][0]
    dz = round(float(npz["caseVoxelSize"][start][2]), 3)
    return np.diag([sunnybrook.DEFAULT_SPACING_MM, sunnybrook.DEFAULT_SPACING_MM, dz, 1.0])


def test_nibabel_round_trip_is_exact(sunnybrook_dir, datalist, npz):
    assert len(datalist["cases"]) == len(npz["caseIndices"]) == N_CASES
    for index, case in enumerate(datalist["cases"]):
        image_npz, label_npz = case_arrays(npz, index)
        image = nib.load(sunnybrook_dir / case["image"])
        label = nib.load(sunnybrook_dir / case["label"])
        image_voxels = np.asanyarray(image.dataobj)
        label_voxels = np.asanyarray(label.dataobj)
        assert image_voxels.shape == image_npz.shape == (64, 64, case["num_slices"])
        np.testing.assert_array_equal(image_voxels, image_npz, err_msg=case["case_id"])
        np.testing.assert_array_equal(label_voxels, label_npz, err_msg=case["case_id"])


def test_monai_loader_round_trip_is_exact(sunnybrook_dir, datalist, npz):
    load = Compose([LoadImaged(keys=["image", "label"], image_only=True), EnsureChannelFirstd(keys=["image", "label"])])
    for index, case in enumerate(datalist["cases"]):
        image_npz, label_npz = case_arrays(npz, index)
        item = load({"image": str(sunnybrook_dir / case["image"]), "label": str(sunnybrook_dir / case["label"])})
        assert tuple(item["image"].shape) == (1, *image_npz.shape)
        np.testing.assert_array_equal(item["image"][0].numpy(), image_npz, err_msg=case["case_id"])
        np.testing.assert_array_equal(item["label"][0].numpy(), label_npz, err_msg=case["case_id"])
        np.testing.assert_allclose(item["label"].affine.numpy(), expected_affine(npz, index), atol=1e-6)


def test_headers_affine_and_codes(sunnybrook_dir, datalist, npz):
    for index, case in enumerate(datalist["cases"]):
        affine = expected_affine(npz, index)
        assert case["slice_spacing_mm"] == pytest.approx(affine[2, 2])
        for field in ("image", "label"):
            header = nib.load(sunnybrook_dir / case[field]).header
            qform, qcode = header.get_qform(coded=True)
            sform, scode = header.get_sform(coded=True)
            assert (int(qcode), int(scode)) == (1, 1), case[field]
            np.testing.assert_allclose(qform, affine, atol=1e-5)
            np.testing.assert_allclose(sform, affine, atol=1e-5)
            assert header.get_xyzt_units()[0] == "mm"


def test_label_values_are_binary(sunnybrook_dir, datalist):
    values = set()
    for case in datalist["cases"]:
        values |= set(np.unique(np.asanyarray(nib.load(sunnybrook_dir / case["label"]).dataobj)).tolist())
    assert values == {0, 1}


def test_datalist_cases_match_npz(datalist, npz):
    ids = [case["case_id"] for case in datalist["cases"]]
    assert ids == [f"scd_{i:03d}" for i in range(N_CASES)]
    assert sum(case["num_slices"] for case in datalist["cases"]) == len(npz["images"]) == 420
    for index, case in enumerate(datalist["cases"]):
        start, end = (int(v) for v in npz["caseIndices"][index])
        assert case["npz_slices"] == [start, end]
        assert case["category"] == int(npz["caseCat"][start])
        assert case["category_name"] == sunnybrook.CATEGORY_NAMES[case["category"]]
    categories = Counter(case["category"] for case in datalist["cases"])
    assert categories == {0: 9, 1: 12, 2: 12, 3: 12}


def test_folds_partition_cases_and_cover_categories(datalist):
    folds = {case["case_id"]: case["fold"] for case in datalist["cases"]}
    assert len(folds) == N_CASES
    assert Counter(folds.values()) == {k: N_CASES // N_FOLDS for k in range(N_FOLDS)}
    all_categories = {case["category"] for case in datalist["cases"]}
    for k in range(N_FOLDS):
        assert {case["category"] for case in datalist["cases"] if case["fold"] == k} == all_categories, f"fold {k}"


@pytest.mark.parametrize("split", SPLITS)
def test_split_subsets_are_disjoint_and_complete(datalist, split):
    subsets = datalist["splits"][split]
    train, validation, test = (set(subsets[name]) for name in ("train", "validation", "test"))
    assert not train & validation and not train & test and not validation & test
    assert train | validation | test == {case["case_id"] for case in datalist["cases"]}
    assert len(validation) == 5
    # validation is stratified: 5 picks over 4 categories take at least one of each
    category = {case["case_id"]: case["category"] for case in datalist["cases"]}
    assert {category[c] for c in validation} == set(category.values())


def test_seed_split_tests_last_six_cases(datalist):
    ids = [case["case_id"] for case in datalist["cases"]]
    assert datalist["splits"]["seed"]["test"] == ids[-6:]


@pytest.mark.parametrize("fold", range(N_FOLDS))
def test_fold_split_tests_its_fold(datalist, fold):
    expected = sorted(case["case_id"] for case in datalist["cases"] if case["fold"] == fold)
    assert sorted(datalist["splits"][f"fold{fold}"]["test"]) == expected


def test_existing_datalist_is_not_overwritten(scd_npz, tmp_path):
    datalist_path = tmp_path / "datalist.json"
    datalist_path.write_text('{"precious": true}\n')
    with pytest.raises(OutputExistsError) as excinfo:
        sunnybrook.convert(scd_npz, tmp_path)
    assert str(datalist_path) in str(excinfo.value)
    assert datalist_path.read_text(encoding="utf-8") == '{"precious": true}\n'
    assert not (tmp_path / "images").exists()

    assert sunnybrook.convert(scd_npz, tmp_path, overwrite=True) == datalist_path
    assert len(json.loads(datalist_path.read_text(encoding="utf-8"))["cases"]) == N_CASES
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_load_npz_rejects_a_file_that_is_not_npz(tmp_path):
    path = tmp_path / "scd_lvsegs.npz"
    path.write_text("this is not an archive")
    with pytest.raises(InputError) as excinfo:
        sunnybrook.load_npz(path)
    assert excinfo.value.path == path
    assert str(path) in str(excinfo.value)


def test_load_npz_rejects_missing_arrays(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, images=np.zeros((2, 4, 4), np.uint16), segs=np.zeros((2, 4, 4), np.int32))
    with pytest.raises(InputError, match="missing arrays") as excinfo:
        sunnybrook.load_npz(path)
    assert str(path) in str(excinfo.value)
    assert "caseIndices" in str(excinfo.value)


def test_load_npz_rejects_a_truncated_archive(scd_npz, tmp_path):
    path = tmp_path / "scd_lvsegs.npz"
    data = scd_npz.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as excinfo:
        sunnybrook.load_npz(path)
    assert str(path) in str(excinfo.value)
