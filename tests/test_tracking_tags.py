"""Tests for :mod:`pipelines.tracking_tags`: run names, tags and content digests, without MLflow."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipelines import __version__
from pipelines.tracking_tags import (
    combine_digests, datalist_digest, files_digest, git_commit, run_name, run_tags, split_label,
)

BUNDLE_DIR = Path(__file__).resolve().parents[1] / "bundles" / "lv_segmentation_unet"


def make_dataset(root: Path, cases: int = 3) -> Path:
    """A prepared-dataset layout: ``images/``, ``labels/`` and a datalist with a seed split."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    entries = []
    for k in range(cases):
        image = np.arange(4 * 4 * 2, dtype=np.float32).reshape(4, 4, 2) + k
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / "images" / f"c{k}.nii.gz")
        nib.save(nib.Nifti1Image((image > 10).astype(np.uint8), np.eye(4)), root / "labels" / f"c{k}.nii.gz")
        entries.append({"case_id": f"c{k}", "image": f"images/c{k}.nii.gz", "label": f"labels/c{k}.nii.gz"})
    splits = {"seed": {"train": ["c0", "c1"], "validation": ["c2"], "test": []}}
    (root / "datalist.json").write_text(json.dumps({"cases": entries, "splits": splits}), encoding="utf-8")
    return root


@pytest.mark.parametrize(("command", "split", "subset", "expected"), [
    ("train", "seed", None, "b train seed"),
    ("train", "fold2", None, "b train fold 2"),
    ("train", "3", None, "b train fold 3"),
    ("evaluate", "seed", "test", "b evaluate test"),
    ("evaluate", "fold1", "test", "b evaluate test fold 1"),
    ("predict", None, None, "b predict"),
])
def test_run_names(command: str, split: str | None, subset: str | None, expected: str) -> None:
    assert run_name("b", command, split, subset) == expected


def test_split_labels() -> None:
    assert [split_label(s) for s in ("seed", "fold0", "4", "other")] == ["seed", "fold 0", "fold 4", "other"]


def test_the_digest_follows_the_content_not_the_folder(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "a")
    train, validation = datalist_digest(data, "seed", ["train", "validation"])
    assert (train.name, train.context, train.cases) == ("seed/train", "training", 2)
    assert (validation.context, validation.cases) == ("validation", 1)
    assert datalist_digest(data / "datalist.json", "seed", ["train"]) == [train]  # hashed the same, again

    moved = tmp_path / "elsewhere" / "renamed"
    shutil.move(data, moved)
    again = datalist_digest(moved, "seed", ["train", "validation"])
    assert [d.digest for d in again] == [train.digest, validation.digest]
    assert again[0].source == str(moved.resolve() / "datalist.json")

    image = nib.load(moved / "images" / "c1.nii.gz")
    voxels = np.asarray(image.dataobj).copy()
    voxels[0, 0, 0] += 1  # one voxel of one training input
    nib.save(nib.Nifti1Image(voxels, image.affine), moved / "images" / "c1.nii.gz")
    changed = datalist_digest(moved, "seed", ["train", "validation"])
    assert changed[0].digest != train.digest and changed[1].digest == validation.digest
    assert combine_digests(changed) != combine_digests([train, validation])
    # fewer cases read, another digest
    assert datalist_digest(moved, "seed", ["train"], max_cases=1)[0].digest != changed[0].digest


def test_files_digest_is_by_name_and_content(tmp_path: Path) -> None:
    make_dataset(tmp_path / "d")
    images = tmp_path / "d" / "images"
    first = files_digest({p.name: p for p in sorted(images.iterdir())})
    assert first.cases == 3 and first.context == "inference"
    assert files_digest({p.name: p for p in sorted(images.iterdir(), reverse=True)}).digest == first.digest
    copy = shutil.copytree(images, tmp_path / "copy")
    assert files_digest({p.name: p for p in copy.iterdir()}).digest == first.digest
    (copy / "c0.nii.gz").write_bytes((copy / "c0.nii.gz").read_bytes() + b"\0")
    assert files_digest({p.name: p for p in copy.iterdir()}).digest != first.digest


def test_git_commit_is_the_checkouts_head_or_the_version(tmp_path: Path) -> None:
    git_commit.cache_clear()  # cached per process: a commit made while the suite runs would otherwise be missed
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=BUNDLE_DIR)
    commit = git_commit()
    if head.returncode == 0:
        assert commit.split("+")[0] == head.stdout.strip() and commit.endswith(("+dirty", head.stdout.strip()))
    git_commit.cache_clear()
    assert git_commit(tmp_path) == __version__  # not a git checkout


def test_run_tags(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d")
    datasets = datalist_digest(data, "fold2", ["train"])
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    tags = run_tags(BUNDLE_DIR, "evaluate", split="2", datasets=datasets, checkpoint=checkpoint,
                    argv=["evaluate", "lv_segmentation_unet", "--fold", "2"])
    meta = json.loads((BUNDLE_DIR / "configs" / "metadata.json").read_text(encoding="utf-8"))
    assert tags["pipelines.bundle"] == "lv_segmentation_unet"
    assert tags["pipelines.bundle_version"] == meta["version"]
    assert (tags["pipelines.command"], tags["pipelines.split"], tags["pipelines.fold"]) == ("evaluate", "fold2", "2")
    assert tags["pipelines.dataset_digest"] == combine_digests(datasets)
    assert tags["pipelines.checkpoint_sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert tags["pipelines.command_line"] == "pipelines evaluate lv_segmentation_unet --fold 2"
    assert tags["pipelines.device"] in ("cpu",) or tags["pipelines.device"].startswith("cuda")
    assert "pipelines.fold" not in run_tags(BUNDLE_DIR, "train", split="seed")
