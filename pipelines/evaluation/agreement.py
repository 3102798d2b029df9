"""Agreement of measures and segmentations with a reference, the way cardiac MR papers report it.

* Bland-Altman: with ``d_i = predicted_i - reference_i`` over ``n`` cases, bias ``= mean(d)``, limits of agreement
  ``bias +- 1.96 SD(d)`` (SD with ``n - 1``), mean absolute error ``= mean(|d|)``, and Pearson's correlation ``r``
  between predicted and reference values.
* Per-class Dice ``2|P ∩ G| / (|P| + |G|)`` and HD95 (95th percentile of the symmetric surface distances, in mm
  with the voxel spacing), from MONAI's metric functions, for each label of a multi-class label map.
* AUROC of an uncertainty score for flagging bad cases: MONAI's ``compute_roc_auc`` (the probability that a bad
  case scores higher than a good one), with the numbers of bad and good cases behind it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_roc_auc

__all__ = ["bland_altman", "class_scores", "uncertainty_auroc"]


def bland_altman(predicted: Sequence[float], reference: Sequence[float]) -> dict[str, float]:
    """Bias, 95% limits of agreement, MAE and Pearson r of ``predicted`` against ``reference`` (paired values).

    Pairs with a NaN on either side are left out; ``n`` says how many remain.
    """
    p, r = np.asarray(predicted, float), np.asarray(reference, float)
    keep = np.isfinite(p) & np.isfinite(r)
    p, r = p[keep], r[keep]
    n = int(p.size)
    if n == 0:
        return {"n": 0, "mae": math.nan, "bias": math.nan, "sd": math.nan, "loa_low": math.nan,
                "loa_high": math.nan, "r": math.nan}
    d = p - r
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    corr = float(np.corrcoef(p, r)[0, 1]) if n > 1 and p.std() > 0 and r.std() > 0 else math.nan
    bias = float(d.mean())
    return {"n": n, "mae": float(np.abs(d).mean()), "bias": bias, "sd": sd, "loa_low": bias - 1.96 * sd,
            "loa_high": bias + 1.96 * sd, "r": corr}


def class_scores(
    predicted: np.ndarray, reference: np.ndarray, spacing_mm: Sequence[float], classes: Mapping[int, str]
) -> dict[str, float]:
    """``dice_<name>`` and ``hd95_mm_<name>`` for each ``classes`` label of two label maps on one grid.

    Dice is 1.0 when both masks are empty; HD95 is NaN when either is.
    """
    scores: dict[str, float] = {}
    for value, name in classes.items():
        p = torch.as_tensor(predicted == value)[None, None].float()
        g = torch.as_tensor(reference == value)[None, None].float()
        both = torch.cat([1 - p, p], 1), torch.cat([1 - g, g], 1)
        dice = compute_dice(*both, include_background=False, ignore_empty=False)
        scores[f"dice_{name}"] = float(dice.item())
        if p.any() and g.any():
            hd = compute_hausdorff_distance(*both, percentile=95, spacing=[float(s) for s in spacing_mm])
            scores[f"hd95_mm_{name}"] = float(hd.item())
        else:
            scores[f"hd95_mm_{name}"] = math.nan
    return scores


def uncertainty_auroc(uncertainty: Sequence[float], bad: Sequence[bool]) -> dict[str, Any]:
    """AUROC of ``uncertainty`` for telling ``bad`` cases from good ones, with the counts behind it.

    The AUROC is NaN when either group is empty (it is undefined then).
    """
    u = np.asarray(uncertainty, float)
    y = np.asarray(bad, bool)
    n_bad, n_good = int(y.sum()), int((~y).sum())
    auc = math.nan
    if n_bad and n_good:
        auc = float(compute_roc_auc(torch.as_tensor(u), torch.as_tensor(y.astype(np.float32))))
    return {"auroc": auc, "n_bad": n_bad, "n_good": n_good}
