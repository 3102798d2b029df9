"""The small strided encoder-decoder of the VPH Summer School 2019 segmentation exercise (Eric Kerfoot).

Source: github.com/ericspod/VPHSummerSchool2019, ``7_ImageSegmentation_Solutions.ipynb`` (commit 2ffeeac4), class
``SegNet`` there, which its author describes as "a simple autoencoder which has a downsampling path with three layers
using strided convolutions to reduce dimensions [...] upsamples using strided transpose convolutions. Dropout is added
in places to reduce overfitting." It was trained on ``scd_lvsegs.npz`` with a binary Dice loss on the sigmoid of one
logit channel. Layer by layer (2D, every conv 3x3 with padding 1; IN = InstanceNorm without affine parameters, PReLU
with one slope, Dropout2d with p = 0.5):

    Conv(1->4, stride 2) IN PReLU | Conv(4->8, s2) IN PReLU Dropout | Conv(8->16, s2) IN PReLU
    Conv(16->16, s1) Dropout                                                                   (bottom, no norm/act)
    ConvT(16->8, s2) IN PReLU | ConvT(8->4, s2) IN PReLU Dropout | ConvT(4->2, s2) IN PReLU
    Conv(2->1, s1)                                                                             (logits)

Note the exercise notebook itself (``7_ImageSegmentation.ipynb``, commit 8b3991a5) starts from a different, smaller
network, the one of which it says "The network isn't very good": Conv(1->4) BN ReLU, MaxPool(3, stride 2, padding 1),
Conv(4->8) BN ReLU, ConvT(8->4, stride 2) BN ReLU, Conv(4->1). This module is the strided solution network above.

Generalised here to ``channels`` = (c_0, ..., c_{L-1}): L stride-2 encoder convs, the stride-1 bottom conv at c_{L-1},
L stride-2 transposed convs going c_{L-1} -> ... -> c_0 -> c_0 // 2, and a 3x3 output conv; dropout follows the levels
numbered 1, 3, ... from 0 on both paths and the bottom conv, which for L = 3 is exactly the notebook's placement.
With a stride-2, 3x3, padding-1 conv an axis of n becomes ceil(n / 2), and each transposed conv doubles it, so an
input is zero-padded at the far end of each axis up to a multiple of 2^L and the logits are cropped back to its size
(a no-op on the notebook's 64x64 images).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["StridedEncoderDecoder"]


class StridedEncoderDecoder(nn.Module):
    """The VPH 2019 strided encoder-decoder, defaults as in the notebook (2D, 1 -> 1 channel, 4-8-16, p = 0.5).

    Args:
        spatial_dims: 2 (as in the notebook) or 3.
        in_channels: channels of the input image.
        out_channels: channels of the output logits; the notebook uses 1 (sigmoid + binary Dice), use 2 for
            softmax-based losses.
        channels: widths of the stride-2 encoder levels.
        dropout: channel-wise dropout probability (Dropout2d / Dropout3d) at the notebook's places; 0 disables it.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (4, 8, 16),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty sequence of positive widths, got {channels}")
        self.depth = len(channels)

        def level(cin: int, cout: int, index: int, transposed: bool) -> Convolution:
            return Convolution(
                spatial_dims,
                cin,
                cout,
                strides=2,
                kernel_size=3,
                act="prelu",
                norm="instance",
                dropout=dropout if index % 2 == 1 and dropout > 0 else None,
                dropout_dim=spatial_dims,  # whole feature maps, as nn.Dropout2d
                adn_ordering="NAD",  # conv, norm, PReLU, dropout: the notebook's order
                is_transposed=transposed,
            )

        encoder_widths = [in_channels, *channels]
        decoder_widths = [*reversed(channels), max(channels[0] // 2, 1)]
        layers: list[nn.Module] = [
            level(cin, cout, i, transposed=False) for i, (cin, cout) in enumerate(zip(encoder_widths, channels))
        ]
        layers.append(
            Convolution(
                spatial_dims,
                channels[-1],
                channels[-1],
                kernel_size=3,
                act=None,
                norm=None,
                dropout=dropout if dropout > 0 else None,
                dropout_dim=spatial_dims,
            )
        )
        layers += [
            level(cin, cout, i, transposed=True)
            for i, (cin, cout) in enumerate(zip(decoder_widths[:-1], decoder_widths[1:]))
        ]
        layers.append(Convolution(spatial_dims, decoder_widths[-1], out_channels, kernel_size=3, conv_only=True))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        multiple = 2**self.depth
        pad = [(-n) % multiple for n in size]
        if any(pad):
            # F.pad lists (before, after) pairs from the last axis backwards
            x = F.pad(x, [side for p in reversed(pad) for side in (0, p)])
        logits = self.model(x)
        return logits[(..., *(slice(0, n) for n in size))]
