"""MaskConditionedSynthesizer: deformed real masks, an image drawn for each, and the deformed-real control."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.networks.nets import UNet
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, Rand2DElasticd, RandFlipd
from monai.transforms import ScaleIntensityRangePercentilesd

from pipelines.data import load_synthetic, split_items
from pipelines.errors import InputError
from pipelines.generate.mask_conditioned import MaskConditionedSynthesizer
from pipelines.networks import MaskConditionedGenerator
from pipelines.transforms import SelectSliced


def _generator() -> MaskConditionedGenerator:
    torch.manual_seed(0)
    return MaskConditionedGenerator(UNet(2, 1, 1, channels=(4, 8, 8), strides=(2, 2), num_res_units=1))


def _load() -> Compose:
    keys = ["image", "label"]
    return Compose([LoadImaged(keys, image_only=True), EnsureChannelFirstd(keys),
                    ScaleIntensityRangePercentilesd("image", 0.5, 99.5, 0.0, 1.0, clip=True),
                    SelectSliced(keys, index_key="slice"), EnsureTyped(keys, dtype=torch.float32, track_meta=False)])


def _deformation() -> Compose:
    keys = ["image", "label"]
    return Compose([RandFlipd(keys, prob=0.5, spatial_axis=0),
                    Rand2DElasticd(keys, spacing=(16, 16), magnitude_range=(1, 3), prob=1.0, rotate_range=0.3,
                                   mode=["bilinear", "nearest"])])


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "g.pt"
    torch.save(_generator().state_dict(), path)
    return path


def _synthesizer(weights: Path, output: Path, sunnybrook_dir: Path, **kwargs) -> MaskConditionedSynthesizer:
    items = split_items(sunnybrook_dir, "0", "train", max_cases=2)
    return MaskConditionedSynthesizer(_generator(), weights, output, count=kwargs.pop("count", 5), items=items,
                                      transform=_load(), deformation=_deformation(), **kwargs)


def test_pairs_are_seeded_and_the_control_shares_the_masks(weights: Path, tmp_path: Path,
                                                           sunnybrook_dir: Path) -> None:
    a = _synthesizer(weights, tmp_path / "a", sunnybrook_dir, seed=3).run()
    _synthesizer(weights, tmp_path / "b", sunnybrook_dir, seed=3).run()
    control = _synthesizer(weights, tmp_path / "real", sunnybrook_dir, seed=3, source="real").run()
    assert a["source"] == "generator" and control["source"] == "real" and len(a["mask_cases"]) == 2
    real = nib.load(next((sunnybrook_dir / "images").glob("*.nii.gz")))
    for k in range(5):
        names = [f"syn_{k:04d}_image.nii.gz", f"syn_{k:04d}_mask.nii.gz"]
        for name in names:
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        image, mask = (nib.load(tmp_path / "a" / name) for name in names)
        assert image.shape == mask.shape == (*real.shape[:2], 1)
        assert np.allclose(image.affine[:2, :2], real.affine[:2, :2])
        values = np.asarray(mask.dataobj)
        assert set(np.unique(values).tolist()) <= {0, 1} and values.any()
        # the same deformed mask in the generator's pair and in the control's
        assert np.array_equal(values, np.asarray(nib.load(tmp_path / "real" / names[1]).dataobj))
        assert not np.array_equal(np.asarray(image.dataobj), np.asarray(nib.load(tmp_path / "real" / names[0]).dataobj))
    assert len(load_synthetic(tmp_path / "a")) == 5
    # another seed draws other masks
    _synthesizer(weights, tmp_path / "c", sunnybrook_dir, seed=4).run()
    assert any((tmp_path / "a" / f"syn_{k:04d}_mask.nii.gz").read_bytes()
               != (tmp_path / "c" / f"syn_{k:04d}_mask.nii.gz").read_bytes() for k in range(5))


def test_one_group_and_bad_arguments(weights: Path, tmp_path: Path, sunnybrook_dir: Path) -> None:
    items = split_items(sunnybrook_dir, "0", "train", max_cases=2)
    group = json.loads((sunnybrook_dir / "datalist.json").read_text(encoding="utf-8"))["categories"]
    name = group[str(items[0]["category"])]
    _synthesizer(weights, tmp_path / "g", sunnybrook_dir, count=2, label=name).run()
    cases = json.loads((tmp_path / "g" / "datalist.json").read_text(encoding="utf-8"))["cases"]
    assert {c["category_name"] for c in cases} == {name}
    with pytest.raises(InputError, match="source"):
        _synthesizer(weights, tmp_path / "x", sunnybrook_dir, source="noise")
    absent = next(g for k, g in group.items() if all(int(k) != i["category"] for i in items))
    with pytest.raises(InputError, match="no training slice"):
        _synthesizer(weights, tmp_path / "y", sunnybrook_dir, label=absent).run()
