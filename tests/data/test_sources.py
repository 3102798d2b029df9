"""Tests for :mod:`pipelines.data.sources`: finding a dataset file and refusing one whose sha256 is wrong.

No test reaches the network: ``_download`` is replaced by a function that fails the test.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pipelines.data import sources
from pipelines.data.sources import DATA_ENV, resolve_source, sha256sum, verify_sha256
from pipelines.data.sunnybrook import SOURCE
from pipelines.errors import ChecksumError, InputError, PipelineError


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def fail(source):
        pytest.fail(f"test tried to download {source.url}")

    monkeypatch.setattr(sources, "_download", fail)
    monkeypatch.delenv(DATA_ENV, raising=False)


@pytest.fixture
def wrong_file(tmp_path: Path) -> Path:
    """A file named like the source but with other content."""
    folder = tmp_path / "wrong"
    folder.mkdir()
    path = folder / SOURCE.filename
    path.write_bytes(b"not the Sunnybrook data\n")
    return path


def test_sha256sum_matches_hashlib(tmp_path):
    path = tmp_path / "blob.bin"
    content = bytes(range(256)) * 5000  # several chunks
    path.write_bytes(content)
    assert sha256sum(path, chunk_size=4096) == hashlib.sha256(content).hexdigest()


def test_real_file_matches_published_checksum(scd_npz):
    assert verify_sha256(scd_npz, SOURCE.sha256.upper()) == scd_npz


def test_explicit_file(scd_npz):
    assert resolve_source(SOURCE, scd_npz, download=False) == scd_npz


def test_explicit_folder(scd_npz):
    assert resolve_source(SOURCE, scd_npz.parent, download=False) == scd_npz.parent / SOURCE.filename


def test_data_env_folders_are_searched_in_order(scd_npz, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(DATA_ENV, os.pathsep.join([str(empty), "", str(scd_npz.parent)]))
    assert resolve_source(SOURCE, download=False) == scd_npz.parent / SOURCE.filename


def test_explicit_path_wins_over_data_env(scd_npz, wrong_file, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(wrong_file.parent))
    assert resolve_source(SOURCE, scd_npz, download=False) == scd_npz


@pytest.mark.parametrize("given", ["file", "folder", "env"])
def test_wrong_content_raises_checksum_error(wrong_file, monkeypatch, given):
    explicit = {"file": wrong_file, "folder": wrong_file.parent, "env": None}[given]
    if given == "env":
        monkeypatch.setenv(DATA_ENV, str(wrong_file.parent))
    with pytest.raises(ChecksumError) as excinfo:
        resolve_source(SOURCE, explicit, download=False)
    actual = hashlib.sha256(wrong_file.read_bytes()).hexdigest()
    message = str(excinfo.value)
    assert str(wrong_file) in message
    assert SOURCE.sha256 in message and actual in message
    assert (excinfo.value.expected, excinfo.value.actual) == (SOURCE.sha256, actual)
    assert isinstance(excinfo.value, InputError)


@pytest.mark.parametrize("name", ["missing.npz", "missing_folder/"])
def test_missing_explicit_path_raises_input_error(tmp_path, name):
    with pytest.raises(InputError, match="no such file") as excinfo:
        resolve_source(SOURCE, tmp_path / name, download=False)
    assert str(tmp_path) in str(excinfo.value)


def test_explicit_folder_without_the_file(tmp_path):
    with pytest.raises(InputError) as excinfo:
        resolve_source(SOURCE, tmp_path, download=False)
    assert excinfo.value.path == tmp_path / SOURCE.filename


def test_nothing_found_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(PipelineError) as excinfo:
        resolve_source(SOURCE, download=False)
    assert SOURCE.filename in str(excinfo.value)
    assert DATA_ENV in str(excinfo.value)


def test_download_is_the_last_resort(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sources, "_download", lambda source: calls.append(source) or tmp_path / "downloaded.npz")
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert resolve_source(SOURCE) == tmp_path / "downloaded.npz"
    assert calls == [SOURCE]
