"""CycleGAN training on an Ignite ``Engine`` (Zhu et al. 2017), for MR -> CT translation; MONAI has no such trainer.

Notation (the paper's X = MR, Y = CT): G: MR -> CT, F: CT -> MR, D_CT judges CT (the paper's D_Y), D_MR judges MR
(D_X). One iteration (:class:`CycleGANStep`) on a batch ``{"mr": x, "ct": y}`` of *unpaired* images:

1. Generators, with D_CT and D_MR frozen, minimise

   L(G, F) = L_GAN(G, D_CT) + L_GAN(F, D_MR) + lambda_cycle L_cyc(G, F) + lambda_identity L_idt(G, F)   (Eq. 3)

   with the least-squares adversarial loss (LSGAN, Mao et al. 2017; the paper's Sec. 4 replaces Eq. 1's
   log-likelihood by it): L_GAN(G, D_CT) = E_x[(D_CT(G(x)) - 1)^2]; cycle consistency (Eq. 2):
   L_cyc = E_x ||F(G(x)) - x||_1 + E_y ||G(F(y)) - y||_1; identity (Sec. 5.2, after Taigman et al. 2017):
   L_idt = E_y ||G(y) - y||_1 + E_x ||F(x) - x||_1.
2. Discriminators, on fakes drawn from the image pools (detached), minimise
   L(D_CT) = 1/2 (E_y[(D_CT(y) - 1)^2] + E_x[D_CT(G(x))^2]), and likewise for D_MR; the 1/2 slows D relative to G.

Schedule: :func:`linear_decay` keeps the learning rate for ``n_epochs`` epochs, then decays it linearly to zero over
``n_epochs_decay`` epochs. :func:`checkpoint_objects` lists everything a resumed run needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.metrics import Average, Metric
from monai.losses import PatchAdversarialLoss
from monai.utils import StrEnum
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from pipelines.engines.image_pool import ImagePool

__all__ = [
    "CycleGANKeys", "CycleGANStep", "LinearDecay", "linear_decay", "create_step_trainer", "create_cyclegan_trainer",
    "checkpoint_objects", "loss_averages",
]

logger = logging.getLogger(__name__)


class CycleGANKeys(StrEnum):
    """Keys of the dict one :class:`CycleGANStep` returns (``engine.state.output``).

    Losses are Python floats; the weighted terms add up: ``LOSS_G = LOSS_ADV + LOSS_CYCLE + LOSS_IDENTITY``.
    ``LOSS`` repeats ``LOSS_G`` under the name MONAI's handlers read (``from_engine(["loss"])``).
    Images are detached tensors, for sample grids.
    """

    LOSS = "loss"
    LOSS_G = "loss_G"
    LOSS_ADV = "loss_G_adv"
    LOSS_CYCLE = "loss_cycle"
    LOSS_IDENTITY = "loss_identity"
    LOSS_D_CT = "loss_D_CT"
    LOSS_D_MR = "loss_D_MR"
    REAL_MR = "real_mr"
    REAL_CT = "real_ct"
    FAKE_CT = "fake_ct"
    FAKE_MR = "fake_mr"


def _set_requires_grad(nets: Iterable[nn.Module], requires_grad: bool) -> None:
    for net in nets:
        for parameter in net.parameters():
            parameter.requires_grad_(requires_grad)


class CycleGANStep:
    """One CycleGAN iteration, usable as an Ignite process function ``step(engine, batch)``.

    Holds the networks, optimisers, pools and loss weights (configuration); nothing computed in one call is kept for
    the next, except what the pools store by design.

    Args:
        g_mr_to_ct: G, MR -> CT.
        f_ct_to_mr: F, CT -> MR.
        d_ct: D_CT, a discriminator whose forward returns a list with the patch logits last (MONAI's
            ``PatchDiscriminator``) or the logits themselves.
        d_mr: D_MR, likewise.
        optimizer_g: one optimiser over the parameters of G and F.
        optimizer_d: one optimiser over the parameters of D_CT and D_MR.
        pool_ct: pool of past fake CTs for D_CT (``None``: a fresh ``ImagePool(50)``).
        pool_mr: pool of past fake MRs for D_MR (``None``: a fresh ``ImagePool(50, seed=1)``).
        lambda_cycle: weight of L_cyc (the paper's lambda, 10).
        lambda_identity: weight of L_idt; ``None`` means ``0.5 * lambda_cycle`` (the paper's 0.5 lambda); 0 skips it.
        mr_key: batch key of the MR images (B, C, ...) in [-1, 1].
        ct_key: batch key of the CT images (B, C, ...) in [-1, 1].
        device: where to move the batch; ``None`` leaves it where it is.
    """

    def __init__(
        self,
        g_mr_to_ct: nn.Module,
        f_ct_to_mr: nn.Module,
        d_ct: nn.Module,
        d_mr: nn.Module,
        optimizer_g: torch.optim.Optimizer,
        optimizer_d: torch.optim.Optimizer,
        pool_ct: ImagePool | None = None,
        pool_mr: ImagePool | None = None,
        lambda_cycle: float = 10.0,
        lambda_identity: float | None = None,
        mr_key: str = "mr",
        ct_key: str = "ct",
        device: str | torch.device | None = None,
    ) -> None:
        self.g_mr_to_ct, self.f_ct_to_mr, self.d_ct, self.d_mr = g_mr_to_ct, f_ct_to_mr, d_ct, d_mr
        self.optimizer_g, self.optimizer_d = optimizer_g, optimizer_d
        self.pool_ct = ImagePool(50, seed=0) if pool_ct is None else pool_ct
        self.pool_mr = ImagePool(50, seed=1) if pool_mr is None else pool_mr
        self.lambda_cycle = float(lambda_cycle)
        self.lambda_identity = 0.5 * self.lambda_cycle if lambda_identity is None else float(lambda_identity)
        self.mr_key, self.ct_key = mr_key, ct_key
        self.device = None if device is None else torch.device(device)
        # LSGAN: mean squared distance of the raw patch logits to 1 (real) or 0 (fake); MONAI's default would first
        # apply a leaky ReLU to the logits, which the LSGAN objective does not have
        self.adversarial = PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True)
        self.l1 = nn.L1Loss()

    def _logits(self, discriminator: nn.Module, images: torch.Tensor) -> torch.Tensor:
        out = discriminator(images)
        return out[-1] if isinstance(out, (list, tuple)) else out  # PatchDiscriminator: intermediates, logits last

    def _lsgan_d(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """1/2 (E[(D(real) - 1)^2] + E[D(fake)^2])."""
        loss_real = self.adversarial(self._logits(discriminator, real), target_is_real=True, for_discriminator=True)
        loss_fake = self.adversarial(self._logits(discriminator, fake), target_is_real=False, for_discriminator=True)
        return 0.5 * (loss_real + loss_fake)

    def __call__(self, engine: Engine | None, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """Run one generator update and one discriminator update on ``batch``; return :class:`CycleGANKeys` values."""
        real_mr, real_ct = batch[self.mr_key], batch[self.ct_key]  # x, y
        if self.device is not None:
            real_mr, real_ct = real_mr.to(self.device), real_ct.to(self.device)
        nets = (self.g_mr_to_ct, self.f_ct_to_mr, self.d_ct, self.d_mr)
        for net in nets:
            net.train()
        G, F, D_CT, D_MR = nets  # noqa: N806 - the paper's names

        # 1. generators, discriminators frozen (Eq. 3)
        _set_requires_grad((D_CT, D_MR), False)
        self.optimizer_g.zero_grad(set_to_none=True)
        fake_ct = G(real_mr)  # G(x)
        fake_mr = F(real_ct)  # F(y)
        # L_GAN(G, D_CT) + L_GAN(F, D_MR), least squares: E[(D(fake) - 1)^2]
        loss_adv = self.adversarial(
            self._logits(D_CT, fake_ct), target_is_real=True, for_discriminator=False
        ) + self.adversarial(self._logits(D_MR, fake_mr), target_is_real=True, for_discriminator=False)
        # L_cyc (Eq. 2): ||F(G(x)) - x||_1 + ||G(F(y)) - y||_1
        loss_cycle = self.lambda_cycle * (self.l1(F(fake_ct), real_mr) + self.l1(G(fake_mr), real_ct))
        # L_idt: ||G(y) - y||_1 + ||F(x) - x||_1 (needs in_channels == out_channels)
        loss_identity = torch.zeros((), device=real_mr.device)
        if self.lambda_identity > 0:
            loss_identity = self.lambda_identity * (self.l1(G(real_ct), real_ct) + self.l1(F(real_mr), real_mr))
        loss_g = loss_adv + loss_cycle + loss_identity
        loss_g.backward()
        self.optimizer_g.step()

        # 2. discriminators on detached fakes from the pools, loss halved
        _set_requires_grad((D_CT, D_MR), True)
        self.optimizer_d.zero_grad(set_to_none=True)
        loss_d_ct = self._lsgan_d(D_CT, real_ct, self.pool_ct.query(fake_ct.detach()))
        loss_d_mr = self._lsgan_d(D_MR, real_mr, self.pool_mr.query(fake_mr.detach()))
        (loss_d_ct + loss_d_mr).backward()
        self.optimizer_d.step()

        return {
            CycleGANKeys.LOSS: loss_g.item(),
            CycleGANKeys.LOSS_G: loss_g.item(),
            CycleGANKeys.LOSS_ADV: loss_adv.item(),
            CycleGANKeys.LOSS_CYCLE: loss_cycle.item(),
            CycleGANKeys.LOSS_IDENTITY: loss_identity.item(),
            CycleGANKeys.LOSS_D_CT: loss_d_ct.item(),
            CycleGANKeys.LOSS_D_MR: loss_d_mr.item(),
            CycleGANKeys.REAL_MR: real_mr.detach(),
            CycleGANKeys.REAL_CT: real_ct.detach(),
            CycleGANKeys.FAKE_CT: fake_ct.detach(),
            CycleGANKeys.FAKE_MR: fake_mr.detach(),
        }


class LinearDecay:
    """Learning-rate factor of epoch ``e`` (0-based): ``1 - max(0, e + 1 - n_epochs) / (n_epochs_decay + 1)``.

    Constant 1 for the first ``n_epochs`` epochs, then linear down to ``1 / (n_epochs_decay + 1)`` in the last of the
    ``n_epochs_decay`` decay epochs and 0 just after (clamped there); the reference code's ``linear`` policy. A callable
    object rather than a lambda so that ``LambdaLR.state_dict()`` records it.

    Args:
        n_epochs: epochs at the initial learning rate (the paper's 100).
        n_epochs_decay: epochs of linear decay (the paper's 100).
    """

    def __init__(self, n_epochs: int, n_epochs_decay: int) -> None:
        if n_epochs < 0 or n_epochs_decay < 0:
            raise ValueError(f"epoch counts must be non-negative, got {n_epochs} and {n_epochs_decay}")
        self.n_epochs = n_epochs
        self.n_epochs_decay = n_epochs_decay

    def __call__(self, epoch: int) -> float:
        return max(0.0, 1.0 - max(0, epoch + 1 - self.n_epochs) / (self.n_epochs_decay + 1))


def linear_decay(optimizer: torch.optim.Optimizer, n_epochs: int, n_epochs_decay: int) -> LambdaLR:
    """A ``LambdaLR`` applying :class:`LinearDecay`; step it once per epoch (``create_cyclegan_trainer`` does)."""
    return LambdaLR(optimizer, LinearDecay(n_epochs, n_epochs_decay))


def create_step_trainer(
    step: Callable[[Engine, Any], Any],
    schedulers: Iterable[LambdaLR] = (),
    handlers: Iterable[Any] = (),
    metrics: Mapping[str, Metric] | None = None,
    max_epochs: int | None = None,
) -> Engine:
    """An Ignite ``Engine`` running ``step`` on each batch, stepping ``schedulers`` after each epoch.

    ``metrics`` (e.g. ``ignite.metrics.Average`` of each loss, epoch-wise) are attached first, then ``handlers``
    (objects with ``attach(engine)``, as MONAI's ``train_handlers``), in order. ``max_epochs`` is kept for
    ``engine.run(loader)`` calls that name none (a bundle's ``run`` section).
    """
    engine = Engine(step)
    for scheduler in schedulers:
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda _, s=scheduler: s.step())
    for name, metric in (metrics or {}).items():
        metric.attach(engine, name)
    for handler in handlers:
        handler.attach(engine)
    if max_epochs is not None:
        engine.state.max_epochs = int(max_epochs)
    return engine


def create_cyclegan_trainer(
    step: CycleGANStep,
    schedulers: Iterable[LambdaLR] = (),
    handlers: Iterable[Any] = (),
    metrics: Mapping[str, Metric] | None = None,
    max_epochs: int | None = None,
) -> Engine:
    """:func:`create_step_trainer` for a :class:`CycleGANStep` (e.g. with :func:`linear_decay` of both optimisers)."""
    return create_step_trainer(step, schedulers, handlers, metrics, max_epochs)


def loss_averages(names: Iterable[str]) -> dict[str, Metric]:
    """``{name: Average of output[name]}``: epoch means of a step's losses, for ``metrics`` of a trainer."""
    return {str(name): Average(output_transform=lambda out, n=str(name): out[n]) for name in names}


def checkpoint_objects(
    step: CycleGANStep,
    scheduler_g: LambdaLR | None = None,
    scheduler_d: LambdaLR | None = None,
    trainer: Engine | None = None,
) -> dict[str, Any]:
    """Everything a resumed run needs, by name, each with ``state_dict``/``load_state_dict`` (Ignite ``to_save``).

    The 4 networks, 2 optimisers, the schedulers and the 2 image pools (stored fakes and their generators), plus the
    trainer's own state when given. Global RNGs are checkpointed separately (``pipelines.handlers.checkpoint``).
    """
    objects: dict[str, Any] = {
        "G_mr_to_ct": step.g_mr_to_ct,
        "F_ct_to_mr": step.f_ct_to_mr,
        "D_ct": step.d_ct,
        "D_mr": step.d_mr,
        "optimizer_G": step.optimizer_g,
        "optimizer_D": step.optimizer_d,
        "scheduler_G": scheduler_g,
        "scheduler_D": scheduler_d,
        "pool_ct": step.pool_ct,
        "pool_mr": step.pool_mr,
        "trainer": trainer,
    }
    return {name: obj for name, obj in objects.items() if obj is not None}
