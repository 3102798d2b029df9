"""Mixing synthetic image / mask pairs into training slices: counts, seeding, refusals, and a bundle run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipelines.data import load_synthetic, mix_synthetic, slice_items, split_items
from pipelines.errors import InputError


@pytest.fixture(scope="module")
def synthetic_dir(sunnybrook_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic datalist of 5 single-slice pairs (mid slices of real training volumes stand in for a generator's
    output: what is tested is the mixing, not the realism)."""
    folder = tmp_path_factory.mktemp("synthetic")
    cases = []
    for k, item in enumerate(split_items(sunnybrook_dir, "seed", "train", max_cases=5)):
        for field in ("image", "label"):
            volume = nib.load(item[field])
            middle = np.asarray(volume.dataobj)[..., volume.shape[-1] // 2 : volume.shape[-1] // 2 + 1]
            nib.save(nib.Nifti1Image(middle, volume.affine), folder / f"syn_{k:04d}_{field}.nii.gz")
        cases.append({"case_id": f"syn_{k:04d}", "image": f"syn_{k:04d}_image.nii.gz",
                      "label": f"syn_{k:04d}_label.nii.gz", "num_slices": 1})
    (folder / "datalist.json").write_text(json.dumps({"synthetic": True, "cases": cases}), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def real_slices(sunnybrook_dir: Path) -> list[dict]:
    return slice_items(split_items(sunnybrook_dir, "seed", "train", max_cases=2))


def test_nothing_mixed_returns_the_real_slices_unchanged(real_slices: list[dict], synthetic_dir: Path) -> None:
    assert mix_synthetic(real_slices) == real_slices
    assert mix_synthetic(real_slices, synthetic_dir, ratio=0.0) == real_slices


@pytest.mark.parametrize("ratio", [0.1, 0.5, 1.0])
def test_ratio_counts_and_shared_keys(real_slices: list[dict], synthetic_dir: Path, ratio: float) -> None:
    mixed = mix_synthetic(real_slices, synthetic_dir, ratio=ratio, seed=3)
    synthetic = [item for item in mixed if item["synthetic"]]
    assert len(mixed) - len(synthetic) == len(real_slices)
    assert len(synthetic) == round(ratio * len(real_slices))
    assert {frozenset(item) for item in mixed} == {frozenset(("case_id", "image", "label", "slice", "synthetic"))}
    # no synthetic slice repeats before all have been used
    ids = [item["case_id"] for item in synthetic]
    assert len(set(ids[:5])) == min(5, len(ids))


def test_seeded_order(real_slices: list[dict], synthetic_dir: Path) -> None:
    def ids(seed: int) -> list[str]:
        return [i["case_id"] for i in mix_synthetic(real_slices, synthetic_dir, 0.2, seed) if i["synthetic"]]

    assert ids(1) == ids(1)
    assert sorted(ids(1)) == sorted(ids(2)) and ids(1) != ids(2)


def test_refusals(sunnybrook_dir: Path, synthetic_dir: Path, tmp_path: Path, real_slices: list[dict]) -> None:
    with pytest.raises(InputError, match="not a synthetic datalist"):
        load_synthetic(sunnybrook_dir)  # a patients' datalist is never mixed in as synthetic
    broken = json.loads((synthetic_dir / "datalist.json").read_text(encoding="utf-8"))
    broken["cases"][0]["label"] = "gone.nii.gz"
    (tmp_path / "datalist.json").write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(InputError, match="missing"):
        load_synthetic(tmp_path)
    with pytest.raises(InputError, match="at least 0"):
        mix_synthetic(real_slices, synthetic_dir, ratio=-1)


def test_segmentation_bundle_trains_on_a_mix(
    sunnybrook_dir: Path, synthetic_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A config override, not a code change: the U-Net bundle trains on real + synthetic slices."""
    from pipelines import api

    caplog.set_level(logging.INFO, logger="pipelines.data.synthetic")
    summary = api.train(
        "lv_segmentation_unet", sunnybrook_dir, tmp_path / "run", epochs=1, max_cases=2,
        overrides={"synthetic_datalist": str(synthetic_dir / "datalist.json"), "synthetic_ratio": 0.5,
                   "batch_size": 8},
    )
    assert summary["epochs"] == 1
    executed = json.loads(next((tmp_path / "run").glob("config_*.json")).read_text(encoding="utf-8"))
    assert executed["synthetic_ratio"] == 0.5
    real = sum(item["num_slices"] for item in split_items(sunnybrook_dir, "seed", "train", max_cases=2))
    assert f"training on {real} real + {round(0.5 * real)} synthetic slices" in caplog.text
