"""The VAE loss, the negative evidence lower bound with a beta weight (Kingma & Welling 2014; Higgins et al. 2017).

MONAI has the VAE network (``VarAutoEncoder``) but no loss for it (its tutorial writes one inline). Per image,

    L = R(x, x_hat) + beta * KL(q(z | x) || N(0, I)),   KL = -1/2 sum_j (1 + log s_j^2 - mu_j^2 - s_j^2)

summed over the latent dimensions j, with the reconstruction term R summed over the pixels: the binary
cross-entropy ``-sum_i [x_i log x_hat_i + (1 - x_i) log(1 - x_hat_i)]`` (default; the negative log-likelihood of a
Bernoulli decoder, for images in [0, 1]) or the squared error ``sum_i (x_i - x_hat_i)^2`` (``"mse"``). Both terms
are averaged over the batch, so their sizes are per image and add up to L.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import nn

__all__ = ["VAELoss", "VAELossTerms", "kl_divergence"]


class VAELossTerms(NamedTuple):
    """``loss = reconstruction + beta * kl``, each averaged over the batch (per image)."""

    loss: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, s^2) || N(0, I)) = -1/2 sum_j (1 + log s_j^2 - mu_j^2 - s_j^2)`` per sample, ``[B]``.

    Args:
        mu: posterior means ``[B, L]``.
        logvar: posterior log-variances ``log s^2``, ``[B, L]``.
    """
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=tuple(range(1, mu.ndim)))


class VAELoss(nn.Module):
    """Reconstruction (summed over pixels) + ``beta`` * KL, averaged over the batch.

    Args:
        beta: weight of the KL term (1: the ELBO).
        reconstruction: ``"bce"`` (binary cross-entropy; targets and reconstructions in [0, 1]) or ``"mse"``
            (squared error).
    """

    def __init__(self, beta: float = 1.0, reconstruction: str = "bce") -> None:
        super().__init__()
        if reconstruction not in ("bce", "mse"):
            raise ValueError(f"reconstruction must be 'bce' or 'mse', got {reconstruction!r}")
        self.beta = float(beta)
        self.reconstruction = reconstruction

    def reconstruction_error(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """R per image ``[B]``, summed over channels and pixels."""
        if self.reconstruction == "bce":
            per_pixel = F.binary_cross_entropy(reconstruction, target, reduction="none")
        else:
            per_pixel = (reconstruction - target).pow(2)
        return per_pixel.flatten(1).sum(dim=1)

    def forward(
        self, reconstruction: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
    ) -> VAELossTerms:
        recon = self.reconstruction_error(reconstruction, target).mean()
        kl = kl_divergence(mu, logvar).mean()
        return VAELossTerms(recon + self.beta * kl, recon, kl)
