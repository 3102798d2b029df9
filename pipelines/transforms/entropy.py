"""Voxel-wise predictive entropy of a softmax: where the model (and its test-time flips) is unsure.

MONAI has no transform for it. With ``p_c`` the class probabilities at a voxel (here the mean softmax of the flip
ensemble, so flips that disagree lower its confidence), the normalised entropy is

    H = -sum_c p_c log p_c / log C,      0 (one class certain) <= H <= 1 (all C classes equally likely).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["PredictiveEntropyd", "normalised_entropy"]


def normalised_entropy(probabilities: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(C, *spatial)`` probabilities -> ``(1, *spatial)`` entropy divided by ``log C`` (in [0, 1])."""
    p = torch.as_tensor(probabilities).float().clamp_min(eps)
    classes = p.shape[0]
    if classes < 2:
        raise ValueError(f"entropy needs at least two classes, got {classes}")
    return -(p * p.log()).sum(dim=0, keepdim=True) / math.log(classes)


class PredictiveEntropyd(MapTransform):
    """Write the normalised entropy of ``d[key]`` (channel-first probabilities) into ``d[output_key]``.

    The output keeps the input's meta data (a MetaTensor stays one), so it can be saved on the same grid.

    Args:
        keys: the probability key, e.g. ``"pred"`` (after softmax, before argmax).
        output_key: where the ``(1, *spatial)`` entropy map goes.
        allow_missing_keys: skip absent keys.
    """

    def __init__(self, keys: KeysCollection, output_key: str = "entropy", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            probabilities = d[key]
            entropy = normalised_entropy(probabilities)
            if hasattr(probabilities, "copy_meta_from"):
                entropy = type(probabilities)(entropy, meta=dict(probabilities.meta))
            d[self.output_key] = entropy
        return d
