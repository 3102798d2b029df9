"""Sampling from a class-conditional GAN generator (``pipelines synthesize mednist_gan --label CXR --count N``).

``x = G(z, y)`` with ``z ~ N(0, I)`` drawn from the synthesizer's seeded generator: the same seed gives the same
images. Everything else (class names, file names, PNG writing, the datalist, class consistency) is
:class:`pipelines.generate.class_images.ClassImageSynthesizer`'s.
"""

from __future__ import annotations

import torch

from pipelines.generate.class_images import ClassImageSynthesizer

__all__ = ["GANSynthesizer"]


class GANSynthesizer(ClassImageSynthesizer):
    """Draw images ``G(z, y)``, z ~ N(0, I), from a generator ``G(z, labels)`` with a ``latent_size`` attribute.

    Takes :class:`~pipelines.generate.class_images.ClassImageSynthesizer`'s arguments.
    """

    def decode(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One image per class index of ``labels`` ``[N]``: ``[N, C, H, W]`` in [0, 1]."""
        z = torch.randn(len(labels), int(self.network.latent_size), generator=generator)
        return self.network(z.to(labels.device), labels)
