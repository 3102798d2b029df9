"""Ignite trainers MONAI lacks (CycleGAN) and their parts (the image pool of past fakes)."""

from pipelines.engines.cyclegan import (
    CycleGANKeys,
    CycleGANStep,
    LinearDecay,
    checkpoint_objects,
    create_cyclegan_trainer,
    linear_decay,
)
from pipelines.engines.image_pool import ImagePool

__all__ = [
    "CycleGANKeys",
    "CycleGANStep",
    "ImagePool",
    "LinearDecay",
    "checkpoint_objects",
    "create_cyclegan_trainer",
    "linear_decay",
]
