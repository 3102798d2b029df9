"""An evaluator handler that scores every case (patient) and writes the table as CSV and JSON.

MONAI's metric handlers reduce over the batch and cannot take a per-image voxel spacing, which the Hausdorff
distance in millimetres needs; this handler computes :func:`pipelines.evaluation.case_scores` per decollated item,
with the spacing read from the label's affine.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path

from ignite.engine import Engine, Events
from monai.data.utils import affine_to_spacing

from pipelines.evaluation.metrics import CaseScores, case_scores, summarise
from pipelines.io.atomic import atomic_write_json, atomic_write_text, json_safe

logger = logging.getLogger(__name__)

__all__ = ["CaseMetrics"]


class CaseMetrics:
    """Per-case Dice and HD95 (mm and pixels) of an evaluation run.

    At ``EPOCH_COMPLETED`` it writes ``<output_dir>/per_case.csv`` and ``<output_dir>/metrics.json`` (the table plus
    mean/std/median overall and per group), and puts ``mean_dice``, ``std_dice``, ``mean_hd95_mm`` and
    ``mean_hd95_px`` into ``engine.state.metrics`` so that MLflow (attached later) logs them.

    Args:
        output_dir: folder of the reports; ``None`` only fills ``engine.state.metrics``.
        pred_key: key of the discrete prediction in the decollated ``engine.state.output``.
        label_key: key of the ground truth (a MetaTensor whose affine gives the spacing).
        id_key: key of the case id in the decollated ``engine.state.batch``.
        group_key: key of the group (diagnostic category) in the batch items, if any.
        group_names: optional mapping from group value to a readable name.
        foreground: the class scored (a multi-class bundle attaches one handler per class).
        metric_prefix: prefix of the names put into ``engine.state.metrics`` (``"lv_"`` -> ``lv_mean_dice``), so that
            one handler per class does not overwrite another's.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        pred_key: str = "pred",
        label_key: str = "label",
        id_key: str = "case_id",
        group_key: str | None = "category_name",
        group_names: dict[str, str] | None = None,
        foreground: int = 1,
        metric_prefix: str = "",
    ) -> None:
        self.output_dir = Path(output_dir) if output_dir else None
        self.pred_key = pred_key
        self.label_key = label_key
        self.id_key = id_key
        self.group_key = group_key
        self.group_names = group_names or {}
        self.foreground = foreground
        self.metric_prefix = metric_prefix
        self.scores: list[CaseScores] = []

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self._reset, Events.EPOCH_STARTED):
            engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._complete)

    def _reset(self, engine: Engine) -> None:
        self.scores = []

    def _update(self, engine: Engine) -> None:
        outputs = engine.state.output
        batch = engine.state.batch
        items = batch if isinstance(batch, Sequence) else [batch]
        for index, output in enumerate(outputs):
            label = output[self.label_key]
            spacing = affine_to_spacing(label.affine, r=label.ndim - 1).tolist()
            item = items[index] if index < len(items) else {}
            case_id = str(item.get(self.id_key, f"case_{len(self.scores)}"))
            group = str(item.get(self.group_key, "")) if self.group_key else ""
            group = self.group_names.get(group, group)
            self.scores.append(case_scores(output[self.pred_key], label, spacing, case_id, group, self.foreground))

    def _complete(self, engine: Engine) -> None:
        summary = summarise(self.scores)
        dice, hd_mm, hd_px = summary["dice"], summary["hd95_mm"], summary["hd95_px"]
        prefix = self.metric_prefix
        engine.state.metrics.update(
            {
                f"{prefix}mean_dice": dice["mean"],
                f"{prefix}std_dice": dice["std"],
                f"{prefix}mean_hd95_mm": hd_mm["mean"],
                f"{prefix}mean_hd95_px": hd_px["mean"],
            }
        )
        logger.info(
            "%s%d cases: Dice %.4f ± %.4f, HD95 %.2f mm (%.2f px)",
            f"class {self.foreground}: " if self.foreground != 1 or prefix else "", len(self.scores), dice["mean"],
            dice["std"], hd_mm["mean"], hd_px["mean"],
        )
        if self.output_dir is None:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["case_id", "group", "dice", "hd95_mm", "hd95_px"])
        writer.writeheader()
        for score in self.scores:
            row = score.as_row()
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        atomic_write_text(self.output_dir / "per_case.csv", buffer.getvalue())
        atomic_write_json(
            self.output_dir / "metrics.json",
            json_safe({"summary": summary, "cases": [s.as_row() for s in self.scores]}),
        )
