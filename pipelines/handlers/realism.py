"""Ignite metrics of generated image / mask pairs, for the validation of ``mr_synthesis_gan``.

- :class:`MaskPlausibilityMetric`: the mean Dice between each generated mask and the segmentation network's
  prediction on the generated image (:func:`pipelines.evaluation.realism.mask_plausibility`); MONAI has no metric
  that segments the *prediction* and compares it with the prediction's own second channel.
- :class:`PairFrechetDistanceMetric`: the Fréchet distance of
  :class:`~pipelines.handlers.class_generation.FrechetDistanceMetric`, on the segmentation network's bottleneck
  features of the image channel (:func:`pipelines.evaluation.realism.pair_image_features`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from ignite.metrics import Metric
from torch import nn

from pipelines.evaluation.realism import mask_plausibility, pair_image_features
from pipelines.handlers.class_generation import FrechetDistanceMetric

__all__ = ["MaskPlausibilityMetric", "PairFrechetDistanceMetric"]


def _fakes(output: dict[str, Any]) -> torch.Tensor:
    return output["pred"]


class MaskPlausibilityMetric(Metric):
    """Mean Dice between generated masks and the segmentation of their generated images (higher is better).

    Args:
        network: the segmentation network (``pipelines.api.load_network("lv_segmentation_unet")``).
        output_transform: maps ``engine.state.output`` to the fakes, ``[N, 2, H, W]`` (image, mask probability).
    """

    def __init__(self, network: nn.Module, output_transform: Callable[[Any], Any] = _fakes) -> None:
        self.network = network
        self._dice_sum = 0.0
        self._count = 0
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self._dice_sum, self._count = 0.0, 0

    def update(self, output: torch.Tensor) -> None:
        pairs = torch.as_tensor(output).detach().float()
        report = mask_plausibility(self.network, pairs[:, :1], pairs[:, 1:2])
        self._dice_sum += report["mean_dice"] * report["pairs"]
        self._count += report["pairs"]

    def compute(self) -> float:
        if not self._count:
            raise RuntimeError("MaskPlausibilityMetric has no pair to score")
        return self._dice_sum / self._count


class PairFrechetDistanceMetric(FrechetDistanceMetric):
    """Fréchet distance between the segmentation features of real and generated pairs' image channels.

    Args:
        classifier: the segmentation network whose bottleneck gives the features.
        output_transform: maps ``engine.state.output`` to ``(fakes, reals)``, pairs ``[N, 2, H, W]``.
    """

    def update(self, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        fakes, reals = output
        self._fake.append(pair_image_features(self.classifier, torch.as_tensor(fakes).detach().float()).cpu())
        self._real.append(pair_image_features(self.classifier, torch.as_tensor(reals).detach().float()).cpu())
