"""Evaluator handlers for image synthesis (MR -> CT): masked MAE / PSNR / SSIM per case, reports and sample grids.

The evaluator's decollated output holds, per case (volume), the synthetic image ``pred`` and the real one ``label``
on the data's scale (0..255), and the evaluation mask under ``mask_key`` (the postprocessing copies the batch's
mask there). See :mod:`pipelines.evaluation.synthesis` for the maths.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from monai.handlers import from_engine

from pipelines.evaluation.synthesis import synthesis_metrics
from pipelines.io.atomic import atomic_write_json, atomic_write_text, json_safe
from pipelines.visualize.figures import synthesis_grid

logger = logging.getLogger(__name__)

__all__ = ["CaseMeanMetric", "SynthesisMetric", "SynthesisReport", "SynthesisGrid", "METRICS"]

METRICS = ("mae", "psnr", "ssim")


def _array(value: Any) -> np.ndarray:
    return value.detach().cpu().float().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, float)


def engine_cases(engine: Engine) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The (decollated output, batch entry) pair of each case of the engine's last iteration."""
    batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
    return list(zip(engine.state.output, batch))


class PerCaseHandler:
    """Collects one row per case in ``self.rows`` during an evaluator run: ``iteration_completed`` adds rows,
    ``epoch_completed`` uses them; the rows are cleared when a run starts."""

    rows: list[dict[str, Any]]

    def attach(self, engine: Engine) -> None:
        """Register on ``engine`` (once, however often it is called)."""
        if engine.has_event_handler(self.iteration_completed, Events.ITERATION_COMPLETED):
            return
        engine.add_event_handler(Events.EPOCH_STARTED, self.epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def epoch_started(self, engine: Engine) -> None:
        self.rows.clear()

    def iteration_completed(self, engine: Engine) -> None:
        raise NotImplementedError

    def epoch_completed(self, engine: Engine) -> None:
        raise NotImplementedError


class CaseMeanMetric(Metric):
    """One named score per case (volume), averaged over the cases of an evaluation run.

    A subclass names its scores (``names``) and computes them for one case (:meth:`scores`) from the per-case
    entries of the decollated output that ``output_transform`` picks (e.g. ``pred``, ``label``, ``mask``).

    Args:
        metric: which of ``names`` this metric reports.
        data_range: intensity range of ``pred`` and ``label``.
        output_transform: maps ``engine.state.output`` to parallel lists of per-case entries.
    """

    names: tuple[str, ...] = ()

    def __init__(self, metric: str, data_range: float, output_transform: Callable[[Any], Any]) -> None:
        if metric not in self.names:
            raise ValueError(f"metric must be one of {self.names}, got {metric!r}")
        self.metric = metric
        self.data_range = float(data_range)
        self._values: list[float] = []
        super().__init__(output_transform=output_transform)

    def scores(self, *case: torch.Tensor) -> dict[str, float]:
        """Every score of ``names`` for one case."""
        raise NotImplementedError

    def reset(self) -> None:
        self._values = []

    def iteration_completed(self, engine: Engine) -> None:
        # Ignite's default would split the per-case lists into (y_pred, y) pairs with an added batch dimension
        self.update(self._output_transform(engine.state.output))

    def update(self, output: Sequence[Sequence[torch.Tensor]]) -> None:
        for case in zip(*output):
            self._values.append(self.scores(*case)[self.metric])

    def compute(self) -> float:
        if not self._values:
            raise RuntimeError(f"{type(self).__name__} has no case to average")
        return float(np.mean(self._values))


class SynthesisMetric(CaseMeanMetric):
    """One of ``mae``, ``psnr``, ``ssim`` inside the mask, averaged over the cases of an evaluation run.

    Args:
        metric: ``mae``, ``psnr`` or ``ssim``.
        data_range: intensity range of ``pred`` and ``label`` (255 for 8-bit display values).
        output_transform: maps ``engine.state.output`` to ``(preds, labels, masks)`` lists.
    """

    names = METRICS

    def __init__(
        self,
        metric: str = "mae",
        data_range: float = 255.0,
        output_transform: Callable[[Any], Any] = from_engine(["pred", "label", "mask"]),
    ) -> None:
        super().__init__(metric, data_range, output_transform)

    def scores(self, pred: torch.Tensor, label: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
        return synthesis_metrics(pred, label, mask, self.data_range)


class SynthesisReport(PerCaseHandler):
    """Per-case MAE, PSNR and SSIM of an evaluation run, as ``per_case.csv`` and ``metrics.json``.

    ``metrics.json`` holds ``cases`` (one dict per case), ``summary`` (mean, std, median over cases of each metric)
    and ``by_region`` (the same per value of ``group_key``). The means also go into ``engine.state.metrics``
    (``mean_mae``, ...) so that MLflow logs them.

    Args:
        output_dir: folder of the reports.
        mask_key: key of the mask in the decollated output.
        id_key: key of the case id in the decollated batch.
        group_key: key of a grouping field in the batch (``region``), or None.
        data_range: intensity range of the images.
    """

    def __init__(
        self,
        output_dir: str,
        mask_key: str = "mask",
        id_key: str = "case_id",
        group_key: str | None = "region",
        data_range: float = 255.0,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.mask_key, self.id_key, self.group_key = mask_key, id_key, group_key
        self.data_range = float(data_range)
        self.rows: list[dict[str, Any]] = []

    def iteration_completed(self, engine: Engine) -> None:
        for item, info in engine_cases(engine):
            row: dict[str, Any] = {"case_id": str(info.get(self.id_key, f"case_{len(self.rows)}"))}
            if self.group_key:
                row[self.group_key] = str(info.get(self.group_key, ""))
            row.update(synthesis_metrics(item["pred"], item["label"], item[self.mask_key], self.data_range))
            self.rows.append(row)

    @staticmethod
    def _stats(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
        out = {}
        for name in METRICS:
            values = np.array([r[name] for r in rows], float)
            with np.errstate(invalid="ignore"):  # inf - inf in the std of an infinite PSNR: NaN, written as null
                out[name] = {"mean": float(values.mean()), "std": float(values.std()),
                             "median": float(np.median(values))}
        return out

    def epoch_completed(self, engine: Engine) -> None:
        if not self.rows:
            return
        summary = self._stats(self.rows)
        for name in METRICS:
            engine.state.metrics[f"mean_{name}"] = summary[name]["mean"]
        if idist.get_rank() != 0:
            return
        report: dict[str, Any] = {"cases": self.rows, "summary": summary, "n_cases": len(self.rows),
                                  "scale": f"0..{self.data_range:g}, inside the evaluation mask"}
        if self.group_key:
            groups = sorted({r[self.group_key] for r in self.rows})
            report["by_" + self.group_key] = {g: self._stats([r for r in self.rows if r[self.group_key] == g])
                                              for g in groups}
        stream = io.StringIO()
        writer = csv.DictWriter(stream, fieldnames=list(self.rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else v)
                          for k, v in row.items()} for row in self.rows)
        atomic_write_text(self.output_dir / "per_case.csv", stream.getvalue())
        atomic_write_json(self.output_dir / "metrics.json", json_safe(report))  # PSNR is inf for a perfect case
        logger.info("%d cases: MAE %.2f, PSNR %.2f dB, SSIM %.3f", len(self.rows), summary["mae"]["mean"],
                    summary["psnr"]["mean"], summary["ssim"]["mean"])


class SynthesisGrid(PerCaseHandler):
    """A PNG of input | synthetic | real | |synthetic - real| for the middle slice of each case of an evaluator run.

    Rewrites ``<output_dir>/<filename>`` after each run. As a validator's handler (MONAI's ``ValidationHandler``
    gives the validator the trainer's epoch number) it can also keep ``<output_dir>/samples/epoch_<k>.png`` every
    ``keep_every`` epochs, so the run's artifacts show how the samples evolved.

    Args:
        output_dir: folder of the figures.
        filename: name of the latest grid.
        image_key: key of the input (MR) in the decollated output.
        mask_key: key of the mask, drawn as a contour on the error map; None for none.
        id_key: key of the case id in the decollated batch.
        max_cases: cases drawn (the first ones).
        keep_every: epochs between kept samples; None keeps none.
        image_range: display range of the input (after the bundle's intensity scaling).
        data_range: display range of the synthetic and real images.
    """

    def __init__(
        self,
        output_dir: str,
        filename: str = "validation_grid.png",
        image_key: str = "image",
        mask_key: str | None = "mask",
        id_key: str = "case_id",
        max_cases: int = 4,
        keep_every: int | None = None,
        image_range: Sequence[float] = (-1.0, 1.0),
        data_range: float = 255.0,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.filename = filename
        self.image_key, self.mask_key, self.id_key = image_key, mask_key, id_key
        self.max_cases = max_cases
        self.keep_every = keep_every
        self.image_range = tuple(float(v) for v in image_range)
        self.data_range = float(data_range)
        self.rows: list[dict[str, Any]] = []

    def iteration_completed(self, engine: Engine) -> None:
        for item, info in engine_cases(engine):
            if len(self.rows) >= self.max_cases:
                return
            pred, label = _array(item["pred"])[0], _array(item["label"])[0]
            k = pred.shape[-1] // 2
            mask = _array(item[self.mask_key])[0][..., k] > 0 if self.mask_key else None
            self.rows.append({
                "name": str(info.get(self.id_key, "")),
                "image": _array(item[self.image_key])[0][..., k],
                "pred": pred[..., k],
                "label": label[..., k],
                "mask": mask,
            })

    def epoch_completed(self, engine: Engine) -> None:
        if not self.rows or idist.get_rank() != 0:
            return
        title = ""
        targets = [self.output_dir / self.filename]
        if self.keep_every:
            epoch = engine.state.epoch
            title = f"epoch {epoch}"
            if epoch % int(self.keep_every) == 0:
                targets.append(self.output_dir / "samples" / f"epoch_{epoch:03d}.png")
        for target in targets:
            synthesis_grid(self.rows, target, self.image_range, self.data_range, title=title)
