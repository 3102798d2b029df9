"""Tests for :mod:`pipelines.data.datalist`: split items with absolute paths, slice expansion, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines.data.datalist import load_datalist, slice_items, split_items, split_name
from pipelines.errors import InputError


@pytest.fixture(scope="module")
def datalist(sunnybrook_dir: Path) -> dict:
    return json.loads((sunnybrook_dir / "datalist.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("subset", ["train", "validation", "test"])
def test_split_items_have_absolute_existing_paths(sunnybrook_dir, datalist, subset):
    items = split_items(sunnybrook_dir / "datalist.json", "seed", subset)
    assert [item["case_id"] for item in items] == datalist["splits"]["seed"][subset]
    for item in items:
        for field in ("image", "label"):
            path = Path(item[field])
            assert path.is_absolute() and path.is_file()
            assert path == (sunnybrook_dir / f"{field}s" / f"{item['case_id']}.nii.gz").resolve()
        assert {"category", "num_slices"} <= item.keys()
        assert not any(isinstance(v, (dict, list)) for v in item.values())


def test_split_items_accepts_the_folder(sunnybrook_dir):
    assert split_items(sunnybrook_dir, "seed", "test") == split_items(sunnybrook_dir / "datalist.json", "seed", "test")


def test_max_cases_keeps_the_first(sunnybrook_dir, datalist):
    items = split_items(sunnybrook_dir, "seed", "train", max_cases=3)
    assert [item["case_id"] for item in items] == datalist["splits"]["seed"]["train"][:3]


@pytest.mark.parametrize("fold", [2, "2", "fold2"])
def test_fold_spellings(sunnybrook_dir, datalist, fold):
    items = split_items(sunnybrook_dir, fold, "test")
    assert [item["case_id"] for item in items] == datalist["splits"]["fold2"]["test"]


@pytest.mark.parametrize(("given", "key"), [("seed", "seed"), (0, "fold0"), ("4", "fold4"), ("fold3", "fold3")])
def test_split_name(given, key):
    assert split_name(given) == key


def test_slice_items_expand_every_slice(sunnybrook_dir):
    items = split_items(sunnybrook_dir, "seed", "test")
    slices = slice_items(items)
    assert len(slices) == sum(item["num_slices"] for item in items)
    for item in items:
        mine = [s for s in slices if s["case_id"] == item["case_id"]]
        assert [s["slice"] for s in mine] == list(range(item["num_slices"]))
        assert all(s["image"] == item["image"] and s["label"] == item["label"] for s in mine)
    assert "slice" not in items[0]  # the volume items are not modified


def test_slice_items_on_synthetic_items():
    assert slice_items([{"image": "a", "num_slices": 2}, {"image": "b", "num_slices": "1"}]) == [
        {"image": "a", "num_slices": 2, "slice": 0},
        {"image": "a", "num_slices": 2, "slice": 1},
        {"image": "b", "num_slices": "1", "slice": 0},
    ]


def test_missing_datalist(tmp_path):
    with pytest.raises(InputError, match="no such datalist") as excinfo:
        split_items(tmp_path)
    assert excinfo.value.path == tmp_path / "datalist.json"
    assert str(tmp_path / "datalist.json") in str(excinfo.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not a JSON datalist"),
        ('["a", "b"]', "not a datalist"),
        ('{"cases": [{"image": "x"}]}', "case_id"),
    ],
)
def test_broken_datalist(tmp_path, content, problem):
    path = tmp_path / "datalist.json"
    path.write_text(content)
    with pytest.raises(InputError, match=problem) as excinfo:
        load_datalist(path)
    assert str(path) in str(excinfo.value)


def test_unknown_split_and_subset(sunnybrook_dir):
    with pytest.raises(InputError, match="no split 'fold9'") as excinfo:
        split_items(sunnybrook_dir, 9)
    message = str(excinfo.value)
    assert str(sunnybrook_dir.resolve() / "datalist.json") in message
    assert "fold0" in message and "seed" in message
    with pytest.raises(InputError, match="no subset 'holdout'"):
        split_items(sunnybrook_dir, "seed", "holdout")


def test_missing_image_file(sunnybrook_dir, tmp_path):
    shutil.copy(sunnybrook_dir / "datalist.json", tmp_path / "datalist.json")  # listed files are not there
    with pytest.raises(InputError, match="missing") as excinfo:
        split_items(tmp_path, "seed", "test")
    first = json.loads((tmp_path / "datalist.json").read_text(encoding="utf-8"))["splits"]["seed"]["test"][0]
    assert excinfo.value.path == tmp_path.resolve() / "images" / f"{first}.nii.gz"
    assert str(tmp_path.resolve() / "datalist.json") in str(excinfo.value)
    assert len(split_items(tmp_path, "seed", "test", check_files=False)) == 6


def test_missing_label_file(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"")
    datalist = {
        "cases": [{"case_id": "a", "image": "a.nii.gz", "label": "a_seg.nii.gz", "num_slices": 1}],
        "splits": {"seed": {"train": ["a"], "validation": [], "test": []}},
    }
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    with pytest.raises(InputError) as excinfo:
        split_items(tmp_path)
    assert excinfo.value.path == tmp_path.resolve() / "a_seg.nii.gz"


def test_split_naming_an_unknown_case(tmp_path):
    datalist = {"cases": [], "splits": {"seed": {"train": ["ghost"]}}}
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    with pytest.raises(InputError, match="unknown case 'ghost'"):
        split_items(tmp_path)
