"""Ignite metrics and a figure for class-conditional image generators (MONAI has neither).

A validator (MONAI ``SupervisedEvaluator``) that generates one fake per real validation image, with the real image's
class (see :class:`pipelines.engines.conditional_gan.ClassConditionalSampler`), has in its output the fakes under
``pred``, the real images under ``label`` and the classes under ``image``. Two metrics read them, both through the
project's MedNIST classifier (:mod:`pipelines.evaluation.generative`):

- :class:`FrechetDistanceMetric`: the Frechet distance between the classifier features of all real and all fake
  images of the run, ``||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2))``;
- :class:`ClassConsistencyMetric`: the share of fakes the classifier assigns to the class they were drawn for.

:class:`ClassSampleGrid` draws a PNG with one row per class from fixed latents, to watch the samples evolve.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from matplotlib.figure import Figure
from torch import nn

from pipelines.evaluation.generative import class_consistency, classifier_features, frechet_distance, predict_classes
from pipelines.io.atomic import atomic_write_json
from pipelines.visualize.figures import save_figure

__all__ = [
    "ClassConsistencyMetric", "ClassSampleGrid", "FrechetDistanceMetric", "GenerationReport", "class_grid_figure",
]

logger = logging.getLogger(__name__)


def _fakes_and_reals(output: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    return output["pred"], output["label"]


def _fakes_and_classes(output: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    return output["pred"], output["image"]


class FrechetDistanceMetric(Metric):
    """Frechet distance between classifier features of the real and the fake images of an evaluation run.

    FD = ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)), with mu and S the mean and covariance of the
    features (:func:`pipelines.evaluation.generative.frechet_distance`). Lower is better; 0 for identical sets.

    Args:
        classifier: the feature network (:func:`pipelines.evaluation.generative.load_classifier`).
        output_transform: maps ``engine.state.output`` to ``(fakes, reals)``, images ``[N, 1, H, W]`` in [0, 1].
    """

    def __init__(self, classifier: nn.Module,
                 output_transform: Callable[[Any], Any] = _fakes_and_reals) -> None:
        self.classifier = classifier
        self._real: list[torch.Tensor] = []
        self._fake: list[torch.Tensor] = []
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self._real, self._fake = [], []

    def update(self, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        fakes, reals = output
        with torch.no_grad():
            self._fake.append(classifier_features(self.classifier, fakes.detach().float()).cpu())
            self._real.append(classifier_features(self.classifier, reals.detach().float()).cpu())

    def compute(self) -> float:
        if not self._real:
            raise RuntimeError("FrechetDistanceMetric has no image to compare")
        return float(frechet_distance(torch.cat(self._real), torch.cat(self._fake)))


class ClassConsistencyMetric(Metric):
    """Share of fakes that the classifier assigns to their class: mean of ``argmax f(G(z, y)) == y``.

    Args:
        classifier: the MedNIST classifier.
        output_transform: maps ``engine.state.output`` to ``(fakes, labels)``.
    """

    def __init__(self, classifier: nn.Module,
                 output_transform: Callable[[Any], Any] = _fakes_and_classes) -> None:
        self.classifier = classifier
        self._correct = 0.0
        self._count = 0
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self._correct, self._count = 0.0, 0

    def update(self, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        fakes, labels = output
        labels = torch.as_tensor(labels).long().reshape(-1)
        with torch.no_grad():
            accuracy = class_consistency(self.classifier, fakes.detach().float(), labels.to(fakes.device))
        self._correct += float(accuracy) * len(labels)
        self._count += len(labels)

    def compute(self) -> float:
        if not self._count:
            raise RuntimeError("ClassConsistencyMetric has no image to score")
        return self._correct / self._count


def class_grid_figure(images: np.ndarray, class_names: Sequence[str], title: str = "") -> Figure:
    """One row per class: ``images`` ``[C, K, H, W]`` in [0, 1], row c of class ``class_names[c]``."""
    n_classes, per_class = images.shape[:2]
    fig = Figure(figsize=(1.1 * per_class + 1.0, 1.1 * n_classes + (0.4 if title else 0.1)))
    axes = fig.subplots(n_classes, per_class, squeeze=False)
    for c in range(n_classes):
        for k in range(per_class):
            ax = axes[c, k]
            ax.imshow(images[c, k], cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(class_names[c], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.12, right=0.99, bottom=0.01, top=0.93 if title else 0.99, wspace=0.05, hspace=0.05)
    return fig


class ClassSampleGrid:
    """A PNG of ``per_class`` samples of each class, one row per class, from latents fixed by ``seed``.

    Attached to a validator (MONAI's ``ValidationHandler`` gives it the trainer's epoch), it rewrites
    ``<output_dir>/<filename>`` after each evaluation and keeps ``<output_dir>/samples/epoch_<k>.png`` every
    ``keep_every`` epochs. The same latents every time make the rows comparable across epochs; they come from a
    private generator, so drawing the grid changes nothing in training.

    Args:
        generator: ``G(z, labels)`` with a ``latent_size`` attribute; drawn in eval mode, then left in its mode.
        class_names: names of the classes, in label order.
        output_dir: folder of the figures.
        filename: name of the latest grid.
        per_class: samples per class.
        seed: seed of the latents.
        keep_every: epochs between kept grids; None keeps none.
    """

    def __init__(
        self,
        generator: nn.Module,
        class_names: Sequence[str],
        output_dir: str | Path,
        filename: str = "samples.png",
        per_class: int = 8,
        seed: int = 0,
        keep_every: int | None = None,
    ) -> None:
        self.generator = generator
        self.class_names = [str(name) for name in class_names]
        self.output_dir = Path(output_dir)
        self.filename = filename
        self.per_class = int(per_class)
        self.seed = int(seed)
        self.keep_every = keep_every

    def attach(self, engine: Engine) -> None:
        """Register on ``engine``'s ``EPOCH_COMPLETED`` (once, however often it is called)."""
        if not engine.has_event_handler(self, Events.EPOCH_COMPLETED):
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def samples(self) -> np.ndarray:
        """``[C, per_class, H, W]`` samples in [0, 1] from the fixed latents."""
        n_classes = len(self.class_names)
        latents = torch.randn(n_classes * self.per_class, int(self.generator.latent_size),
                              generator=torch.Generator().manual_seed(self.seed))
        labels = torch.arange(n_classes).repeat_interleave(self.per_class)
        device = next(self.generator.parameters()).device
        was_training = self.generator.training
        self.generator.eval()
        try:
            with torch.no_grad():
                images = self.generator(latents.to(device), labels.to(device))
        finally:
            self.generator.train(was_training)
        return images[:, 0].reshape(n_classes, self.per_class, *images.shape[2:]).cpu().numpy()

    def __call__(self, engine: Engine) -> None:
        if idist.get_rank() != 0:
            return
        epoch = engine.state.epoch
        images = self.samples()
        save_figure(class_grid_figure(images, self.class_names, title=f"epoch {epoch}"),
                    self.output_dir / self.filename)
        if self.keep_every and epoch % int(self.keep_every) == 0:
            save_figure(class_grid_figure(images, self.class_names, title=f"epoch {epoch}"),
                        self.output_dir / "samples" / f"epoch_{epoch:03d}.png")


