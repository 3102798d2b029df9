"""Class-conditional GAN training on MONAI's ``GanTrainer`` (Goodfellow et al. 2014; Mirza & Osindero 2014).

``monai.engines.GanTrainer`` runs one iteration as: fakes ``G(g_prepare_batch())``; ``d_train_steps`` updates of D
with ``d_loss_function(fakes, d_prepare_batch(batch))``; new fakes; one update of G with ``g_loss_function(fakes)``.
It knows nothing of classes, so the condition travels through its hooks:

- :class:`ConditionalLatents` is the ``g_prepare_batch``: it draws ``(z, y)``, z ~ N(0, I) and fake labels y uniform
  over the classes (drawn independently of the real batch, since ``GanTrainer`` does not show the batch to it);
- :func:`prepare_class_batch` is the ``d_prepare_batch``: the real batch as ``(x, y)``;
- :class:`ConditionalGeneratorInferer` is the ``g_inferer``: ``(z, y) -> (G(z, y), y)``; the fakes keep their labels
  because ``GanTrainer`` passes only the inferer's output to the losses;
- :class:`ConditionalAdversarialLoss` holds D and gives the two losses, with MONAI's ``PatchAdversarialLoss``:
  non-saturating BCE (``criterion="bce"``), L_D = -E[log D(x, y)] - E[log(1 - D(G(z, y'), y'))] and
  L_G = -E[log D(G(z, y'), y')], or least squares (LSGAN, Mao et al. 2017: L_D = 1/2 E[(D(x, y) - 1)^2] +
  1/2 E[D(G(z, y'), y')^2], L_G = E[(D(G(z, y'), y') - 1)^2]);
- :class:`ConditionalGanTrainer` is ``GanTrainer`` with two fixes MONAI lacks: it puts G and D back in training mode
  at every iteration (``GanTrainer`` never does, so after the first validation, which sets G to eval mode, G would
  train with frozen batch-norm statistics), and its output repeats the generator loss as ``loss`` (the key MONAI's
  handlers and our MLflow settings read) and both losses under the project's names ``loss_G`` and ``loss_D`` (for
  :func:`pipelines.engines.loss_averages`).

The validation side, :class:`ClassConditionalSampler`, is the inferer of a ``SupervisedEvaluator`` whose batches are
real validation images: it draws one fake of each batch label, from a private seeded generator reset at every
evaluation, so every validation scores the same latents and leaves the training's random stream alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines import GanTrainer
from monai.inferers import Inferer
from monai.losses import PatchAdversarialLoss
from monai.utils import GanKeys
from torch import nn

__all__ = [
    "ConditionalAdversarialLoss", "ConditionalGanTrainer", "ConditionalGeneratorInferer", "ConditionalLatents",
    "ClassConditionalSampler", "conditional_gan_trainer", "labels_and_images", "prepare_class_batch",
]

logger = logging.getLogger(__name__)

# keys the trainer adds to GanTrainer's output (GanKeys: reals, fakes, latents, g_loss, d_loss)
LOSS, LOSS_G, LOSS_D = "loss", "loss_G", "loss_D"


class ConditionalLatents:
    """The ``g_prepare_batch`` of a conditional ``GanTrainer``: ``(z, y)`` with z ~ N(0, I), y ~ U{0..C-1}.

    Draws from PyTorch's global generator, like MONAI's ``default_make_latent``, so ``set_determinism`` fixes the
    sequence and the checkpointed RNG state (``pipelines.handlers.RNGState``) resumes it.

    Args:
        num_classes: number of classes C.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)

    def __call__(
        self,
        num_latents: int,
        latent_size: int,
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(num_latents, latent_size)
        labels = torch.randint(0, self.num_classes, (num_latents,))
        return (
            z.to(device=device, non_blocking=non_blocking, **kwargs),
            labels.to(device=device, non_blocking=non_blocking),
        )


def prepare_class_batch(
    batchdata: Mapping[str, torch.Tensor],
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    image_key: str = "image",
    label_key: str = "label",
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of a batch dict, on ``device``: the ``d_prepare_batch`` of a conditional GAN."""
    images = torch.as_tensor(batchdata[image_key]).to(device=device, non_blocking=non_blocking, **kwargs)
    labels = torch.as_tensor(batchdata[label_key]).long().reshape(-1).to(device=device, non_blocking=non_blocking)
    return images, labels


class ConditionalGeneratorInferer(Inferer):
    """``(z, y), G -> (G(z, y), y)``: the ``g_inferer`` of a conditional ``GanTrainer``."""

    def __call__(self, inputs: tuple[torch.Tensor, torch.Tensor], network: nn.Module, *args: Any,
                 **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        z, labels = inputs
        return network(z, labels, *args, **kwargs), labels


class ConditionalAdversarialLoss:
    """The D and G losses of a conditional GAN for ``GanTrainer`` (``d_loss_function`` / ``g_loss_function``).

    ``GanTrainer`` hands the fakes to the D loss as G made them; :meth:`discriminator_loss` detaches them, so that
    D's update computes no gradient through G.

    Args:
        discriminator: ``D(images, labels) -> logits``.
        criterion: ``bce`` (non-saturating GAN) or ``least_squares`` (LSGAN); see the module docstring.
    """

    def __init__(self, discriminator: nn.Module, criterion: str = "bce") -> None:
        if criterion not in ("bce", "least_squares"):
            raise ValueError(f"criterion must be 'bce' or 'least_squares', got {criterion!r}")
        self.discriminator = discriminator
        self.criterion = criterion
        # least squares on the raw logits (MONAI's default would pass them through a leaky ReLU first)
        self.adversarial = PatchAdversarialLoss(criterion=criterion, no_activation_leastsq=True)
        self._d_weight = 0.5 if criterion == "least_squares" else 1.0

    def discriminator_loss(self, g_output: tuple[torch.Tensor, torch.Tensor],
                           d_input: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """L_D on real ``(x, y)`` and detached fakes ``(G(z, y'), y')``."""
        (fakes, fake_labels), (reals, real_labels) = g_output, d_input
        D = self.discriminator  # noqa: N806 - the paper's name
        loss_real = self.adversarial(D(reals, real_labels), target_is_real=True, for_discriminator=True)
        loss_fake = self.adversarial(D(fakes.detach(), fake_labels), target_is_real=False, for_discriminator=True)
        return self._d_weight * (loss_real + loss_fake)

    def generator_loss(self, g_output: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """L_G on fakes ``(G(z, y'), y')``: D should call them real."""
        fakes, labels = g_output
        return self.adversarial(self.discriminator(fakes, labels), target_is_real=True, for_discriminator=False)


class ConditionalGanTrainer(GanTrainer):
    """MONAI's ``GanTrainer`` that trains G and D in training mode and reports ``loss`` = ``loss_G`` and ``loss_D``.

    Takes ``GanTrainer``'s arguments; :func:`conditional_gan_trainer` fills in the conditional hooks.
    """

    def _iteration(self, engine: GanTrainer, batchdata: dict | Sequence) -> dict[str, Any]:
        engine.g_network.train()
        engine.d_network.train()
        output = super()._iteration(engine, batchdata)
        output[LOSS] = output[LOSS_G] = output[GanKeys.GLOSS]
        output[LOSS_D] = output[GanKeys.DLOSS]
        return output


def conditional_gan_trainer(
    num_classes: int,
    generator: nn.Module,
    discriminator: nn.Module,
    loss: ConditionalAdversarialLoss,
    **kwargs: Any,
) -> ConditionalGanTrainer:
    """A :class:`ConditionalGanTrainer` wired with the conditional hooks of this module.

    Args:
        num_classes: number of classes (for the fake labels).
        generator: ``G(z, y)``; its ``latent_size`` is the trainer's ``latent_shape``.
        discriminator: ``D(x, y)``, the one ``loss`` holds.
        loss: the adversarial losses.
        kwargs: the other ``GanTrainer`` arguments (``device``, ``max_epochs``, ``train_data_loader``, optimisers,
            handlers, metrics, ...).
    """
    if loss.discriminator is not discriminator:
        raise ValueError("the loss must hold the discriminator the trainer updates")
    return ConditionalGanTrainer(
        g_network=generator,
        d_network=discriminator,
        g_loss_function=loss.generator_loss,
        d_loss_function=loss.discriminator_loss,
        g_prepare_batch=ConditionalLatents(num_classes),
        d_prepare_batch=prepare_class_batch,
        g_inferer=ConditionalGeneratorInferer(),
        latent_shape=int(generator.latent_size),
        decollate=False,
        **kwargs,
    )


class ClassConditionalSampler(Inferer):
    """Inferer of a validation ``SupervisedEvaluator``: ``labels, G -> G(z, labels)`` with seeded latents.

    The evaluator's ``prepare_batch`` gives the batch labels as inputs (:func:`labels_and_images`). Latents come from
    a private ``torch.Generator`` that :meth:`attach` resets to ``seed`` at each evaluation's start, so each
    evaluation scores the same latents, and training draws the same random numbers with or without validation.

    Args:
        latent_size: length of z.
        seed: seed of the latents.
    """

    def __init__(self, latent_size: int, seed: int = 0) -> None:
        self.latent_size = int(latent_size)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def attach(self, engine: Engine) -> None:
        """Reset the latents at each run of ``engine`` (once, however often it is called)."""
        if not engine.has_event_handler(self.reset, Events.EPOCH_STARTED):
            engine.add_event_handler(Events.EPOCH_STARTED, self.reset)

    def reset(self, engine: Engine | None = None) -> None:
        self.generator.manual_seed(self.seed)

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        labels = inputs.long().reshape(-1)
        z = torch.randn(labels.shape[0], self.latent_size, generator=self.generator).to(labels.device)
        return network(z, labels, *args, **kwargs)


def labels_and_images(
    batchdata: Mapping[str, torch.Tensor],
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels, images)``: the ``prepare_batch`` of a validator that generates one fake per real image's label.

    The evaluator's output then holds the labels as ``image``, the real images as ``label`` and the fakes as
    ``pred`` (MONAI's ``SupervisedEvaluator`` names inputs, targets and predictions so).
    """
    images, labels = prepare_class_batch(batchdata, device, non_blocking, **kwargs)
    return labels, images
