"""Sampling the MedNIST conditional VAE: the ``synthesize`` synthesizer, sample and interpolation grids, test report.

- :class:`CVAESynthesizer`: ``pipelines synthesize mednist_cvae --count N [--label CLASS]`` draws z ~ N(0, I) with
  the seeded generator and decodes x = p(x | z, y) (:meth:`pipelines.networks.cvae.ConditionalVAE.generate`);
- :func:`sample_grid` / :func:`interpolation_grid` and the handler :class:`CVAEFigures` draw, during training,
  ``samples.png`` (one row per class, the same latents in every row) and ``interpolation.png`` (one row per class,
  z moving linearly from z_a to z_b along the columns, z_a and z_b shared by the rows);
- :class:`CVAEReport`, the handler of the bundle's ``evaluate.json``: reconstruction error and KL on the real test
  images (from the evaluator's metrics), the class consistency of generated samples per class and the Frechet
  distance of their classifier features to the real images' (:mod:`pipelines.evaluation.generative`), next to the
  classifier's accuracy on the real images, written to ``metrics.json``.

The two handlers are Ignite handlers that belong with ``pipelines/handlers``; they stay next to the sampling code
they call until they move.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from matplotlib.figure import Figure

from pipelines.generate.class_images import ClassImageSynthesizer, to_uint8
from pipelines.io.atomic import atomic_write_json
from pipelines.visualize.figures import save_figure

__all__ = ["CVAEFigures", "CVAEReport", "CVAESynthesizer", "grid_figure", "interpolation_grid", "sample_grid"]

logger = logging.getLogger(__name__)


class CVAESynthesizer(ClassImageSynthesizer):
    """Images of a class from the conditional VAE: ``x = decoder(z, y)``, ``z ~ N(0, I)`` from the seeded generator.

    Args: those of :class:`~pipelines.generate.class_images.ClassImageSynthesizer`; ``network`` is a
    :class:`~pipelines.networks.cvae.ConditionalVAE`.
    """

    def decode(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(len(labels), self.network.latent_size, generator=generator)
        return self.network.generate(z.to(self.device), labels.to(self.device)).cpu()


@torch.no_grad()
def _decode(network: torch.nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    was_training = network.training
    network.eval()
    try:
        device = next(network.parameters()).device
        return network.generate(z.to(device), labels.to(device)).cpu()
    finally:
        network.train(was_training)


def sample_grid(network: torch.nn.Module, num_classes: int, per_class: int = 8, seed: int = 0) -> torch.Tensor:
    """``[K, per_class, C, H, W]``: row k decodes the same ``per_class`` latents z ~ N(0, I) (seeded) for class k."""
    z = torch.randn(per_class, network.latent_size, generator=torch.Generator().manual_seed(seed))
    rows = [_decode(network, z, torch.full((per_class,), k)) for k in range(num_classes)]
    return torch.stack(rows)


def interpolation_grid(network: torch.nn.Module, num_classes: int, steps: int = 8, seed: int = 0) -> torch.Tensor:
    """``[K, steps, C, H, W]``: row k decodes ``z_t = (1 - t) z_a + t z_b``, t = 0 .. 1 in ``steps``, for class k.

    z_a and z_b ~ N(0, I) are drawn once (seeded) and shared by every row, so a column is one latent code seen
    through every class, and a row shows how smoothly the decoder moves between two codes.
    """
    generator = torch.Generator().manual_seed(seed)
    z_a, z_b = torch.randn(2, network.latent_size, generator=generator)
    t = torch.linspace(0, 1, steps)[:, None]
    z = (1 - t) * z_a + t * z_b
    return torch.stack([_decode(network, z, torch.full((steps,), k)) for k in range(num_classes)])


def grid_figure(
    images: torch.Tensor, row_names: Sequence[str], title: str = "", column_names: Sequence[str] = ()
) -> Figure:
    """A figure of single-channel images ``[R, C, 1, H, W]`` in [0, 1] (grey, 0 black, 1 white), rows labelled."""
    rows, cols = images.shape[:2]
    fig = Figure(figsize=(1.1 * cols + 0.9, 1.1 * rows + 0.5))
    axes = fig.subplots(rows, cols, squeeze=False)
    pixels = to_uint8(images.reshape(rows * cols, *images.shape[2:])).reshape(rows, cols, *images.shape[-2:])
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.imshow(pixels[r, c], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(row_names[r], fontsize=8)
            if r == 0 and c < len(column_names):
                ax.set_title(column_names[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def write_grids(network: torch.nn.Module, classes: Sequence[str], output_dir: str | Path, seed: int = 0,
                columns: int = 8, title: str = "") -> list[Path]:
    """Write ``samples.png`` and ``interpolation.png`` (see :func:`sample_grid`, :func:`interpolation_grid`)."""
    output_dir = Path(output_dir)
    samples = sample_grid(network, len(classes), columns, seed)
    steps = interpolation_grid(network, len(classes), columns, seed)
    t_names = [f"t={t:.2f}" for t in np.linspace(0, 1, columns)]
    return [
        save_figure(grid_figure(samples, classes, f"samples z ~ N(0, I) {title}".strip()), output_dir / "samples.png"),
        save_figure(grid_figure(steps, classes, f"z = (1-t) z_a + t z_b {title}".strip(), t_names),
                    output_dir / "interpolation.png"),
    ]


class CVAEFigures:
    """Redraw ``samples.png`` and ``interpolation.png`` of the conditional VAE every ``every`` epochs and at the end.

    The latents are the same at every epoch (``seed``), so successive figures show training, not sampling noise.

    Args:
        network: the :class:`~pipelines.networks.cvae.ConditionalVAE` being trained.
        classes: class names in label order (row labels).
        output_dir: folder of the PNGs.
        every: epochs between figures.
        seed: seed of the latents.
    """

    def __init__(self, network: torch.nn.Module, classes: Sequence[str], output_dir: str | Path, every: int = 1,
                 seed: int = 0) -> None:
        self.network = network
        self.classes = list(classes)
        self.output_dir = Path(output_dir)
        self.every = int(every)
        self.seed = int(seed)
        self._drawn_epoch: int | None = None

    def attach(self, engine: Engine) -> None:
        event = Events.EPOCH_COMPLETED(every=self.every) | Events.COMPLETED
        if not engine.has_event_handler(self):
            engine.add_event_handler(event, self)

    def __call__(self, engine: Engine) -> None:
        if engine.state.epoch == self._drawn_epoch:  # the last epoch is both EPOCH_COMPLETED and COMPLETED
            return
        write_grids(self.network, self.classes, self.output_dir, self.seed, title=f"(epoch {engine.state.epoch})")
        self._drawn_epoch = engine.state.epoch


class CVAEReport:
    """Score a conditional VAE on a test subset; write ``<output_dir>/metrics.json`` and the grids.

    Attached to a MONAI ``Evaluator`` running :class:`pipelines.engines.vae.VAEStep` without an optimiser, with the
    metrics ``eval_recon`` (R, summed per image), ``eval_kl`` (KL per image), ``eval_loss`` and ``eval_mae`` (MAE
    in 8-bit units), on the subset evaluated (``test`` unless ``pipelines evaluate --subset`` says otherwise). At
    the end of the run it also draws ``samples_per_class`` images of every class (z ~ N(0, I), seeded) and reports,
    with the MedNIST classifier (:func:`pipelines.evaluation.generative.load_classifier`):

    - ``class_consistency`` overall and per class: the classifier's accuracy on the generated images;
    - ``classifier_accuracy_real``: its accuracy on the real images seen by the evaluator (the ceiling);
    - ``frechet_distance``: between the classifier features of those real images and of the generated ones
      (as many generated as real, so both estimates have the same sample size).

    Args:
        network: the conditional VAE (weights loaded).
        classes: class names in label order.
        output_dir: folder of ``metrics.json``.
        figures_dir: folder of ``samples.png`` and ``interpolation.png``.
        samples_per_class: generated images per class.
        seed: seed of the latents.
        classifier_checkpoint: the classifier's weights; default the shipped ones.
    """

    def __init__(self, network: torch.nn.Module, classes: Sequence[str], output_dir: str | Path,
                 figures_dir: str | Path, samples_per_class: int = 100, seed: int = 0,
                 classifier_checkpoint: str | Path | None = None) -> None:
        self.network = network
        self.classes = list(classes)
        self.output_dir, self.figures_dir = Path(output_dir), Path(figures_dir)
        self.samples_per_class = int(samples_per_class)
        self.seed = int(seed)
        self.classifier_checkpoint = classifier_checkpoint
        self._images: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self.collect, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.EPOCH_STARTED, lambda _: (self._images.clear(), self._labels.clear()))
            engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def collect(self, engine: Engine) -> None:
        self._images.append(engine.state.output["images"].cpu())
        self._labels.append(engine.state.output["labels"].cpu())

    def generate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``samples_per_class`` images of each class, quantised to 8 bits as written PNGs are, and their labels."""
        generator = torch.Generator().manual_seed(self.seed)
        labels = torch.arange(len(self.classes)).repeat_interleave(self.samples_per_class)
        z = torch.randn(len(labels), self.network.latent_size, generator=generator)
        chunks = zip(torch.split(z, 200), torch.split(labels, 200))
        images = torch.cat([_decode(self.network, z_chunk, y_chunk) for z_chunk, y_chunk in chunks])
        return torch.from_numpy(to_uint8(images)).float()[:, None] / 255.0, labels

    def write(self, engine: Engine) -> dict[str, Any]:
        from pipelines.evaluation.generative import (
            class_consistency, classifier_features, frechet_distance, load_classifier, per_class_accuracy,
            predict_classes,
        )

        metrics = {name: float(value) for name, value in engine.state.metrics.items()}
        real, real_labels = torch.cat(self._images), torch.cat(self._labels)
        fake, fake_labels = self.generate()
        classifier = load_classifier(self.classifier_checkpoint)
        consistency = per_class_accuracy(predict_classes(classifier, fake), fake_labels, self.classes)
        matched = torch.randperm(len(fake), generator=torch.Generator().manual_seed(self.seed))[: len(real)]
        summary = {
            **metrics,
            "class_consistency": consistency["accuracy"],
            "class_consistency_per_class": {k: v["accuracy"] for k, v in consistency["per_class"].items()},
            "classifier_accuracy_real": class_consistency(classifier, real, real_labels),
            "frechet_distance": frechet_distance(classifier_features(classifier, real),
                                                 classifier_features(classifier, fake[matched])),
            "real_images": len(real),
            "generated_per_class": self.samples_per_class,
        }
        report = {"summary": summary, "generated": consistency, "classes": self.classes, "seed": self.seed}
        atomic_write_json(self.output_dir / "metrics.json", report)
        write_grids(self.network, self.classes, self.figures_dir, self.seed)
        logger.info("class consistency %.4f (real %.4f), recon %.2f, KL %.2f", summary["class_consistency"],
                    summary["classifier_accuracy_real"], metrics.get("eval_recon", float("nan")),
                    metrics.get("eval_kl", float("nan")))
        return report
