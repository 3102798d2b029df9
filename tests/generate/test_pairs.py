"""PairSynthesizer: NIfTI image / mask pairs with the prepared data's geometry and a synthetic datalist."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from pipelines.data import load_synthetic
from pipelines.errors import InputError
from pipelines.generate.pairs import GROUPS, PairSynthesizer
from pipelines.networks.conditional_gan import ConditionalGenerator


def _generator() -> ConditionalGenerator:
    torch.manual_seed(0)
    return ConditionalGenerator(num_classes=4, latent_size=16, embedding_size=4, channels=(16, 8, 8, 4),
                                out_channels=2)


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "g.pt"
    torch.save(_generator().state_dict(), path)
    return path


def test_pairs_geometry_binary_masks_and_datalist(weights: Path, tmp_path: Path, sunnybrook_dir: Path) -> None:
    summary = PairSynthesizer(_generator(), weights, tmp_path / "out", count=6, seed=1).run()
    out = tmp_path / "out"
    assert len(summary["written"]) == 12 and summary["per_group"] == {g: 2 if k < 2 else 1 for k, g in enumerate(GROUPS)}
    real = nib.load(next((sunnybrook_dir / "images").glob("*.nii.gz")))
    for k in range(6):
        image, mask = (nib.load(out / f"syn_{k:04d}_{part}.nii.gz") for part in ("image", "mask"))
        assert image.shape == mask.shape == (*real.shape[:2], 1)
        # in-plane voxel size as the prepared data's (the slice spacing, 8 or 10 mm, varies by patient)
        assert np.allclose(image.affine[:2, :2], real.affine[:2, :2]) and np.allclose(mask.affine, image.affine)
        assert set(np.unique(np.asarray(mask.dataobj)).tolist()) <= {0, 1}
        assert 0 <= np.asarray(image.dataobj).min() and np.asarray(image.dataobj).max() <= 1
    datalist = json.loads((out / "datalist.json").read_text(encoding="utf-8"))
    assert datalist["synthetic"] is True and [c["category"] for c in datalist["cases"]] == [0, 1, 2, 3, 0, 1]
    assert len(load_synthetic(out)) == 6  # ready to be mixed into a segmentation training


def test_one_group_and_seeding(weights: Path, tmp_path: Path) -> None:
    PairSynthesizer(_generator(), weights, tmp_path / "a", count=3, seed=5, label="hypertrophy").run()
    PairSynthesizer(_generator(), weights, tmp_path / "b", count=3, seed=5, label="hypertrophy").run()
    cases = json.loads((tmp_path / "a" / "datalist.json").read_text(encoding="utf-8"))["cases"]
    assert {c["category_name"] for c in cases} == {"hypertrophy"}
    for name in ("syn_0002_image.nii.gz", "syn_0002_mask.nii.gz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with pytest.raises(InputError, match="unknown class"):
        PairSynthesizer(_generator(), weights, tmp_path / "c", count=1, label="athlete")
