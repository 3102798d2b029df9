"""Ignite metrics of generated image / mask pairs, for the validation of ``mr_synthesis_gan``.

- :class:`MaskPlausibilityMetric`: the mean Dice between each generated mask and the segmentation network's
  prediction on the generated image (:func:`pipelines.evaluation.realism.mask_plausibility`); MONAI has no metric
  that segments the *prediction* and compares it with the prediction's own second channel.
- :class:`PairFrechetDistanceMetric`: the Fréchet distance of
  :class:`~pipelines.handlers.class_generation.FrechetDistanceMetric`, on the segmentation network's bottleneck
  features of the image channel (:func:`pipelines.evaluation.realism.pair_image_features`).
- :class:`PairGrid`: a PNG of generated pairs next to the real ones, each validation epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from torch import nn

from pipelines.evaluation.realism import mask_plausibility, pair_image_features
from pipelines.handlers.class_generation import FrechetDistanceMetric
from pipelines.visualize.figures import image_grid_axes, save_figure

__all__ = ["MaskPlausibilityMetric", "PairFrechetDistanceMetric", "PairGrid"]


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


class PairGrid:
    """At the end of each validation run, write the first ``rows`` generated pairs beside the real ones: a PNG with
    one row per pair, columns generated image (mask contour in red), real image (its mask in green), mask.

    Args:
        output_dir: folder of the PNG.
        filename: name of the latest grid; with ``keep_every``, ``samples/epoch_XXX.png`` copies are kept too.
        rows: pairs shown.
        keep_every: validation epochs between kept copies; None keeps none.
        output_transform: maps ``engine.state.output`` to ``(fakes, reals)``, pairs ``[N, 2, H, W]``.
    """

    def __init__(self, output_dir: str | Path, filename: str = "pairs.png", rows: int = 6,
                 keep_every: int | None = None,
                 output_transform: Callable[[Any], Any] = lambda out: (out["pred"], out["label"])) -> None:
        self.output_dir, self.filename, self.rows = Path(output_dir), filename, int(rows)
        self.keep_every, self.output_transform = keep_every, output_transform
        self._fakes: list[torch.Tensor] = []
        self._reals: list[torch.Tensor] = []

    def attach(self, engine: Engine) -> None:
        for event, handler in ((Events.EPOCH_STARTED, self.reset), (Events.ITERATION_COMPLETED, self.collect),
                               (Events.EPOCH_COMPLETED, self)):
            if not engine.has_event_handler(handler, event):
                engine.add_event_handler(event, handler)

    def reset(self, engine: Engine | None = None) -> None:
        self._fakes, self._reals = [], []

    def collect(self, engine: Engine) -> None:
        if sum(len(f) for f in self._fakes) >= self.rows:
            return
        fakes, reals = self.output_transform(engine.state.output)
        self._fakes.append(torch.as_tensor(fakes).detach().float().cpu())
        self._reals.append(torch.as_tensor(reals).detach().float().cpu())

    def __call__(self, engine: Engine) -> None:
        if idist.get_rank() != 0 or not self._fakes:
            return
        fakes = torch.cat(self._fakes)[: self.rows].numpy()
        reals = torch.cat(self._reals)[: self.rows].numpy()
        epoch = engine.state.epoch  # MONAI's evaluators run with the trainer's epoch
        fig, axes = image_grid_axes(len(fakes), 3, title=f"generated | real | mask (epoch {epoch})")
        for row, (fake, real) in enumerate(zip(fakes, reals)):
            for col, (image, contour, colour) in enumerate(((fake[0], fake[1], "r"), (real[0], real[1], "g"))):
                axes[row, col].imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1)
                if contour.max() > 0.5:
                    axes[row, col].contour(contour, levels=[0.5], colors=colour, linewidths=0.6)
            axes[row, 2].imshow(fake[1], cmap="gray", vmin=0, vmax=1)
        axes[0, 0].set_title("generated", fontsize=9)
        axes[0, 1].set_title("real", fontsize=9)
        axes[0, 2].set_title("mask", fontsize=9)
        save_figure(fig, self.output_dir / self.filename)
        if self.keep_every and epoch % int(self.keep_every) == 0:
            save_figure(fig, self.output_dir / "samples" / f"epoch_{epoch:03d}.png")
