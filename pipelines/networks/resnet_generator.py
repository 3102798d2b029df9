"""The ResNet-block generator of CycleGAN (Zhu et al. 2017), after Johnson et al. 2016.

Written by hand because MONAI has no such generator (its ``PatchDiscriminator`` is used as is for the
discriminators). Layout, for ``features`` = f and ``n_blocks`` = N::

    c7s1-f, d2f, d4f, R4f x N, u2f, uf, c7s1-out, tanh

``c7s1-k``: reflection pad 3, 7x7 convolution, k filters, stride 1; ``dk``: 3x3 convolution, stride 2; ``Rk``: residual
block ``x + (pad, conv3x3, norm, ReLU, [dropout], pad, conv3x3, norm)(x)``; ``uk``: 3x3 transposed convolution,
stride 2. Every convolution but the last is followed by instance normalisation (no affine parameters, as in the
reference code) and ReLU. The paper uses 9 blocks for 256x256 images and 6 for 128x128. Inputs must have sizes
divisible by 4 (two stride-2 steps), so that the output has the input's grid.
"""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Conv, Norm
from torch import nn

__all__ = ["ResnetGenerator", "ResnetBlock"]

N_DOWNSAMPLING = 2
# MONAI's Pad factory has no reflection padding
REFLECTION_PAD: dict[int, type[nn.Module]] = {1: nn.ReflectionPad1d, 2: nn.ReflectionPad2d, 3: nn.ReflectionPad3d}


def _norm(spatial_dims: int, channels: int) -> nn.Module:
    return Norm[Norm.INSTANCE, spatial_dims](channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """``y = x + F(x)``, F = reflection pad 1, 3x3 conv, norm, ReLU, [dropout], reflection pad 1, 3x3 conv, norm.

    Args:
        spatial_dims: 2 or 3.
        channels: input and output channels.
        dropout: dropout probability between the two convolutions (0 disables it).
    """

    def __init__(self, spatial_dims: int, channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        conv, pad = Conv[Conv.CONV, spatial_dims], REFLECTION_PAD[spatial_dims]
        layers: list[nn.Module] = [pad(1), conv(channels, channels, 3), _norm(spatial_dims, channels), nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [pad(1), conv(channels, channels, 3), _norm(spatial_dims, channels)]
        self.residual = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's image-to-image generator: 2 downsamplings, ``n_blocks`` residual blocks, 2 upsamplings, tanh.

    Args:
        spatial_dims: 2 (slices) or 3 (volumes).
        in_channels: input channels.
        out_channels: output channels; the output lies in (-1, 1).
        features: filters of the first convolution (f, the paper's 64); the residual blocks have 4f.
        n_blocks: residual blocks (9 for 256x256 inputs, 6 for 128x128 in the paper).
        dropout: dropout probability inside the residual blocks (the reference code's ``--no_dropout`` is 0).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        features: int = 64,
        n_blocks: int = 9,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be non-negative, got {n_blocks}")
        conv, pad = Conv[Conv.CONV, spatial_dims], REFLECTION_PAD[spatial_dims]
        convtrans = Conv[Conv.CONVTRANS, spatial_dims]
        layers: list[nn.Module] = [pad(3), conv(in_channels, features, 7), _norm(spatial_dims, features), nn.ReLU(True)]
        channels = features
        for _ in range(N_DOWNSAMPLING):  # d2f, d4f
            layers += [
                conv(channels, 2 * channels, 3, stride=2, padding=1),
                _norm(spatial_dims, 2 * channels),
                nn.ReLU(True),
            ]
            channels *= 2
        layers += [ResnetBlock(spatial_dims, channels, dropout) for _ in range(n_blocks)]
        for _ in range(N_DOWNSAMPLING):  # u2f, uf
            layers += [
                convtrans(channels, channels // 2, 3, stride=2, padding=1, output_padding=1),
                _norm(spatial_dims, channels // 2),
                nn.ReLU(True),
            ]
            channels //= 2
        layers += [pad(3), conv(channels, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.divisor = 2**N_DOWNSAMPLING

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, in_channels, *spatial) to (B, out_channels, *spatial); spatial sizes must be multiples of 4."""
        if any(size % self.divisor for size in x.shape[2:]):
            raise ValueError(f"spatial size {tuple(x.shape[2:])} must be divisible by {self.divisor}")
        return self.model(x)
