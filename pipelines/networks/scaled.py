"""Run a network on a rescaled copy of its input and bring its output back to the input grid.

Upsampling (integer ``scale`` >= 2). For thin structures on coarse grids (the Sunnybrook myocardium is ~4 pixels thick at 64x64), a network working at
``scale`` times the resolution has more pixels per structure for its 3x3 kernels and its decision boundary is
smoothed back by the average pooling:

    f_s(x) = avgpool_s( f( upsample_s(x) ) )

(bilinear upsampling, average pooling of the logits over s x s blocks, so the output has the input's shape).

Downsampling (``scale`` = 1/k, k an integer >= 2). A network trained on images reduced k times (an image-to-image
generator trained at 128x128 on CPU, applied to 256x256 slices) sees the input averaged over k x k blocks, and its
output is brought back by bilinear interpolation:

    f_s(x) = upsample_k( f( avgpool_k(x) ) )
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ScaledNetwork", "describe"]


class ScaledNetwork(nn.Module):
    """Wrap ``network`` so that it sees its input rescaled by ``scale``: an integer >= 1, or 1/k for an integer k.

    Args:
        network: any 2D or 3D network whose output has its input's spatial size.
        scale: upsampling factor (2, 3, ...) or downsampling factor (0.5, 0.25, ...) of every spatial axis.
    """

    def __init__(self, network: nn.Module, scale: float = 2) -> None:
        super().__init__()
        scale = float(scale)
        down = round(1 / scale) if 0 < scale < 1 else 1
        if not (scale >= 1 and scale.is_integer()) and not (0 < scale < 1 and abs(down * scale - 1) < 1e-9):
            raise ValueError(f"scale must be a positive integer or 1/k for an integer k, got {scale}")
        self.network = network
        self.scale: float = int(scale) if scale >= 1 else scale
        self.down = down  # k for scale = 1/k, else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return self.network(x)
        spatial = x.ndim - 2
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial]
        pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[spatial]
        if self.down > 1:
            out = self.network(pool(x, kernel_size=self.down))
            return _per_head(out, x.ndim, lambda t: F.interpolate(t, size=x.shape[2:], mode=mode, align_corners=False))
        logits = self.network(F.interpolate(x, scale_factor=self.scale, mode=mode, align_corners=False))
        return _per_head(logits, x.ndim, lambda t: pool(t, kernel_size=int(self.scale)))


def _per_head(out: torch.Tensor, input_ndim: int, resize: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``resize(out)``; for deep-supervision heads stacked as ``[B, K, C, *spatial]`` (one more axis than the input,
    ``DynUNet`` in training mode), every head is resized alike and the stack is kept."""
    if out.ndim != input_ndim + 1:
        return resize(out)
    batch, heads = out.shape[:2]
    return resize(out.flatten(0, 1)).unflatten(0, (batch, heads))


def describe(network: nn.Module) -> str:
    """A short name for a (possibly wrapped) network, for run parameters: ``UNet``, ``ScaledNetwork(x2, UNet)``."""
    if isinstance(network, ScaledNetwork):
        factor = f"x{network.scale}" if network.down == 1 else f"/{network.down}"
        return f"ScaledNetwork({factor}, {describe(network.network)})"
    inner = getattr(network, "network", None)
    if isinstance(inner, nn.Module) and type(network).__name__ == "TanhOutput":
        return f"TanhOutput({describe(inner)})"
    return type(network).__name__
