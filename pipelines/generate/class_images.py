"""The base of class-conditional 64x64 image generators (``pipelines synthesize BUNDLE --label CLASS``).

A subclass says how to draw images for given classes (:meth:`ClassImageSynthesizer.decode`); this class does the
rest the same way for every such bundle (the conditional VAE, a conditional GAN):

- ``label`` is a class name of ``classes`` (an unknown one is a one-line :class:`InputError` listing them); with
  none, ``count`` images **of each class** are drawn;
- the files are ``<output>/<class>_<index:04d>.png`` (8-bit greyscale, ``round(255 x)``, written atomically) and
  a ``datalist.json`` in the prepared-data format whose items carry ``"synthetic": true``, ``label`` and
  ``class_name``, so the samples can be read like real MedNIST data;
- the summary holds the class consistency of the written samples (the MedNIST classifier's accuracy on them against
  the class asked for, see :mod:`pipelines.evaluation.generative`) when the classifier's weights are present.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pipelines.data.mednist import CLASSES
from pipelines.errors import InputError
from pipelines.generate.synthesizer import Synthesizer
from pipelines.io.atomic import atomic_path, atomic_write_json

__all__ = ["ClassImageSynthesizer", "DATALIST_FILE", "to_uint8"]

logger = logging.getLogger(__name__)

DATALIST_FILE = "datalist.json"


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images ``[N, 1, H, W]`` in [0, 1] -> ``[N, H, W]`` uint8, ``round(255 * clamp(x, 0, 1))``."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].cpu().numpy()


class ClassImageSynthesizer(Synthesizer):
    """Draw ``count`` single-channel images of one class (or of each class) into PNGs and a datalist.

    Args:
        network: the generator (see :class:`~pipelines.generate.synthesizer.Synthesizer` for this and the other
            base arguments: ``checkpoint``, ``output_dir``, ``count``, ``seed``, ``overwrite``, ``device``, ``key``).
        label: a class name of ``classes``, or None for ``count`` images of every class.
        classes: class names in label order (the datalist's ``classes``; default MedNIST's 6).
        batch_size: images decoded per call of :meth:`decode` (bounds memory, not the result).
        classifier_checkpoint: weights of the MedNIST classifier scoring the samples; default the shipped ones
            (skipped, with a log line, when absent or when ``classes`` are not MedNIST's). ``score=False`` skips
            the scoring.
        score: compute the class consistency of the written samples.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        checkpoint: str | Path,
        output_dir: str | Path,
        count: int,
        seed: int = 0,
        label: str | None = None,
        overwrite: bool = False,
        device: str | torch.device = "cpu",
        key: str = "model",
        classes: Sequence[str] = CLASSES,
        batch_size: int = 100,
        classifier_checkpoint: str | Path | None = None,
        score: bool = True,
    ) -> None:
        super().__init__(network, checkpoint, output_dir, count, seed, label, overwrite, device, key)
        self.classes = [str(c) for c in classes]
        if label is not None and label not in self.classes:
            raise InputError("--label", f"unknown class {label!r}; expected one of {', '.join(self.classes)}")
        self.batch_size = int(batch_size)
        self.classifier_checkpoint = classifier_checkpoint
        self.score = bool(score)

    def labels(self) -> list[int]:
        """The class index of every sample, in file order: ``count`` of ``label``, or ``count`` of each class."""
        wanted = [self.classes.index(self.label)] if self.label is not None else range(len(self.classes))
        return [k for k in wanted for _ in range(self.count)]

    def _names(self) -> list[str]:
        seen: dict[int, int] = {}
        names = []
        for k in self.labels():
            names.append(f"{self.classes[k]}_{seen.get(k, 0):04d}.png")
            seen[k] = seen.get(k, 0) + 1
        return names

    def targets(self) -> Sequence[Path]:
        return [*(self.output_dir / name for name in self._names()), self.output_dir / DATALIST_FILE]

    @abstractmethod
    def decode(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draw one image per class index in ``labels`` (``LongTensor[N]``) with ``generator``: ``[N, 1, H, W]`` in
        [0, 1]."""

    def _classifier(self) -> torch.nn.Module | None:
        from pipelines.evaluation.generative import CLASSIFIER_BUNDLE, load_classifier

        path = self.classifier_checkpoint or CLASSIFIER_BUNDLE / "models" / "model.pt"
        reason = ("score=False" if not self.score else f"no {path}" if not Path(path).is_file()
                  else "the classifier knows MedNIST's classes only" if self.classes != list(CLASSES) else None)
        if reason is not None:
            logger.info("class consistency not computed (%s)", reason)
            return None
        return load_classifier(path)

    def write(self, generator: torch.Generator) -> Mapping[str, Any]:
        labels = torch.tensor(self.labels(), dtype=torch.long)
        pixels = np.concatenate([to_uint8(self.decode(chunk.to(self.device), generator))
                                 for chunk in torch.split(labels, self.batch_size)])
        written = []
        for name, image in zip(self._names(), pixels):
            path = self.output_dir / name
            with atomic_path(path, overwrite=self.overwrite, suffix=".png") as tmp:
                Image.fromarray(image).save(tmp, format="PNG")
            written.append(path)
        cases = [
            {"case_id": p.stem, "image": p.name, "label": int(k), "class_name": self.classes[k], "synthetic": True}
            for p, k in zip(written, labels.tolist())
        ]
        datalist = {
            "name": "synthetic",
            "description": f"{len(cases)} images drawn by {type(self).__name__} from {self.checkpoint} (seed "
            f"{self.seed}); label = index of class_name in classes.",
            "synthetic": True,
            "classes": self.classes,
            "image_size": list(pixels.shape[1:]),
            "intensity_range": [0, 255],
            "cases": cases,
            "splits": {"synthetic": {"all": [case["case_id"] for case in cases]}},
        }
        atomic_write_json(self.output_dir / DATALIST_FILE, datalist, overwrite=True)
        summary: dict[str, Any] = {
            "written": written,
            "per_class": {self.classes[k]: int((labels == k).sum()) for k in labels.unique().tolist()},
        }
        classifier = self._classifier()
        if classifier is not None:
            from pipelines.evaluation.generative import per_class_accuracy, predict_classes

            predicted = predict_classes(classifier, torch.from_numpy(pixels).float()[:, None] / 255.0)
            report = per_class_accuracy(predicted, labels, self.classes)
            summary["class_consistency"] = report["accuracy"]
            summary["class_consistency_per_class"] = {
                name: value["accuracy"] for name, value in report["per_class"].items() if value["cases"]
            }
        return summary
