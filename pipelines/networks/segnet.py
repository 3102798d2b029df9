"""SegNet: an encoder-decoder whose decoder upsamples with the encoder's max-pooling indices.

Badrinarayanan V, Kendall A, Cipolla R. "SegNet: A Deep Convolutional Encoder-Decoder Architecture for Image
Segmentation." IEEE TPAMI 39(12), 2017.

Encoder level l (l = 0..L-1, widths c_l): ``convs_per_block[l]`` 3x3 conv-norm-act blocks, then 2x2 max pooling that
keeps, for every output position p, the flat index of the winning input position

    y_l[p] = max_{q in W(p)} x_l[q],    i_l[p] = argmax_{q in W(p)} x_l[q]        (W(p): the 2x2 window of p)

Decoder level l (from L-1 down to 0): max unpooling with those indices, which writes every value back where its
maximum came from and zeros elsewhere (a sparse map, not an interpolation):

    u_l[q] = y_l[p] if q = i_l[p] for some p, else 0,    on the grid of x_l (so odd sizes round-trip exactly)

then ``convs_per_block[l]`` 3x3 conv-norm-act blocks that densify the sparse map, the last of them going down to
c_{l-1} (or staying at c_0 for l = 0). A final 1x1 convolution maps c_0 to ``out_channels`` logits. There are no skip
concatenations: the indices (log2(4) = 2 bits per pooled value in 2D) are all the decoder gets from the encoder.

MONAI has no SegNet, so this one is written by hand from MONAI blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["SegNet"]

_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_UNPOOL = {2: nn.MaxUnpool2d, 3: nn.MaxUnpool3d}


class SegNet(nn.Module):
    """SegNet for 2D or 3D images of any spatial size at least 2^len(channels) along every axis.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input image.
        out_channels: channels of the output logits (no activation applied).
        channels: encoder width c_l of each level; one pooling step per entry, so the coarsest grid is the input's
            divided (rounding down) by 2^len(channels).
        convs_per_block: 3x3 conv-norm-act blocks per encoder level and per decoder level, one integer for all levels
            or one per level.
        norm: MONAI normalisation spec of every conv block (``"batch"`` as in the paper, ``"instance"``, ...).
        act: MONAI activation spec of every conv block.
        dropout: dropout probability inside every conv block (0 disables it).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: Sequence[int] = (32, 64, 128, 256),
        convs_per_block: int | Sequence[int] = 2,
        norm: str | tuple = "batch",
        act: str | tuple = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in _POOL:
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty sequence of positive widths, got {channels}")
        if isinstance(convs_per_block, int):
            convs = [convs_per_block] * len(channels)
        else:
            convs = [int(n) for n in convs_per_block]
        if len(convs) != len(channels) or min(convs) < 1:
            raise ValueError(f"convs_per_block must be >= 1 per level ({len(channels)} levels), got {convs_per_block}")

        def conv_block(cin: int, cout: int) -> Convolution:
            return Convolution(
                spatial_dims, cin, cout, kernel_size=3, strides=1, act=act, norm=norm, dropout=dropout
            )

        def stack(widths: list[int]) -> nn.Sequential:
            return nn.Sequential(*(conv_block(a, b) for a, b in zip(widths[:-1], widths[1:])))

        # encoder level l: c_{l-1} -> c_l -> ... -> c_l (the first block changes the width)
        widths_in = [in_channels, *channels[:-1]]
        self.encoder = nn.ModuleList(
            stack([cin] + [c] * n) for cin, c, n in zip(widths_in, channels, convs)
        )
        # decoder level l, run deepest first: c_l -> ... -> c_l -> c_{l-1} (the last block changes the width)
        widths_out = [channels[0], *channels[:-1]]
        self.decoder = nn.ModuleList(
            stack([c] * n + [cout]) for c, cout, n in reversed(list(zip(channels, widths_out, convs)))
        )
        self.head = Convolution(spatial_dims, channels[0], out_channels, kernel_size=1, conv_only=True)
        self.pool = _POOL[spatial_dims](kernel_size=2, stride=2, return_indices=True)
        self.unpool = _UNPOOL[spatial_dims](kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled: list[tuple[torch.Tensor, torch.Size]] = []
        for block in self.encoder:
            x = block(x)
            size = x.shape[2:]
            x, indices = self.pool(x)
            pooled.append((indices, size))
        for block, (indices, size) in zip(self.decoder, reversed(pooled)):
            # output_size is the pre-pool grid: the indices are flat positions on it, and the default grid
            # (2 x pooled size) is one short along every odd axis, which misplaces them (or loses a row)
            x = block(self.unpool(x, indices, output_size=size))
        return self.head(x)
