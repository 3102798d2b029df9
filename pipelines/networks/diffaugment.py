"""Differentiable augmentation of everything a GAN discriminator sees (DiffAugment, Zhao et al. 2020).

With a few hundred training images, a discriminator memorises the real set within a few hundred iterations; its
loss goes to zero and the generator's gradient becomes uninformative (``mr_synthesis_gan`` on 3 patients: the
validation Fréchet distance rose from epoch 5 on while D's loss fell below 0.01). DiffAugment applies the same kind
of random, *differentiable* transforms to real and generated images before D, so D cannot memorise exact pixels, and
the generator still receives gradients through the transforms (the augmentations do not leak into its samples,
because the same distribution of transforms is applied to both sides). MONAI's random transforms are not
differentiable with respect to their input batch in this way and run per sample on the CPU, so the two transforms
of the paper are written here:

- translation: each image is shifted by a random whole number of pixels in [-t H, t H] (zeros come in);
- cutout: a random square of side c H is zeroed in each image.

Randomness comes from PyTorch's global generator, which ``set_determinism`` seeds and the training checkpoint
restores (``pipelines.handlers.RNGState``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional

__all__ = ["DiffAugment", "random_cutout", "random_translation"]


def random_translation(images: torch.Tensor, ratio: float) -> torch.Tensor:
    """Shift each image of ``[N, C, H, W]`` by its own random (dy, dx), |d| <= ratio x side, filling with zeros."""
    n, _, height, width = images.shape
    max_y, max_x = int(height * ratio), int(width * ratio)
    if max_y == 0 and max_x == 0:
        return images
    shift_y = torch.randint(-max_y, max_y + 1, (n, 1, 1), device=images.device)
    shift_x = torch.randint(-max_x, max_x + 1, (n, 1, 1), device=images.device)
    rows = torch.arange(height, device=images.device)[None, :, None] - shift_y  # source row of each output row
    cols = torch.arange(width, device=images.device)[None, None, :] - shift_x
    padded = functional.pad(images, [1, 1, 1, 1])  # index 0 and -1 read the zero border
    rows = (rows + 1).clamp(0, height + 1).expand(n, height, width)
    cols = (cols + 1).clamp(0, width + 1).expand(n, height, width)
    batch = torch.arange(n, device=images.device)[:, None, None].expand(n, height, width)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def random_cutout(images: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero one random square of side ratio x side in each image of ``[N, C, H, W]``."""
    n, _, height, width = images.shape
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    if size_y == 0 or size_x == 0:
        return images
    top = torch.randint(0, height - size_y + 1, (n, 1, 1), device=images.device)
    left = torch.randint(0, width - size_x + 1, (n, 1, 1), device=images.device)
    rows = torch.arange(height, device=images.device)[None, :, None]
    cols = torch.arange(width, device=images.device)[None, None, :]
    inside = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)
    return images * (~inside)[:, None].to(images.dtype)


class DiffAugment(nn.Module):
    """A discriminator that sees randomly translated and cut-out images while training (identity in eval mode).

    Args:
        discriminator: the discriminator, called as ``discriminator(images, *args)``.
        translation: largest shift as a fraction of the side (the paper's 1/8).
        cutout: side of the zeroed square as a fraction of the side (the paper's 1/2); 0 disables it.
    """

    def __init__(self, discriminator: nn.Module, translation: float = 0.125, cutout: float = 0.5) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.translation = float(translation)
        self.cutout = float(cutout)

    def forward(self, images: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.training:
            images = random_cutout(random_translation(images, self.translation), self.cutout)
        return self.discriminator(images, *args, **kwargs)
