"""Scoring generated MedNIST images with an in-domain classifier: class consistency and a Frechet distance.

The feature network is the project's own MedNIST classifier (``bundles/mednist_classifier``, a small MONAI
``ResNet`` trained on the real training images): ImageNet Inception weights, the usual FID network, cannot be
downloaded here, and a network trained on these six classes of 64x64 greyscale images sees what matters in them.
Figures computed with it are comparable with each other, not with published FIDs.

- :func:`class_consistency`: the classifier's accuracy on generated images against the class they were asked
  for (on real test images it is the classifier's own accuracy, the ceiling to compare with);
- :func:`frechet_distance`: ``||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2))`` between Gaussians fitted
  to real and generated :func:`classifier_features`;
- :class:`ClassAccuracyReport`: the classifier bundle's evaluation handler (accuracy per class, confusion matrix).
  MONAI has no per-class accuracy report; it belongs with the handlers (``pipelines/handlers``) and lives here
  until it moves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from pipelines.api import load_network
from pipelines.io.atomic import atomic_write_json

__all__ = [
    "CLASSIFIER_BUNDLE", "ClassAccuracyReport", "class_consistency", "classifier_features", "frechet_distance",
    "load_classifier", "per_class_accuracy", "predict_classes",
]

logger = logging.getLogger(__name__)

CLASSIFIER_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "mednist_classifier"
BATCH = 256  # images per forward pass: bounds memory, not the result


def load_classifier(checkpoint: str | Path | None = None) -> torch.nn.Module:
    """The MedNIST classifier, built from ``bundles/mednist_classifier``'s ``network_def``, in eval mode on the CPU.

    Args:
        checkpoint: its weights (a bare state dict or a checkpoint holding it under ``model``, read with
            ``weights_only=True``); default the bundle's shipped ``models/model.pt``.

    Raises:
        InputError: the file is missing, unreadable, or holds weights of another network.
    """
    return load_network(CLASSIFIER_BUNDLE, checkpoint)


def _batches(images: torch.Tensor) -> list[torch.Tensor]:
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"expected images of shape [N, 1, H, W], got {list(images.shape)}")
    return list(torch.split(images.float(), BATCH))


def _device(network: torch.nn.Module) -> torch.device:
    return next(network.parameters()).device


@torch.no_grad()
def classifier_features(classifier: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Penultimate-layer features ``[N, F]`` of ``images`` ``[N, 1, 64, 64]`` in [0, 1] (PNG values / 255).

    The features are the input of the classifier's last linear layer (``fc`` of a MONAI ``ResNet``: the globally
    average-pooled last block, F = 128 for the shipped classifier), captured with a forward hook.
    """
    head = getattr(classifier, "fc", None)
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(f"{type(classifier).__name__} has no final linear layer 'fc' to take features from")
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _module, inputs, _output: captured.append(inputs[0].detach().cpu()))
    try:
        for batch in _batches(images):
            classifier(batch.to(_device(classifier)))
    finally:
        hook.remove()
    return torch.cat(captured).flatten(1)


