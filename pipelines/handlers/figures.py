"""Ignite handlers that keep PNG figures of a run up to date: learning curves and a validation overlay grid.

Both follow the MONAI handler pattern (plain-value constructor, ``attach(engine)``), so a bundle config builds them
with ``_target_``::

    "train#handlers": [
        ...,
        {"_target_": "ValidationHandler", "validator": "@validate#evaluator", "epoch_level": true, "interval": 1},
        {"_target_": "pipelines.handlers.figures.TrainingCurves", "output_dir": "@output_dir",
         "validator": "@validate#evaluator"},
        {"_target_": "CheckpointSaver", ...}
    ],
    "validate#handlers": [..., {"_target_": "pipelines.handlers.figures.OverlayGrid", "output_dir": "@output_dir"}]
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import decollate_batch

from pipelines.evaluation.metrics import foreground_mask as binary_mask
from pipelines.io.atomic import atomic_path
from pipelines.visualize.figures import informative_slice, overlay_grid, plot_curves

__all__ = ["OverlayGrid", "TrainingCurves", "binary_mask"]

logger = logging.getLogger(__name__)


def _scalar(value: Any) -> float | None:
    """``value`` as a float if it is a number or a one-element tensor/array, else None."""
    if isinstance(value, (int, float, np.number)):
        return float(value)
    if isinstance(value, (torch.Tensor, np.ndarray)) and np.prod(value.shape, dtype=int) == 1:
        return float(value.item())
    return None


class TrainingCurves:
    """Record epoch-level training and validation metrics and redraw the learning curves after every epoch.

    At each trainer ``EPOCH_COMPLETED`` it appends ``(epoch, value)`` for each of ``train_metrics`` found in the
    trainer's ``state.metrics`` and each of ``val_metrics`` found in the validator's (missing ones are skipped),
    then rewrites ``<output_dir>/<filename>`` (see :func:`pipelines.visualize.plot_curves`) and
    ``<output_dir>/history.csv`` (columns ``epoch`` and one per metric, empty where a metric has no value).

    Order matters, since Ignite runs the handlers of one event in attachment order:

    - attach it **after** MONAI's ``ValidationHandler``, so that the validator has run for this epoch. Validation
      metrics are only taken when ``validator.state.epoch`` equals the trainer's epoch (``ValidationHandler`` sets
      it), so epochs skipped by a validation ``interval`` get no stale value;
    - attach it **before** the ``CheckpointSaver``, so that a checkpoint holds the history up to its own epoch.

    Add it to the checkpoint (``save_dict``/``load_dict`` of MONAI's ``CheckpointSaver``/``CheckpointLoader``, or
    Ignite's ``Checkpoint``): :meth:`state_dict` holds the history as plain lists, so a resumed run continues the
    curves. In distributed runs every rank records, only rank 0 writes files.

    Args:
        output_dir: folder of the PNG and ``history.csv``; created if needed.
        validator: the engine run by ``ValidationHandler``; None to record training metrics only.
        train_metrics: names in the trainer's ``state.metrics`` to record.
        val_metrics: names in the validator's ``state.metrics`` to record.
        filename: name of the PNG in ``output_dir``.
    """

    def __init__(
        self,
        output_dir: str,
        validator: Engine | None = None,
        train_metrics: Sequence[str] = ("train_loss",),
        val_metrics: Sequence[str] = ("val_mean_dice",),
        filename: str = "curves.png",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.validator = validator
        self.train_metrics = list(train_metrics)
        self.val_metrics = list(val_metrics)
        self.filename = filename
        self.history: dict[str, list[tuple[int, float]]] = {}

    def attach(self, engine: Engine) -> None:
        """Register on the trainer's ``EPOCH_COMPLETED`` (once, however often it is called).

        Args:
            engine: the trainer.
        """
        if not engine.has_event_handler(self, Events.EPOCH_COMPLETED):
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def record(self, name: str, epoch: int, value: float) -> None:
        """Set the value of ``name`` at ``epoch``, replacing an earlier value for the same epoch."""
        points = [point for point in self.history.get(name, []) if point[0] != epoch]
        points.append((epoch, value))
        self.history[name] = sorted(points)

    def _collect(self, metrics: Mapping[str, Any], names: Sequence[str], epoch: int) -> None:
        for name in names:
            if name not in metrics:
                continue
            value = _scalar(metrics[name])
            if value is None:
                logger.debug("metric %s is not a scalar; not plotted", name)
                continue
            self.record(name, epoch, value)

    def __call__(self, engine: Engine) -> None:
        """Record this epoch's metrics and rewrite the PNG and CSV.

        Args:
            engine: the trainer.
        """
        epoch = engine.state.epoch
        self._collect(engine.state.metrics, self.train_metrics, epoch)
        if self.validator is not None and self.validator.state.epoch == epoch:
            self._collect(self.validator.state.metrics, self.val_metrics, epoch)
        if idist.get_rank() == 0:
            plot_curves(self.history, self.output_dir / self.filename)
            self.write_csv(self.output_dir / "history.csv")

    def write_csv(self, path: str | Path) -> Path:
        """Write the history as CSV atomically: one row per epoch, columns ``epoch`` and the metric names."""
        names = [name for name in [*self.train_metrics, *self.val_metrics] if name in self.history]
        names += sorted(set(self.history) - set(names))  # restored from a run configured with other metrics
        table: dict[int, dict[str, float]] = {}
        for name in names:
            for epoch, value in self.history[name]:
                table.setdefault(epoch, {})[name] = value
        with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(["epoch", *names])
            for epoch in sorted(table):
                writer.writerow([epoch, *(repr(table[epoch][n]) if n in table[epoch] else "" for n in names)])
        return Path(path)

    def state_dict(self) -> dict[str, Any]:
        """The history as ``{"history": {name: [[epoch, value], ...]}}`` (plain types, ``weights_only``-safe)."""
        return {"history": {name: [[int(e), float(v)] for e, v in points] for name, points in self.history.items()}}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the history saved by :meth:`state_dict`, replacing the current one.

        Args:
            state_dict: a dict from :meth:`state_dict`.
        """
        self.history = {
            str(name): sorted((int(e), float(v)) for e, v in points) for name, points in state_dict["history"].items()
        }


def _numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().float().numpy()
    return np.asarray(value)


def _case_name(item: Mapping[str, Any], batch_item: Any, key: str, image: Any) -> str | None:
    """A title for one volume: ``case_id`` from the output or the batch, else the image's file name."""
    for source in (item, batch_item):
        if isinstance(source, Mapping) and source.get(key) is not None:
            return str(source[key])
    meta = getattr(image, "meta", None)
    if isinstance(meta, Mapping) and meta.get("filename_or_obj"):
        return Path(str(meta["filename_or_obj"])).name
    return None


def _batch_items(batch: Any, count: int) -> list[Any]:
    """The per-volume entries of ``engine.state.batch``, whether decollated (list) or collated (dict)."""
    if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)) and len(batch) == count:
        return list(batch)
    if isinstance(batch, Mapping):
        items: list[dict[str, Any]] = [{} for _ in range(count)]
        for key, values in batch.items():
            if isinstance(values, Sequence) and not isinstance(values, (str, bytes)) and len(values) == count:
                for item, value in zip(items, values):
                    item[key] = value
        return items
    return [None] * count


