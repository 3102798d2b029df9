"""Selecting one 2D slice of a loaded 3D volume, so 2D networks train on slices of per-patient volumes."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = ["SelectSliced"]


class SelectSliced(MapTransform):
    """Replace channel-first volumes ``(C, H, W, D)`` by their slice ``d[index_key]`` along the last axis ``(C, H, W)``.

    The 4x4 affine is reduced to the 3x3 in-plane affine (rows/columns of axes 0 and 1 and the translation), so
    later 2D spatial transforms see a consistent 2D geometry.

    Args:
        keys: keys of the volumes to slice (e.g. ``["image", "label"]``).
        index_key: key of the slice index in the item (written by :func:`pipelines.data.slice_items`).
        allow_missing_keys: do not raise for absent keys.
    """

    def __init__(self, keys: KeysCollection, index_key: str = "slice", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.index_key = index_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        index = int(d[self.index_key])
        for key in self.key_iterator(d):
            volume = d[key]
            if volume.ndim != 4:
                raise ValueError(f"{key}: expected a channel-first 3D volume (C, H, W, D), got {tuple(volume.shape)}")
            sliced = volume[..., index]
            if isinstance(volume, MetaTensor):
                affine = torch.as_tensor(volume.affine, dtype=torch.float64)
                keep = [0, 1, 3]
                meta = dict(volume.meta)
                meta.pop("affine", None)
                sliced = MetaTensor(sliced.as_tensor(), affine=affine[keep][:, keep], meta=meta)
            elif isinstance(volume, np.ndarray):
                sliced = np.ascontiguousarray(sliced)
            d[key] = sliced
        return d
