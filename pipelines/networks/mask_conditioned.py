"""A mask-conditioned image generator that returns (image, mask) pairs (pix2pix-style synthesis; MONAI has none).

``mr_synthesis_pix2pix`` learns the image of a myocardium mask, ``x = G(m)``, from real (mask, image) pairs. Given a
real mask under a random deformation, the generator then draws a new image whose label is known by construction:
the deformed mask itself. Returning the pair ``(x, m)`` keeps the interface of the joint generator of
``mr_synthesis_gan`` (``[N, 2, H, W]``: image, mask), so the same realism metrics, sample grids and NIfTI writer
serve both:

    G(m) = concat(sigmoid(f(m)), m)

with ``f`` any image-to-image network (MONAI's ``UNet`` in the bundle) and the image on the segmentation bundles'
0..1 intensity scale.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MaskConditionedGenerator"]


class MaskConditionedGenerator(nn.Module):
    """``G(m) = concat(sigmoid(f(m)), m)``: an image drawn for mask ``m`` ``[N, 1, H, W]``, paired with ``m``.

    Args:
        network: ``f``, one input channel (the mask) to one output channel (the image's logits).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        if mask.ndim != 4 or mask.shape[1] != 1:
            raise ValueError(f"expected masks [N, 1, H, W], got {tuple(mask.shape)}")
        return torch.cat([torch.sigmoid(self.network(mask)), mask], dim=1)
