"""Paired MR -> CT translation with a conditional adversarial loss (pix2pix, Isola et al. 2017); MONAI has none.

This is the paired upper bound of the CycleGAN comparison: the course material's fully convolutional MR -> CT
network trained with a combined adversarial and L1 loss on *paired* slices. Notation: x = MR, y = its CT,
G: MR -> CT, D judges (MR, CT) pairs, concatenated along the channels. One iteration (:class:`Pix2PixStep`):

1. G, with D frozen, minimises  L(G) = L_GAN(G, D) + lambda_L1 E ||y - G(x)||_1   (Eq. 4 of the paper)

   with the least-squares adversarial loss (as in our CycleGAN): L_GAN(G, D) = E_x[(D(x, G(x)) - 1)^2];
2. D minimises  L(D) = 1/2 (E[(D(x, y) - 1)^2] + E[D(x, G(x))^2])  on the detached fake, no pool.

The schedule and trainer are the CycleGAN's (:func:`pipelines.engines.cyclegan.linear_decay`,
:func:`~pipelines.engines.cyclegan.create_step_trainer`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine
from monai.losses import PatchAdversarialLoss
from monai.utils import StrEnum
from torch import nn

__all__ = ["Pix2PixKeys", "Pix2PixStep"]


class Pix2PixKeys(StrEnum):
    """Keys of the dict one :class:`Pix2PixStep` returns; ``LOSS_G = LOSS_ADV + LOSS_L1`` and ``LOSS`` = ``LOSS_G``."""

    LOSS = "loss"
    LOSS_G = "loss_G"
    LOSS_ADV = "loss_G_adv"
    LOSS_L1 = "loss_L1"
    LOSS_D = "loss_D"
    REAL_MR = "real_mr"
    REAL_CT = "real_ct"
    FAKE_CT = "fake_ct"


def _set_requires_grad(net: nn.Module, requires_grad: bool) -> None:
    for parameter in net.parameters():
        parameter.requires_grad_(requires_grad)


class Pix2PixStep:
    """One pix2pix iteration, usable as an Ignite process function ``step(engine, batch)``.

    Args:
        generator: G, MR -> CT.
        discriminator: D on ``cat([mr, ct], dim=1)`` (so ``in_channels`` = MR + CT channels); its forward returns a
            list with the patch logits last (MONAI's ``PatchDiscriminator``) or the logits themselves.
        optimizer_g: optimiser of G.
        optimizer_d: optimiser of D.
        lambda_l1: weight of the L1 term (the paper's 100).
        mr_key: batch key of the MR slices (B, C, ...) in [-1, 1].
        ct_key: batch key of the paired CT slices, same shape.
        device: where to move the batch; ``None`` leaves it where it is.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer_g: torch.optim.Optimizer,
        optimizer_d: torch.optim.Optimizer,
        lambda_l1: float = 100.0,
        mr_key: str = "mr",
        ct_key: str = "ct",
        device: str | torch.device | None = None,
    ) -> None:
        self.generator, self.discriminator = generator, discriminator
        self.optimizer_g, self.optimizer_d = optimizer_g, optimizer_d
        self.lambda_l1 = float(lambda_l1)
        self.mr_key, self.ct_key = mr_key, ct_key
        self.device = None if device is None else torch.device(device)
        # LSGAN on the raw patch logits (see pipelines.engines.cyclegan)
        self.adversarial = PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True)
        self.l1 = nn.L1Loss()

    def _logits(self, mr: torch.Tensor, ct: torch.Tensor) -> torch.Tensor:
        out = self.discriminator(torch.cat([mr, ct], dim=1))
        return out[-1] if isinstance(out, (list, tuple)) else out

    def __call__(self, engine: Engine | None, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """One generator update, then one discriminator update; return :class:`Pix2PixKeys` values."""
        real_mr, real_ct = batch[self.mr_key], batch[self.ct_key]  # x, y
        if self.device is not None:
            real_mr, real_ct = real_mr.to(self.device), real_ct.to(self.device)
        G, D = self.generator, self.discriminator  # noqa: N806 - the paper's names
        G.train()
        D.train()

        # 1. generator, discriminator frozen (Eq. 4)
        _set_requires_grad(D, False)
        self.optimizer_g.zero_grad(set_to_none=True)
        fake_ct = G(real_mr)
        loss_adv = self.adversarial(self._logits(real_mr, fake_ct), target_is_real=True, for_discriminator=False)
        loss_l1 = self.lambda_l1 * self.l1(fake_ct, real_ct)
        loss_g = loss_adv + loss_l1
        loss_g.backward()
        self.optimizer_g.step()

        # 2. discriminator on the detached fake, loss halved
        _set_requires_grad(D, True)
        self.optimizer_d.zero_grad(set_to_none=True)
        fake = fake_ct.detach()
        loss_d = 0.5 * (
            self.adversarial(self._logits(real_mr, real_ct), target_is_real=True, for_discriminator=True)
            + self.adversarial(self._logits(real_mr, fake), target_is_real=False, for_discriminator=True)
        )
        loss_d.backward()
        self.optimizer_d.step()

        return {
            Pix2PixKeys.LOSS: loss_g.item(),
            Pix2PixKeys.LOSS_G: loss_g.item(),
            Pix2PixKeys.LOSS_ADV: loss_adv.item(),
            Pix2PixKeys.LOSS_L1: loss_l1.item(),
            Pix2PixKeys.LOSS_D: loss_d.item(),
            Pix2PixKeys.REAL_MR: real_mr.detach(),
            Pix2PixKeys.REAL_CT: real_ct.detach(),
            Pix2PixKeys.FAKE_CT: fake_ct.detach(),
        }
