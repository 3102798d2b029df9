"""Per-case segmentation scores, computed with MONAI's metric functions.

* Dice: ``2 |P ∩ G| / (|P| + |G|)`` over the whole case (all slices pooled), 1.0 when both masks are empty.
* HD95: the 95th percentile of the symmetric surface distances between P and G
  (``monai.metrics.compute_hausdorff_distance(percentile=95)``), in millimetres with the voxel spacing of the
  image, and in in-plane pixels (spacing divided by the in-plane spacing). Undefined (NaN) when either mask is empty.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

__all__ = ["CaseScores", "case_scores", "foreground_mask", "summarise"]


@dataclass(frozen=True)
class CaseScores:
    """Scores of one case (patient)."""

    case_id: str
    dice: float
    hd95_mm: float
    hd95_px: float
    group: str = ""

    def as_row(self) -> dict[str, str | float]:
        return asdict(self)


def foreground_mask(tensor: torch.Tensor | np.ndarray, foreground: int = 1) -> np.ndarray:
    """Foreground (class ``foreground``) mask of a channel-first label or prediction, without the channel axis.

    A one-channel input holds class indices or a probability: for class 1, foreground where it is > 0.5; for another
    class, where the rounded index equals it. A multi-channel input is one-hot or scores: foreground where channel
    ``foreground`` wins the argmax (that channel itself for one-hot).

    Args:
        tensor: ``(C, *spatial)`` array or tensor.
        foreground: the class index (a label of a multi-class map: 3 for the LV cavity in ACDC's convention).

    Returns:
        ``(*spatial)`` boolean array.
    """
    if isinstance(tensor, torch.Tensor):
        tensor = tensor.detach().cpu().float().numpy()
    array = np.asarray(tensor)
    if array.shape[0] == 1:
        return array[0] > 0.5 if foreground == 1 else np.rint(array[0]) == foreground
    return np.argmax(array, axis=0) == foreground


def _binary(mask: torch.Tensor, foreground: int = 1) -> torch.Tensor:
    """``(C, ...)`` one-hot or ``(1, ...)`` label map -> ``(1, 2, ...)`` one-hot of class ``foreground``."""
    fg = torch.as_tensor(foreground_mask(mask, foreground), dtype=torch.float32)
    return torch.stack([1 - fg, fg])[None]


def case_scores(
    pred: torch.Tensor,
    label: torch.Tensor,
    spacing_mm: Sequence[float],
    case_id: str,
    group: str = "",
    foreground: int = 1,
) -> CaseScores:
    """Dice and HD95 of one case, for class ``foreground`` (default 1).

    Args:
        pred: channel-first prediction, one-hot ``(2, ...)`` or label map ``(1, ...)``.
        label: channel-first ground truth, same conventions.
        spacing_mm: voxel spacing of the spatial axes; the first one is taken as the in-plane pixel size.
        case_id: identifier reported with the scores.
        group: e.g. the diagnostic category, for per-group summaries.
        foreground: the class scored (see :func:`foreground_mask`).
    """
    p, g = _binary(pred, foreground), _binary(label, foreground)
    both_empty = p[0, 1].sum() == 0 and g[0, 1].sum() == 0
    dice = 1.0 if both_empty else float(compute_dice(p, g, include_background=False, ignore_empty=False)[0, 0])
    if p[0, 1].sum() == 0 or g[0, 1].sum() == 0:
        hd_mm = math.nan
    else:
        spacing = [float(s) for s in spacing_mm]
        hd_mm = float(compute_hausdorff_distance(p, g, percentile=95, spacing=spacing)[0, 0])
    return CaseScores(case_id=case_id, dice=dice, hd95_mm=hd_mm, hd95_px=hd_mm / float(spacing_mm[0]), group=group)


def _stats(values: Iterable[float]) -> dict[str, float | int]:
    arr = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return {"mean": math.nan, "std": math.nan, "median": math.nan, "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std()), "median": float(np.median(arr)), "n": int(arr.size)}


def summarise(scores: Sequence[CaseScores]) -> dict[str, object]:
    """Mean / std / median of each score over cases (NaN HD95s are left out and counted), overall and per group."""
    fields = ("dice", "hd95_mm", "hd95_px")
    summary: dict[str, object] = {f: _stats(getattr(s, f) for s in scores) for f in fields}
    summary["n_cases"] = len(scores)
    groups = sorted({s.group for s in scores if s.group})
    summary["by_group"] = {
        g: {f: _stats(getattr(s, f) for s in scores if s.group == g) for f in fields} for g in groups
    }
    return summary
