"""Ignite trainers MONAI lacks (CycleGAN, paired pix2pix) and their parts (the image pool of past fakes)."""

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

__all__ = [
    "CycleGANKeys",
    "CycleGANStep",
    "ImagePool",
    "Pix2PixKeys",
    "Pix2PixStep",
    "LinearDecay",
    "checkpoint_objects",
    "create_cyclegan_trainer",
    "create_step_trainer",
    "linear_decay",
    "loss_averages",
]
