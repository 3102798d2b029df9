"""Ignite trainers MONAI lacks (CycleGAN, paired pix2pix, VAE) and their parts (the image pool of past fakes)."""

from pipelines.engines.conditional_gan import (
    ClassConditionalSampler,
    ConditionalAdversarialLoss,
    ConditionalGanTrainer,
    conditional_gan_trainer,
)
from pipelines.engines.cyclegan import (
    CycleGANKeys,
    CycleGANStep,
    LinearDecay,
    checkpoint_objects,
    create_cyclegan_trainer,
    create_step_trainer,
    linear_decay,
    loss_averages,
)
from pipelines.engines.pix2pix import Pix2PixKeys, Pix2PixStep
from pipelines.engines.image_pool import ImagePool
from pipelines.engines.vae import VAEKeys, VAEStep

__all__ = [
    "ClassConditionalSampler",
    "ConditionalAdversarialLoss",
    "ConditionalGanTrainer",
    "conditional_gan_trainer",
    "CycleGANKeys",
    "CycleGANStep",
    "ImagePool",
    "Pix2PixKeys",
    "Pix2PixStep",
    "VAEKeys",
    "VAEStep",
    "LinearDecay",
    "checkpoint_objects",
    "create_cyclegan_trainer",
    "create_step_trainer",
    "linear_decay",
    "loss_averages",
]
