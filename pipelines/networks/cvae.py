"""A convolutional conditional VAE (Sohn et al. 2015) built on MONAI's ``VarAutoEncoder``, which has no condition.

Encoder q(z | x, y) and decoder p(x | z, y) both see the class y as a one-hot vector e_y (K classes):

- encoder input: the image concatenated with K constant maps, map k filled with e_y[k] (C + K channels);
- decoder input: the latent z concatenated with e_y (L + K values) before MONAI's linear layer to the first
  feature map.

Everything else (strided convolutions, transposed convolutions, instance norm, PReLU, the mu / log s^2 heads and
the final sigmoid) is MONAI's ``VarAutoEncoder``; only the two concatenations and the decoder's first linear layer,
widened by K inputs, are written here. Reparametrisation: z = mu + s * eps, eps ~ N(0, I), with s = exp(log s^2 / 2)
(MONAI's ``reparameterize``); in eval mode z = mu, so reconstructions are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from monai.networks.nets import VarAutoEncoder
from torch import nn

__all__ = ["ConditionalVAE"]


class ConditionalVAE(VarAutoEncoder):
    """Conditional VAE on images of shape ``in_shape`` with ``num_classes`` classes.

    Args:
        spatial_dims: 2 for images.
        in_shape: ``(channels, H, W)`` of an image (without the condition maps), e.g. ``(1, 64, 64)``.
        num_classes: K, the number of classes of the condition.
        latent_size: L, the dimension of z.
        channels: encoder channels per level (MONAI ``VarAutoEncoder``), e.g. ``(32, 64, 128, 128)``.
        strides: encoder strides per level, e.g. ``(2, 2, 2, 2)`` (64 -> 4).
        num_res_units: residual units per level (MONAI).
        norm: normalisation (MONAI), default instance norm.

    ``forward(x, y)`` returns ``(reconstruction in [0, 1], mu, logvar, z)`` like ``VarAutoEncoder``;
    :meth:`generate` decodes given latents for given classes.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_shape: Sequence[int],
        num_classes: int,
        latent_size: int,
        channels: Sequence[int],
        strides: Sequence[int],
        num_res_units: int = 0,
        norm: tuple | str = "instance",
    ) -> None:
        image_channels, *spatial = in_shape
        super().__init__(
            spatial_dims=spatial_dims,
            in_shape=(image_channels + num_classes, *spatial),
            out_channels=image_channels,
            latent_size=latent_size,
            channels=channels,
            strides=strides,
            num_res_units=num_res_units,
            norm=norm,
            use_mean_at_inference=True,
        )
        self.num_classes = int(num_classes)
        # the decoder's first layer also reads the one-hot class: L + K inputs instead of MONAI's L
        self.decodeL = nn.Linear(latent_size + self.num_classes, self.decodeL.out_features)

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """Class indices ``[B]`` -> one-hot ``[B, K]`` (float)."""
        labels = torch.as_tensor(labels, device=self.decodeL.weight.device).long().flatten()
        return F.one_hot(labels, self.num_classes).float()

    def encode_condition(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x, y): ``(mu, logvar)``, each ``[B, L]``, of images ``[B, C, H, W]`` and classes ``[B]``."""
        onehot = self.one_hot(labels).to(x.dtype)
        maps = onehot.view(*onehot.shape, *([1] * (x.ndim - 2))).expand(-1, -1, *x.shape[2:])
        return self.encode_forward(torch.cat([x, maps], dim=1))

    def generate(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """p(x | z, y): images ``[B, C, H, W]`` in [0, 1] decoded from latents ``[B, L]`` for classes ``[B]``."""
        return self.decode_forward(torch.cat([z, self.one_hot(labels).to(z.dtype)], dim=1), self.use_sigmoid)

    def forward(  # type: ignore[override] - the condition is a second input
        self, x: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode_condition(x, labels)
        z = self.reparameterize(mu, logvar)
        return self.generate(z, labels), mu, logvar, z
