"""Run a network on an upsampled copy of its input and bring the logits back to the input grid.

For thin structures on coarse grids (the Sunnybrook myocardium is ~4 pixels thick at 64x64), a network working at
``scale`` times the resolution has more pixels per structure for its 3x3 kernels and its decision boundary is
smoothed back by the average pooling:

    f_s(x) = avgpool_s( f( upsample_s(x) ) )

(bilinear upsampling, average pooling of the logits over s x s blocks, so the output has the input's shape).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ScaledNetwork", "describe"]


class ScaledNetwork(nn.Module):
    """Wrap ``network`` so that it sees its input upsampled by ``scale`` (an integer >= 1).

    Args:
        network: any 2D or 3D segmentation network returning logits of the input's spatial size.
        scale: integer upsampling factor of every spatial axis.
    """

    def __init__(self, network: nn.Module, scale: int = 2) -> None:
        super().__init__()
        if int(scale) < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.network = network
        self.scale = int(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return self.network(x)
        spatial = x.ndim - 2
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial]
        logits = self.network(F.interpolate(x, scale_factor=self.scale, mode=mode, align_corners=False))
        pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[spatial]
        return pool(logits, kernel_size=self.scale)


def describe(network: nn.Module) -> str:
    """A short name for a (possibly wrapped) network, for run parameters: ``UNet``, ``ScaledNetwork(x2, UNet)``."""
    if isinstance(network, ScaledNetwork):
        return f"ScaledNetwork(x{network.scale}, {describe(network.network)})"
    return type(network).__name__
