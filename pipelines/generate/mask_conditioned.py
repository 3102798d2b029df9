"""Synthetic image / mask pairs from real masks under random deformations (``mr_synthesis_pix2pix``, issue #5).

A mask-conditioned generator ``G(m)`` (:class:`pipelines.networks.MaskConditionedGenerator`) only has to learn the
texture of an image for a given mask; the shape variety comes from the training patients' own masks, each drawn at
random and deformed by the bundle's random transform (elastic + affine, MONAI ``Rand2DElasticd`` /
``RandAffined``). The written pair is ``(G(m'), m')`` for the deformed mask ``m'``, so the mask is the label of the
image by construction.

``source="real"`` writes the *real* image under the same deformation instead of ``G(m')``: with the same seed the
masks are identical, so a segmentation trained on those pairs is the control that tells what the generator adds
beyond the deformations themselves.

Everything random (which slice, the deformation) comes from the synthesizer's seeded generator, so a seed always
writes the same files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.transforms import Randomizable

from pipelines.data.datalist import slice_items
from pipelines.errors import InputError
from pipelines.generate.pairs import GROUPS, MASK_THRESHOLD, PairSynthesizer

__all__ = ["MaskConditionedSynthesizer", "SOURCES"]

logger = logging.getLogger(__name__)

SOURCES = ("generator", "real")


class MaskConditionedSynthesizer(PairSynthesizer):
    """Draw ``count`` pairs ``(G(m'), m')`` from deformed masks ``m'`` of the training patients.

    Args:
        network: the mask-conditioned generator, ``[N, 1, H, W]`` masks -> ``[N, 2, H, W]`` (image, mask) pairs.
        items: the cases whose masks are drawn (the bundle's ``train#items``: the generator's own training
            patients), each with ``num_slices`` and ``category``.
        transform: loads one slice item (``{..., "slice": k}``) into ``{"image": [1, H, W] in 0..1,
            "label": [1, H, W] binary mask}``.
        deformation: a random dictionary transform applied to ``image`` and ``label`` jointly; seeded from ``seed``.
        source: ``"generator"`` (pairs drawn by G) or ``"real"`` (the deformed real image: the control arm).
        label: a group name: draw only masks of that diagnostic group.
        The other arguments are :class:`~pipelines.generate.pairs.PairSynthesizer`'s.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        checkpoint: str | Path,
        output_dir: str | Path,
        count: int,
        items: Sequence[Mapping[str, Any]],
        transform: Callable[[dict[str, Any]], Mapping[str, Any]],
        deformation: Callable[[dict[str, Any]], Mapping[str, Any]],
        source: str = "generator",
        seed: int = 0,
        label: str | None = None,
        overwrite: bool = False,
        device: str | torch.device = "cpu",
        key: str = "model",
        classes: Sequence[str] = GROUPS,
        batch_size: int = 100,
        spacing_mm: Sequence[float] = (3.0, 3.0, 8.0),
    ) -> None:
        super().__init__(network, checkpoint, output_dir, count, seed, label, overwrite, device, key, classes,
                         batch_size, spacing_mm)
        if source not in SOURCES:
            raise InputError("source", f"expected one of {', '.join(SOURCES)}, got {source!r}")
        self.items, self.transform, self.deformation, self.source = list(items), transform, deformation, source

    def _slices(self) -> list[dict[str, Any]]:
        slices = slice_items(self.items)
        if self.label is not None:
            group = self.classes.index(self.label)
            slices = [s for s in slices if int(s["category"]) == group]
        if not slices:
            raise InputError("--label" if self.label else "items", "no training slice to draw masks from")
        return slices

    def draw(self, generator: torch.Generator) -> tuple[torch.Tensor, list[int]]:
        """Pick ``count`` training slices at random, deform each (image and mask together), and pair the deformed
        mask with G's image for it (or with the deformed real image, for ``source="real"``)."""
        slices = self._slices()
        loaded = [self.transform(dict(s)) for s in slices]
        picks = torch.randint(len(slices), (self.count,), generator=generator).tolist()
        if isinstance(self.deformation, Randomizable):
            self.deformation.set_random_state(seed=int(torch.randint(2**31 - 1, (1,), generator=generator)))
        images, masks = [], []
        for k in picks:
            out = self.deformation({"image": torch.as_tensor(loaded[k]["image"]).clone(),
                                    "label": torch.as_tensor(loaded[k]["label"]).clone()})
            images.append(torch.as_tensor(out["image"]).float())
            masks.append((torch.as_tensor(out["label"]).float() > MASK_THRESHOLD).float())
        mask_batch = torch.stack(masks)
        if self.source == "real":
            pairs = torch.cat([torch.stack(images).clamp(0, 1), mask_batch], dim=1)
        else:
            pairs = torch.cat([self.network(chunk.to(self.device)).float().cpu()
                               for chunk in torch.split(mask_batch, self.batch_size)])
        return pairs, [int(slices[k]["category"]) for k in picks]

    def write(self, generator: torch.Generator) -> Mapping[str, Any]:
        summary = dict(super().write(generator))
        summary["source"] = self.source
        summary["mask_cases"] = sorted({str(item.get("case_id")) for item in self.items})
        return summary