class OverlayGrid:
    """Collect one slice per validation volume and write an overlay grid of image, label and prediction per epoch.

    For each volume in ``engine.state.output`` (channel-first ``(C, H, W, D)`` tensors, one-hot or class indices)
    it keeps the slice with the largest ground-truth area (largest predicted area when there is no label; the
    middle slice when both are empty), until ``max_items`` are held, and writes them at ``EPOCH_COMPLETED`` with
    :func:`pipelines.visualize.overlay_grid`: one row per volume titled with its ``case_id`` and slice index, the
    ground-truth contour in green and the prediction contour in red with its Dice. Without labels (inference) the
    grid has only the image and prediction columns. 2D ``(C, H, W)`` items are used as they are.

    Args:
        output_dir: folder of the PNG; created if needed.
        filename: name of the PNG; ``{epoch}`` in it is replaced by the engine's epoch (for one file per epoch).
        max_items: the most volumes shown.
        image_key: key of the image in each output dict.
        label_key: key of the label; a missing or None label means inference.
        pred_key: key of the prediction.
        case_key: key of the case id, looked up in the output dict then in the batch.
    """

    def __init__(
        self,
        output_dir: str,
        filename: str = "overlay_grid.png",
        max_items: int = 8,
        image_key: str = "image",
        label_key: str = "label",
        pred_key: str = "pred",
        case_key: str = "case_id",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.filename = filename
        self.max_items = max_items
        self.image_key = image_key
        self.label_key = label_key
        self.pred_key = pred_key
        self.case_key = case_key
        self._images: list[np.ndarray] = []
        self._labels: list[np.ndarray | None] = []
        self._preds: list[np.ndarray] = []
        self._titles: list[str] = []

    def attach(self, engine: Engine) -> None:
        """Register on the evaluator's epoch and iteration events (once, however often it is called).

        Args:
            engine: the evaluator (or an inference engine).
        """
        for event, handler in (
            (Events.EPOCH_STARTED, self.reset),
            (Events.ITERATION_COMPLETED, self.collect),
            (Events.EPOCH_COMPLETED, self),
        ):
            if not engine.has_event_handler(handler, event):
                engine.add_event_handler(event, handler)

    def reset(self, engine: Engine | None = None) -> None:
        """Empty the buffer (at ``EPOCH_STARTED``)."""
        self._images, self._labels, self._preds, self._titles = [], [], [], []

    def collect(self, engine: Engine) -> None:
        """Keep the most informative slice of each volume of this iteration until ``max_items`` are held.

        Args:
            engine: the evaluator; ``state.output`` is a list of dicts (decollated) or a dict of batched tensors.
        """
        output = engine.state.output
        if isinstance(output, Mapping):  # not decollated: split the batch dimension
            output = decollate_batch(dict(output), detach=True)
        if not output:
            return
        batch_items = _batch_items(engine.state.batch, len(output))
        for item, batch_item in zip(output, batch_items):
            if len(self._images) >= self.max_items:
                return
            image = item[self.image_key]
            label = item.get(self.label_key)
            label_mask = None if label is None else binary_mask(label)
            pred_mask = binary_mask(item[self.pred_key])
            image_array = _numpy(image)[0]
            name = _case_name(item, batch_item, self.case_key, image) or f"item {len(self._images)}"
            if image_array.ndim == 3:
                index = informative_slice(image_array, label_mask if label_mask is not None else pred_mask)
                image_array, pred_mask = image_array[..., index], pred_mask[..., index]
                label_mask = None if label_mask is None else label_mask[..., index]
                name = f"{name} z={index}"
            self._images.append(image_array)
            self._labels.append(label_mask)
            self._preds.append(pred_mask)
            self._titles.append(name)

    def __call__(self, engine: Engine) -> None:
        """Write the grid of the collected slices (at ``EPOCH_COMPLETED``).

        Args:
            engine: the evaluator.
        """
        if not self._images or idist.get_rank() != 0:
            return
        # the ground-truth column needs a label for every row; one missing label makes the grid an inference grid
        labels = None if any(label is None for label in self._labels) else self._labels
        path = self.output_dir / self.filename.format(epoch=engine.state.epoch)
        overlay_grid(self._images, labels, self._preds, path, titles=self._titles, max_items=self.max_items)