class GenerationReport:
    """Score a class-conditional generator against held-out real images: ``metrics.json`` at the end of a run.

    Attached to an evaluator whose batches are *reference* real images (the training images) and whose inferer
    draws one fake per reference image with the same class (``pred`` = fakes, ``image`` = classes, ``label`` =
    reference images, as :class:`FrechetDistanceMetric` reads them). At the end it reads the *held-out* real images
    (``test_loader``: the test subset) and writes, overall and per class:

    - ``frechet_distance``: Frechet distance (classifier features) between fakes and held-out images;
    - ``frechet_distance_real``: the same between reference and held-out *real* images, the floor a perfect
      generator would reach with the same numbers of images (fakes and reference images are equally many per class);
    - ``class_consistency``: the classifier's accuracy on the fakes against their classes, and ``real_accuracy``,
      its accuracy on the held-out images (the ceiling); per class, ``classified_as`` counts the classes the
      classifier gives that class's fakes.

    The overall figures also go into ``engine.state.metrics`` (``test_frechet_distance``, ...) for MLflow.

    Args:
        classifier: the MedNIST classifier (:func:`pipelines.evaluation.generative.load_classifier`).
        classes: class names in label order.
        output_dir: folder of ``metrics.json``.
        test_loader: batches ``{"image": [B, 1, H, W] in [0, 1], "label": [B]}`` of held-out real images.
    """

    def __init__(self, classifier: nn.Module, classes: Sequence[str], output_dir: str | Path,
                 test_loader: Any) -> None:
        self.classifier = classifier
        self.classes = [str(c) for c in classes]
        self.output_dir = Path(output_dir)
        self.test_loader = test_loader
        self.reset()

    def attach(self, engine: Engine) -> None:
        """Register on ``engine`` (once, however often it is called)."""
        if not engine.has_event_handler(self.collect, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        self._fake: list[torch.Tensor] = []
        self._reference: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._predicted: list[torch.Tensor] = []

    def collect(self, engine: Engine) -> None:
        output = engine.state.output
        fakes, reals = output["pred"].detach().float(), output["label"].detach().float()
        self._fake.append(classifier_features(self.classifier, fakes))
        self._reference.append(classifier_features(self.classifier, reals))
        self._labels.append(torch.as_tensor(output["image"]).long().reshape(-1).cpu())
        self._predicted.append(predict_classes(self.classifier, fakes))

    def _held_out(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features, labels, predicted = [], [], []
        for batch in self.test_loader:
            images = torch.as_tensor(batch["image"]).float()
            features.append(classifier_features(self.classifier, images))
            labels.append(torch.as_tensor(batch["label"]).long().reshape(-1))
            predicted.append(predict_classes(self.classifier, images))
        return torch.cat(features), torch.cat(labels), torch.cat(predicted)

    def report(self) -> dict[str, Any]:
        """The figures described above, as a JSON-able dict (``summary``, ``per_class``, counts)."""
        fake, reference = torch.cat(self._fake), torch.cat(self._reference)
        labels, predicted = torch.cat(self._labels), torch.cat(self._predicted)
        test, test_labels, test_predicted = self._held_out()

        def scores(fake_f, ref_f, test_f, fake_y, fake_p, test_y, test_p) -> dict[str, Any]:
            return {
                "frechet_distance": frechet_distance(test_f, fake_f),
                "frechet_distance_real": frechet_distance(test_f, ref_f),
                "class_consistency": float((fake_p == fake_y).float().mean()),
                "real_accuracy": float((test_p == test_y).float().mean()),
                "fakes": int(len(fake_f)), "reference_images": int(len(ref_f)), "test_images": int(len(test_f)),
            }

        per_class = {}
        for k, name in enumerate(self.classes):
            fake_k, test_k = labels == k, test_labels == k
            if fake_k.sum() < 2 or test_k.sum() < 2:
                continue  # a covariance needs two images
            per_class[name] = scores(fake[fake_k], reference[fake_k], test[test_k], labels[fake_k],
                                     predicted[fake_k], test_labels[test_k], test_predicted[test_k])
            # where the fakes of this class go: a row of the fakes' confusion matrix
            per_class[name]["classified_as"] = {
                other: int((predicted[fake_k] == j).sum()) for j, other in enumerate(self.classes)
            }
        summary = scores(fake, reference, test, labels, predicted, test_labels, test_predicted)
        return {"summary": summary, "per_class": per_class, "classes": self.classes}

    def write(self, engine: Engine) -> dict[str, Any]:
        """Compute :meth:`report`, log its summary into ``engine.state.metrics``, write ``metrics.json``."""
        report = self.report()
        summary = report["summary"]
        for name in ("frechet_distance", "frechet_distance_real", "class_consistency", "real_accuracy"):
            engine.state.metrics[f"test_{name}"] = summary[name]
        if idist.get_rank() == 0:
            atomic_write_json(self.output_dir / "metrics.json", report)
        logger.info("FD %.2f (real-vs-real floor %.2f), class consistency %.3f (real images %.3f)",
                    summary["frechet_distance"], summary["frechet_distance_real"], summary["class_consistency"],
                    summary["real_accuracy"])
        return report
