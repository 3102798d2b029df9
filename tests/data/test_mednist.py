"""Tests for :mod:`pipelines.data.mednist`: JPEG zip -> lossless PNG round trip, labels, stratified split, errors.

The real ``MedNIST_64x64_500.zip`` is converted once per module; archives with one fault each are rebuilt from its
members in ``tmp_path``.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.data import mednist, sources
from pipelines.errors import InputError, OutputExistsError, PipelineError

N_IMAGES = 3000


@pytest.fixture(scope="module")
def members(mednist_zip: Path) -> dict[str, bytes]:
    """Archive member name -> bytes of the real zip."""
    with zipfile.ZipFile(mednist_zip) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.fixture(scope="module")
def converted(mednist_dir: Path) -> Path:
    """The real zip converted once per session; tests must not modify it."""
    return mednist_dir


@pytest.fixture(scope="module")
def datalist(converted: Path) -> dict:
    return json.loads((converted / "datalist.json").read_text(encoding="utf-8"))


@pytest.fixture
def no_png(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip writing the PNGs, for tests that only look at the datalist."""
    monkeypatch.setattr(mednist, "_write_png", lambda *args, **kwargs: None)


def _zip(path: Path, members: Mapping[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _jpeg(size: tuple[int, int] = (64, 64), mode: str = "L", image_format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128).save(buffer, format=image_format)
    return buffer.getvalue()


def _assert_one_line_naming(excinfo: pytest.ExceptionInfo, *names: object) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for name in names:
        assert str(name) in message, message


def test_every_png_holds_the_decoded_jpeg_pixels(converted, datalist, members):
    pngs = sorted(p.relative_to(converted).as_posix() for p in (converted / "images").rglob("*") if p.is_file())
    assert len(pngs) == N_IMAGES and pngs == sorted(c["image"] for c in datalist["cases"])
    for case in datalist["cases"]:
        with Image.open(converted / case["image"]) as png:
            assert (png.format, png.mode, png.size) == ("PNG", "L", (64, 64))
            stored = np.asarray(png)
        expected = np.asarray(Image.open(io.BytesIO(members[case["source_member"]])))
        np.testing.assert_array_equal(stored, expected, err_msg=case["image"])


def test_labels_follow_the_class_folders(datalist):
    assert mednist.CLASSES == tuple(sorted(mednist.CLASSES)) and len(mednist.CLASSES) == 6
    assert datalist["classes"] == list(mednist.CLASSES)
    assert (datalist["source"]["sha256"], datalist["licence"]) == (mednist.SOURCE.sha256, "Apache-2.0")
    for case in datalist["cases"]:
        folder, name = case["source_member"].split("/")
        assert case["class_name"] == folder == datalist["classes"][case["label"]]
        assert case["image"] == f"images/{folder}/{Path(name).stem}.png"
        assert case["case_id"] == f"{folder}_{Path(name).stem}"
    assert Counter(c["label"] for c in datalist["cases"]) == {k: 500 for k in range(6)}
    assert len({c["case_id"] for c in datalist["cases"]}) == N_IMAGES


def _assert_stratified_split(datalist: dict, n_val: int, n_test: int) -> None:
    split = datalist["splits"]["seed"]
    label = {c["case_id"]: c["label"] for c in datalist["cases"]}
    train, validation, test = (set(split[k]) for k in ("train", "validation", "test"))
    assert not train & validation and not train & test and not validation & test
    assert train | validation | test == set(label)
    for subset, per_class in (("train", 500 - n_val - n_test), ("validation", n_val), ("test", n_test)):
        assert Counter(label[c] for c in split[subset]) == {k: per_class for k in range(6)}, subset


def test_split_is_stratified_disjoint_and_complete(datalist):
    _assert_stratified_split(datalist, n_val=50, n_test=100)
    assert (datalist["seed"], datalist["n_val_per_class"], datalist["n_test_per_class"]) == (0, 50, 100)


def test_split_depends_only_on_the_seed(mednist_zip, datalist, tmp_path, no_png):
    again = json.loads(mednist.convert(mednist_zip, tmp_path / "same").read_text(encoding="utf-8"))
    other = json.loads(mednist.convert(mednist_zip, tmp_path / "other", seed=5).read_text(encoding="utf-8"))
    assert again["splits"] == datalist["splits"]
    assert other["splits"] != datalist["splits"] and other["seed"] == 5
    assert other["cases"] == datalist["cases"]
    small = json.loads(mednist.convert(mednist_zip, tmp_path / "small", n_val=3, n_test=7).read_text(encoding="utf-8"))
    _assert_stratified_split(small, n_val=3, n_test=7)
    with pytest.raises(ValueError, match="at most 500"):
        mednist.convert(mednist_zip, tmp_path / "too_many", n_val=250, n_test=251)


def test_refuses_to_overwrite(mednist_zip, converted, tmp_path):
    with pytest.raises(OutputExistsError, match="datalist.json"):
        mednist.convert(mednist_zip, converted)
    # a stray image from an earlier run is not replaced either, and nothing else is written
    stray = tmp_path / "images" / "CXR" / "00000007.png"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="00000007.png"):
        mednist.convert(mednist_zip, tmp_path)
    assert stray.read_bytes() == b"precious"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [stray]
    mednist.convert(mednist_zip, tmp_path, overwrite=True)
    with Image.open(stray) as png:
        assert png.size == (64, 64)


def test_corrupt_zip_is_a_one_line_error_naming_the_file(tmp_path):
    path = tmp_path / "garbage.zip"
    path.write_bytes(b"\x00\x01 not a zip archive " * 100)
    with pytest.raises(InputError, match="not a readable zip") as excinfo:
        mednist.convert(path, tmp_path / "out")
    _assert_one_line_naming(excinfo, path)
    assert not (tmp_path / "out").exists()


def test_missing_class_or_wrong_count_is_a_one_line_error(members, tmp_path):
    path = _zip(tmp_path / "no_mrbreast.zip", {k: v for k, v in members.items() if not k.startswith("MRBreast/")})
    with pytest.raises(InputError, match="no JPEGs in class folders") as excinfo:
        mednist.load_images(path)
    _assert_one_line_naming(excinfo, path, "MRBreast")
    path = _zip(tmp_path / "short.zip", {k: v for k, v in members.items() if k != "CXR/00000007.jpg"})
    with pytest.raises(InputError, match="expected 500 JPEGs per class") as excinfo:
        mednist.load_images(path)
    _assert_one_line_naming(excinfo, path, "'CXR': 499")


def test_path_traversal_member_writes_nothing_outside_the_output(members, tmp_path):
    evil = "CTAbd/../../evil.jpeg"
    path = _zip(tmp_path / "traversal.zip", {**members, evil: members["CTAbd/00000000.jpg"]})
    output = tmp_path / "nested" / "out"
    with pytest.raises(InputError, match="unsafe path") as excinfo:
        mednist.convert(path, output)
    _assert_one_line_naming(excinfo, path, evil)
    assert not list(tmp_path.rglob("evil*")) and not output.exists()


@pytest.mark.parametrize(
    "image, problem",
    [
        pytest.param(_jpeg(size=(32, 32)), "is 32x32, expected 64x64", id="small"),
        pytest.param(_jpeg(mode="RGB"), "not greyscale", id="rgb"),
        pytest.param(_jpeg(image_format="PNG"), "not a JPEG", id="png-named-jpg"),
        pytest.param(b"\xff\xd8 truncated", "not a readable JPEG", id="garbage"),
    ],
)
def test_bad_image_is_a_one_line_error_naming_the_member(members, tmp_path, image, problem):
    bad = "MRBrain/00000123.jpg"
    path = _zip(tmp_path / "bad.zip", {**members, bad: image})
    with pytest.raises(InputError, match=problem) as excinfo:
        mednist.convert(path, tmp_path / "out")
    _assert_one_line_naming(excinfo, path, bad)
    assert not (tmp_path / "out").exists()  # every image is checked before anything is written


def test_junk_members_and_a_top_folder_are_ignored(members, tmp_path):
    junk = {"MedNIST/": b"", "MedNIST/readme.txt": b"hello", "__MACOSX/MedNIST/CTAbd/._00000000.jpg": b"fork",
            "MedNIST/CTAbd/._00000000.jpg": b"fork"}
    path = _zip(tmp_path / "wrapped.zip", {**junk, **{f"MedNIST/{k}": v for k, v in members.items()}})
    images = mednist.load_images(path)
    assert list(images) == list(mednist.CLASSES)
    assert images["CTAbd"]["00000000"][0] == "MedNIST/CTAbd/00000000.jpg"
    assert sum(len(stems) for stems in images.values()) == N_IMAGES


def test_prepare_finds_only_a_local_verified_file(mednist_zip, tmp_path, monkeypatch, no_png):
    monkeypatch.setattr(sources, "_download", lambda source: pytest.fail("tried to download"))
    monkeypatch.setenv("PIPELINES_DATA", str(tmp_path))
    with pytest.raises(PipelineError, match="no download address") as excinfo:
        mednist.prepare(tmp_path / "out")
    _assert_one_line_naming(excinfo, "--source", "PIPELINES_DATA")
    impostor = tmp_path / "impostor" / mednist.SOURCE.filename
    impostor.parent.mkdir()
    impostor.write_bytes(b"not the MedNIST archive")
    with pytest.raises(InputError, match="sha256 mismatch"):
        mednist.prepare(tmp_path / "out", source=impostor.parent)
    datalist_path = mednist.prepare(tmp_path / "out", source=mednist_zip, n_val=1, n_test=2)
    assert datalist_path == tmp_path / "out" / "datalist.json"
    assert json.loads(datalist_path.read_text(encoding="utf-8"))["n_test_per_class"] == 2