@torch.no_grad()
def predict_classes(classifier: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The classifier's argmax class index ``[N]`` of ``images`` ``[N, 1, H, W]`` in [0, 1]."""
    return torch.cat([classifier(b.to(_device(classifier))).argmax(dim=1).cpu() for b in _batches(images)])


def class_consistency(classifier: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor | Sequence[int]) -> float:
    """Accuracy of the classifier's argmax against ``labels``: ``mean_i [argmax f(x_i) = y_i]``.

    Args:
        classifier: e.g. :func:`load_classifier`.
        images: ``[N, 1, 64, 64]`` in [0, 1], generated (or real, for the classifier's own accuracy).
        labels: the class index ``[N]`` each image was generated for.
    """
    labels = torch.as_tensor(labels).long().flatten()
    predicted = predict_classes(classifier, images)
    if predicted.shape != labels.shape:
        raise ValueError(f"{len(predicted)} images but {len(labels)} labels")
    return int((predicted == labels).sum()) / len(labels)


def per_class_accuracy(predicted: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """Overall and per-class accuracy and the confusion matrix (rows: true class, columns: predicted class).

    Returns:
        ``{"accuracy": a, "cases": n, "per_class": {name: {"accuracy": a_c, "cases": n_c}},
        "confusion_matrix": [[...]]}``; a class without cases has accuracy None.
    """
    predicted, labels = torch.as_tensor(predicted).long().flatten(), torch.as_tensor(labels).long().flatten()
    k = len(classes)
    confusion = torch.zeros(k, k, dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    per_class = {}
    for index, name in enumerate(classes):
        cases = int(confusion[index].sum())
        per_class[name] = {"accuracy": float(confusion[index, index]) / cases if cases else None, "cases": cases}
    return {
        "accuracy": int((predicted == labels).sum()) / len(labels) if len(labels) else None,
        "cases": int(len(labels)),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def frechet_distance(real_features: torch.Tensor, fake_features: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets ``[N, F]`` (the quantity of MONAI's ``FIDMetric``).

    ``FD = ||mu_r - mu_f||^2 + Tr(S_r) + Tr(S_f) - 2 Tr((S_r S_f)^(1/2))``, with ``mu`` the feature means and ``S``
    the unbiased covariance matrices. 0 for identical sets; it needs more samples than features for a full-rank
    ``S``. ``S_r S_f`` is similar to the positive semi-definite ``S_r^(1/2) S_f S_r^(1/2)``, so
    ``Tr((S_r S_f)^(1/2))`` is the sum of the square roots of its (real, non-negative) eigenvalues; computed so, in
    float64, rather than through MONAI's ``FIDMetric``, whose ``scipy.linalg.sqrtm(..., disp=False)`` call fails on
    SciPy releases without that argument (seen on a machine with a newer SciPy than this project's).
    """
    if real_features.ndim != 2 or fake_features.ndim != 2 or real_features.shape[1] != fake_features.shape[1]:
        raise ValueError(f"expected [N, F] features of equal F, got {list(real_features.shape)} and "
                         f"{list(fake_features.shape)}")
    real, fake = (torch.as_tensor(f).detach().to(torch.float64).cpu() for f in (real_features, fake_features))
    cov_real, cov_fake = torch.cov(real.T), torch.cov(fake.T)
    eigenvalues = torch.linalg.eigvals(cov_real @ cov_fake).real.clamp(min=0)
    distance = (real.mean(0) - fake.mean(0)).square().sum() + cov_real.trace() + cov_fake.trace()
    return float(distance - 2 * eigenvalues.sqrt().sum())


class ClassAccuracyReport:
    """Write ``<output_dir>/metrics.json`` (:func:`per_class_accuracy`, with a ``summary``) at the end of a
    classifier's evaluation.

    Reads ``pred`` (logits ``[B, C]``) and ``label`` (``[B]``) from each iteration's output of a MONAI
    ``SupervisedEvaluator`` run with ``decollate=False``.

    Args:
        output_dir: folder of ``metrics.json``; created if needed.
        classes: class names, in label order.
    """

    def __init__(self, output_dir: str | Path, classes: Sequence[str]) -> None:
        self.output_dir = Path(output_dir)
        self.classes = list(classes)
        self._predicted: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self.collect, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        self._predicted, self._labels = [], []

    def collect(self, engine: Engine) -> None:
        output = engine.state.output
        self._predicted.append(torch.as_tensor(output["pred"]).detach().argmax(dim=1).cpu())
        self._labels.append(torch.as_tensor(output["label"]).detach().long().flatten().cpu())

    def write(self, engine: Engine | None = None) -> dict[str, Any]:
        report = per_class_accuracy(torch.cat(self._predicted), torch.cat(self._labels), self.classes)
        # "summary" is what ``pipelines evaluate`` prints
        summary = {"accuracy": report["accuracy"], "cases": report["cases"],
                   "per_class_accuracy": {name: c["accuracy"] for name, c in report["per_class"].items()}}
        report = {"summary": summary, **report, "classes": self.classes}
        atomic_write_json(self.output_dir / "metrics.json", report)
        logger.info("accuracy %.4f on %d images", report["accuracy"], report["cases"])
        return report
