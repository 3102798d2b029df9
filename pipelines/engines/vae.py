"""One (conditional) VAE iteration for an Ignite engine: the negative ELBO, optimised or just measured.

MONAI's ``SupervisedTrainer`` calls ``network(image)`` and ``loss(pred, label)``; a conditional VAE needs
``network(image, label)`` and a loss of four tensors (reconstruction, image, mu, log s^2), so the step is written
here and run by :func:`pipelines.engines.create_step_trainer` (training) or as the ``iteration_update`` of a MONAI
``Evaluator`` (validation, test). Notation of :mod:`pipelines.losses.vae`:

    (x_hat, mu, log s^2, z) = VAE(x, y),  z = mu + s * eps (training) or mu (eval),
    L = R(x, x_hat) + beta * KL(q(z | x, y) || N(0, I)).

With an optimiser the step trains (train mode, one Adam step on L); without, it measures L in eval mode with no
gradient, reconstructing from z = mu. It also reports the mean absolute reconstruction error in 8-bit units,
``MAE = 255 mean_i |x_i - x_hat_i|``, easier to read than the summed cross-entropy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine
from monai.utils import StrEnum
from torch import nn

from pipelines.losses.vae import VAELoss

__all__ = ["VAEKeys", "VAEStep"]


class VAEKeys(StrEnum):
    """Keys of the dict one :class:`VAEStep` returns (``LOSS = RECON + beta * KL``, per image, batch mean)."""

    LOSS = "loss"
    RECON = "loss_recon"
    KL = "loss_kl"
    MAE = "recon_mae"
    IMAGES = "images"
    LABELS = "labels"
    RECONSTRUCTIONS = "reconstructions"


class VAEStep:
    """One VAE iteration, usable as an Ignite process function ``step(engine, batch)``.

    Args:
        network: a conditional VAE, ``network(x, y) -> (x_hat, mu, logvar, z)``
            (:class:`pipelines.networks.cvae.ConditionalVAE`), or an unconditional one with ``label_key=None``.
        loss: the VAE loss (:class:`pipelines.losses.VAELoss`), returning ``(loss, reconstruction, kl)``.
        optimizer: its optimiser; None to measure only (validation).
        image_key: batch key of the images ``[B, C, H, W]`` in [0, 1].
        label_key: batch key of the class indices ``[B]``; None for an unconditional VAE.
        device: where to move the batch; None leaves it where it is.
    """

    def __init__(
        self,
        network: nn.Module,
        loss: VAELoss,
        optimizer: torch.optim.Optimizer | None = None,
        image_key: str = "image",
        label_key: str | None = "label",
        device: str | torch.device | None = None,
    ) -> None:
        self.network = network
        self.loss = loss
        self.optimizer = optimizer
        self.image_key, self.label_key = image_key, label_key
        self.device = None if device is None else torch.device(device)

    def _forward(self, images: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        return self.network(images) if labels is None else self.network(images, labels)

    def __call__(self, engine: Engine | None, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """Train on (or, without an optimiser, measure) one batch; return :class:`VAEKeys` values."""
        images = torch.as_tensor(batch[self.image_key]).float()
        labels = None if self.label_key is None else torch.as_tensor(batch[self.label_key]).long().flatten()
        if self.device is not None:
            images = images.to(self.device)
            labels = None if labels is None else labels.to(self.device)
        training = self.optimizer is not None
        self.network.train(training)
        with torch.set_grad_enabled(training):
            if training:
                self.optimizer.zero_grad(set_to_none=True)
            reconstructions, mu, logvar, _ = self._forward(images, labels)
            terms = self.loss(reconstructions, images, mu, logvar)
            if training:
                terms.loss.backward()
                self.optimizer.step()
        mae = 255.0 * (reconstructions.detach() - images).abs().mean()
        return {
            VAEKeys.LOSS: terms.loss.item(),
            VAEKeys.RECON: terms.reconstruction.item(),
            VAEKeys.KL: terms.kl.item(),
            VAEKeys.MAE: mae.item(),
            VAEKeys.IMAGES: images.detach(),
            VAEKeys.LABELS: labels,
            VAEKeys.RECONSTRUCTIONS: reconstructions.detach(),
        }
