"""Bound a network's output to (-1, 1) with tanh, as image-to-image generators need for targets scaled to [-1, 1].

MONAI's ``UNet`` ends with a plain convolution; wrapped here, it can serve as a CycleGAN or pix2pix generator (the
U-Net generator option of the CycleGAN paper) next to :class:`pipelines.networks.ResnetGenerator`:
``y = tanh(f(x))``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TanhOutput"]


class TanhOutput(nn.Module):
    """``tanh(network(x))``.

    Args:
        network: any network (e.g. MONAI's ``UNet``).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.network(x))
