"""Class-conditional DCGAN generator and discriminator for 64x64 MedNIST images, built from MONAI blocks.

Written here because MONAI's ``monai.networks.nets.Generator`` and ``Discriminator`` cannot be the DCGAN of
Radford et al. (2016) with a condition: they take no class input; their layers use "same" padding, which rules out
DCGAN's 4x4 kernels with stride 2 (MONAI raises for even kernels without explicit padding); and the ``Generator``
feeds its linear projection straight into a transposed convolution, with no normalisation or activation between.
The layers here are MONAI's ``Convolution`` blocks (convolution, batch norm, activation) with explicit padding.

Conditioning (Mirza & Osindero 2014):

- :class:`ConditionalGenerator` ``G(z, y)``: the class ``y`` is embedded (``nn.Embedding``) and concatenated to the
  latent ``z``; a linear layer projects ``[z, e(y)]`` to ``(C_0, 4, 4)`` (batch norm, ReLU), then transposed 4x4
  convolutions with stride 2 double the grid up to 64x64; a sigmoid puts the image in (0, 1), the PNG / 255 scale of
  the data, so that real and fake images need no rescaling anywhere.
- :class:`ConditionalDiscriminator` ``D(x, y)``: ``C`` one-hot label maps (constant planes, plane ``y`` all ones) are
  concatenated to the image channels; 4x4 convolutions with stride 2 halve the grid down to 4x4 (LeakyReLU 0.2,
  batch norm except on the first layer, as in DCGAN), and a linear layer gives one *logit* per image (no sigmoid:
  the losses work on raw scores).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn
from torch.nn import functional

__all__ = ["ConditionalGenerator", "ConditionalDiscriminator"]

# a 4x4 kernel with stride 2 and padding 1 exactly halves (convolution) or doubles (transposed) the grid
KERNEL, STRIDE, PADDING = 4, 2, 1
LEAKY_RELU = ("LEAKYRELU", {"negative_slope": 0.2})


class ConditionalGenerator(nn.Module):
    """``G(z, y)``: a class-conditional DCGAN generator with images in (0, 1).

    The image side is ``start_size * 2 ** len(channels)`` (default 4 * 16 = 64): ``[z, e(y)]`` -> linear ->
    ``(channels[0], start_size, start_size)`` -> batch norm, ReLU -> one transposed convolution per further entry of
    ``channels`` (batch norm, ReLU) -> a last one to ``out_channels`` -> sigmoid.

    Args:
        num_classes: number of classes C; labels are integers in ``[0, C)``.
        latent_size: length of z.
        embedding_size: length of the learned class embedding e(y).
        channels: feature channels at the start grid and after each upsampling but the last.
        start_size: side of the grid the projection makes.
        out_channels: image channels.
    """

    def __init__(
        self,
        num_classes: int = 6,
        latent_size: int = 64,
        embedding_size: int = 16,
        channels: Sequence[int] = (128, 64, 32, 16),
        start_size: int = 4,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.latent_size = int(latent_size)
        self.start_shape = (int(channels[0]), int(start_size), int(start_size))
        self.embedding = nn.Embedding(self.num_classes, int(embedding_size))
        self.project = nn.Sequential(
            nn.Linear(self.latent_size + int(embedding_size), int(torch.tensor(self.start_shape).prod())),
            nn.Unflatten(1, self.start_shape),
            nn.BatchNorm2d(self.start_shape[0]),
            nn.ReLU(),
        )
        widths = [*(int(c) for c in channels), int(out_channels)]
        self.upsample = nn.Sequential(*(
            Convolution(
                spatial_dims=2, in_channels=c_in, out_channels=c_out, strides=STRIDE, kernel_size=KERNEL,
                padding=PADDING, output_padding=0, is_transposed=True, act="RELU", norm="BATCH",
                conv_only=i == len(widths) - 2,
            )
            for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:]))
        ))

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images ``[N, out_channels, H, W]`` in (0, 1) from latents ``z`` ``[N, latent_size]`` and labels ``[N]``."""
        if z.ndim != 2 or z.shape[1] != self.latent_size:
            raise ValueError(f"expected latents of shape [N, {self.latent_size}], got {list(z.shape)}")
        condition = self.embedding(labels.long().reshape(-1))
        return torch.sigmoid(self.upsample(self.project(torch.cat([z, condition], dim=1))))


class ConditionalDiscriminator(nn.Module):
    """``D(x, y)``: one real/fake logit per image, judged together with its class.

    ``cat[x, onehot_maps(y)]`` -> one strided 4x4 convolution per entry of ``channels`` (LeakyReLU 0.2; batch norm
    from the second on) -> flatten -> linear -> logit ``[N, 1]``.

    Args:
        num_classes: number of classes C.
        in_channels: image channels.
        image_size: side of the (square) images.
        channels: output channels of each convolution.
    """

    def __init__(
        self,
        num_classes: int = 6,
        in_channels: int = 1,
        image_size: int = 64,
        channels: Sequence[int] = (32, 64, 128, 256),
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        widths = [int(in_channels) + self.num_classes, *(int(c) for c in channels)]
        self.features = nn.Sequential(*(
            Convolution(
                spatial_dims=2, in_channels=c_in, out_channels=c_out, strides=STRIDE, kernel_size=KERNEL,
                padding=PADDING, act=LEAKY_RELU, norm=None if i == 0 else "BATCH",
            )
            for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:]))
        ))
        final_size = int(image_size) // STRIDE ** len(channels)
        if final_size < 1:
            raise ValueError(f"{len(channels)} halvings leave nothing of a {image_size}-pixel image")
        self.classify = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * final_size**2, 1))

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, 1]`` for images ``[N, in_channels, H, W]`` of classes ``labels`` ``[N]``."""
        onehot = functional.one_hot(labels.long().reshape(-1), self.num_classes).to(images.dtype)
        maps = onehot[:, :, None, None].expand(-1, -1, *images.shape[2:])
        return self.classify(self.features(torch.cat([images, maps], dim=1)))
