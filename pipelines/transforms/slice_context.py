"""Neighbouring slices as extra channels ("2.5D" input), so a 2D network sees where a slice lies in its stack.

MONAI has no such transform (``SliceInferer`` slices every channel of the input along one axis, so a volume whose
channels are its shifted copies gives a 2D network the neighbours of each slice for free, in training and at
inference alike); this module adds it, written by hand.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform

__all__ = ["RandReverseSliceContextd", "SliceContextd", "slice_context"]


def slice_context(volume: torch.Tensor, context: int) -> torch.Tensor:
    """Stack the ``context`` slices on either side of every slice as channels.

    For a one-channel volume ``x`` of shape ``(1, H, W, D)`` the output ``y`` has shape ``(2k + 1, H, W, D)`` with
    ``y[c, ..., z] = x[0, ..., z + c - k]`` for ``0 <= z + c - k < D`` and ``0`` outside the stack (``k`` =
    ``context``), so channel ``k`` is the slice itself and the zero channels tell the network that a slice is
    the first or last of its stack. ``context = 0`` returns ``x`` unchanged.

    Raises:
        ValueError: if ``volume`` is not ``(1, H, W, D)`` or ``context`` is negative.
    """
    if context < 0:
        raise ValueError(f"slice context must be >= 0, got {context}")
    if volume.ndim != 4 or volume.shape[0] != 1:
        raise ValueError(f"expected a one-channel volume (1, H, W, D), got {tuple(volume.shape)}")
    if context == 0:
        return volume
    depth = volume.shape[-1]
    channels = []
    for offset in range(-context, context + 1):
        shifted = torch.zeros_like(volume[0])
        lo, hi = max(0, -offset), min(depth, depth - offset)
        if lo < hi:
            shifted[..., lo:hi] = volume[0, ..., lo + offset : hi + offset]
        channels.append(shifted)
    return torch.stack(channels)


class SliceContextd(MapTransform):
    """Dictionary form of :func:`slice_context` for channel-first volumes whose last axis is the stacking axis.

    The metadata (affine, applied operations) is kept, so ``Invertd`` still maps predictions back to the input grid:
    only the channel count changes.

    Args:
        keys: keys of the one-channel volumes (e.g. ``"image"``).
        context: slices taken on either side (0: identity).
        allow_missing_keys: do not raise for absent keys.
    """

    def __init__(self, keys: KeysCollection, context: int = 1, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if context < 0:
            raise ValueError(f"slice context must be >= 0, got {context}")
        self.context = context

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            volume = d[key]
            if isinstance(volume, MetaTensor):
                stacked = slice_context(volume.as_tensor(), self.context)
                d[key] = MetaTensor(stacked, meta=volume.meta, applied_operations=volume.applied_operations)
            else:
                d[key] = slice_context(torch.as_tensor(volume), self.context)
        return d


class RandReverseSliceContextd(RandomizableTransform, MapTransform):
    """With probability ``prob``, reverse the channel order of a :class:`SliceContextd` output.

    Channel ``c`` and ``2k - c`` swap, which is the same input as the stack acquired in the opposite direction:
    scanners and DICOM readers order short-axis slices base-to-apex or apex-to-base, and the network must not learn
    one of them. Works on slices ``(C, H, W)`` and volumes alike.
    """

    def __init__(self, keys: KeysCollection, prob: float = 0.5, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = torch.flip(torch.as_tensor(d[key]), dims=(0,))
        return d
