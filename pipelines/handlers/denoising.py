"""Evaluator handlers for denoising: PSNR / SSIM as Ignite metrics, a per-case and per-noise-level report with the
gain over the noisy input, and a noisy | denoised | clean figure.

The evaluator's decollated output holds, per case (a volume at one noise level), the noisy input ``image``, the
denoised ``pred`` and the clean ``label`` on [0, ``data_range``]; the batch entry holds ``case_id`` and the level
(``noise_sigma``, see :func:`pipelines.data.noise_levels.noise_level_items`). The maths is in
:mod:`pipelines.evaluation.denoising`.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine
from monai.handlers import from_engine

from pipelines.evaluation.denoising import as_volume, denoising_metrics
from pipelines.handlers.synthesis import CaseMeanMetric, PerCaseHandler, engine_cases
from pipelines.io.atomic import atomic_write_json, atomic_write_text, json_safe
from pipelines.visualize.denoising import denoising_grid

logger = logging.getLogger(__name__)

__all__ = ["DenoisingMetric", "DenoisingReport", "DenoisingGrid", "level_name"]

METRICS = ("psnr", "ssim")


def level_name(sigma: float) -> str:
    """The key of a noise level in reports and metric names (``0.05`` -> ``"0.05"``)."""
    return f"{float(sigma):g}"


class DenoisingMetric(CaseMeanMetric):
    """PSNR (dB) or SSIM of each denoised volume against the clean one, averaged over the cases of a run.

    Args:
        metric: ``psnr`` or ``ssim``.
        data_range: intensity range of the clean images (1 for images normalised to [0, 1]).
        output_transform: maps ``engine.state.output`` to ``(preds, labels)`` lists.
    """

    names = METRICS

    def __init__(
        self,
        metric: str = "psnr",
        data_range: float = 1.0,
        output_transform: Callable[[Any], Any] = from_engine(["pred", "label"]),
    ) -> None:
        super().__init__(metric, data_range, output_transform)

    def scores(self, pred: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
        return denoising_metrics(pred, label, self.data_range)


def _stats(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, float)
    return {"mean": float(array.mean()), "std": float(array.std()), "median": float(np.median(array))}


class DenoisingReport(PerCaseHandler):
    """Per-case PSNR and SSIM of the noisy input and of the denoised output, by noise level.

    Writes ``<output_dir>/per_case.csv`` and ``metrics.json``: ``cases`` (one row per case and level),
    ``by_noise_sigma`` (per level: mean / std / median over cases of ``noisy_psnr``, ``psnr``, ``psnr_gain``,
    ``noisy_ssim``, ``ssim``, ``ssim_gain``, where ``gain = denoised - noisy``) and ``summary`` (the same over every
    row). The per-level means also go into ``engine.state.metrics`` (``psnr_sigma0.05``, ``psnr_gain_sigma0.05``,
    ...) so that MLflow logs them.

    Args:
        output_dir: folder of the reports.
        image_key: key of the noisy input in the decollated output.
        id_key: key of the case id in the batch.
        sigma_key: key of the noise level in the batch.
        data_range: intensity range of the clean images.
    """

    def __init__(
        self,
        output_dir: str,
        image_key: str = "image",
        id_key: str = "case_id",
        sigma_key: str = "noise_sigma",
        data_range: float = 1.0,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.image_key, self.id_key, self.sigma_key = image_key, id_key, sigma_key
        self.data_range = float(data_range)
        self.rows: list[dict[str, Any]] = []

    def iteration_completed(self, engine: Engine) -> None:
        for item, info in engine_cases(engine):
            noisy = denoising_metrics(item[self.image_key], item["label"], self.data_range)
            denoised = denoising_metrics(item["pred"], item["label"], self.data_range)
            self.rows.append({
                "case_id": str(info.get(self.id_key, f"case_{len(self.rows)}")),
                "noise_sigma": float(info[self.sigma_key]),
                "noisy_psnr": noisy["psnr"], "psnr": denoised["psnr"], "psnr_gain": denoised["psnr"] - noisy["psnr"],
                "noisy_ssim": noisy["ssim"], "ssim": denoised["ssim"], "ssim_gain": denoised["ssim"] - noisy["ssim"],
            })

    @staticmethod
    def _summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        columns = [c for c in rows[0] if c not in ("case_id", "noise_sigma")]
        return {"n_cases": len(rows), **{c: _stats([r[c] for r in rows]) for c in columns}}

    def epoch_completed(self, engine: Engine) -> None:
        if not self.rows:
            return
        levels = sorted({r["noise_sigma"] for r in self.rows})
        by_level = {level_name(s): self._summary([r for r in self.rows if r["noise_sigma"] == s]) for s in levels}
        for name, summary in by_level.items():
            for column in ("psnr", "psnr_gain", "ssim", "ssim_gain"):
                engine.state.metrics[f"{column}_sigma{name}"] = summary[column]["mean"]
        if idist.get_rank() != 0:
            return
        report = {
            "cases": self.rows,
            "by_noise_sigma": by_level,
            "summary": self._summary(self.rows),
            "scale": f"clean images on 0..{self.data_range:g}; PSNR over each volume, SSIM per 2D slice",
        }
        stream = io.StringIO()
        writer = csv.DictWriter(stream, fieldnames=list(self.rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()} for row in self.rows)
        atomic_write_text(self.output_dir / "per_case.csv", stream.getvalue())
        atomic_write_json(self.output_dir / "metrics.json", json_safe(report))  # PSNR is inf for an exact output
        for name, summary in by_level.items():
            logger.info("sigma %s: PSNR %.2f -> %.2f dB, SSIM %.3f -> %.3f (%d cases)", name,
                        summary["noisy_psnr"]["mean"], summary["psnr"]["mean"], summary["noisy_ssim"]["mean"],
                        summary["ssim"]["mean"], summary["n_cases"])


class DenoisingGrid(PerCaseHandler):
    """A PNG of noisy | denoised | clean | error for the middle slice of the first ``cases_per_level`` cases of each
    noise level of an evaluator run, rewritten after each run (``<output_dir>/<filename>``).

    Args:
        output_dir: folder of the figure.
        filename: name of the PNG.
        id_key: key of the case id in the batch.
        sigma_key: key of the noise level in the batch.
        cases_per_level: rows drawn per level.
        data_range: display range of the images.
        show_epoch: title the figure with the engine's epoch (a validator's is the trainer's epoch).
    """

    def __init__(
        self,
        output_dir: str,
        filename: str = "validation_grid.png",
        id_key: str = "case_id",
        sigma_key: str = "noise_sigma",
        cases_per_level: int = 1,
        data_range: float = 1.0,
        show_epoch: bool = True,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.filename = filename
        self.show_epoch = show_epoch
        self.id_key, self.sigma_key = id_key, sigma_key
        self.cases_per_level = int(cases_per_level)
        self.data_range = float(data_range)
        self.rows: list[dict[str, Any]] = []

    def iteration_completed(self, engine: Engine) -> None:
        for item, info in engine_cases(engine):
            sigma = float(info[self.sigma_key])
            if sum(r["sigma"] == sigma for r in self.rows) >= self.cases_per_level:
                continue
            noisy, pred, clean = (as_volume(item[k]) for k in ("image", "pred", "label"))
            k = clean.shape[-1] // 2
            self.rows.append({
                "name": f"{info.get(self.id_key, '')} sigma {level_name(sigma)}",
                "sigma": sigma,
                "image": noisy[..., k].numpy(), "pred": pred[..., k].numpy(), "label": clean[..., k].numpy(),
                "noisy_psnr": denoising_metrics(noisy[..., k], clean[..., k], self.data_range)["psnr"],
                "pred_psnr": denoising_metrics(pred[..., k], clean[..., k], self.data_range)["psnr"],
            })

    def epoch_completed(self, engine: Engine) -> None:
        if not self.rows or idist.get_rank() != 0:
            return
        rows = sorted(self.rows, key=lambda r: r["sigma"])
        denoising_grid(rows, self.output_dir / self.filename, self.data_range,
                       title=f"epoch {engine.state.epoch}" if self.show_epoch else "")
