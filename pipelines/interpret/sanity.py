"""Sanity checks for saliency maps (Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018).

A map that looks plausible may still say nothing about the model. Two checks, as plain functions:

- **Model parameter randomisation.** The map of the trained network must differ from the map of the same
  architecture with re-initialised weights (:func:`randomized_copy`). Similarity is the Spearman rank correlation
  of the two maps' pixels (:func:`rank_correlation`); a value near 1 means the map reflects the image (edges,
  contrast), not what the network learnt.
- **Localisation.** Most of the sensitivity of a myocardium segmentation should lie on or next to the
  myocardium: :func:`near_structure_fraction` is the fraction of each slice's top 5 % most sensitive pixels that lie
  within 2 pixels of the ground-truth myocardium, and :func:`chance_fraction` what a map placing its top pixels at
  random would get.

Maps and masks are ``(H, W)`` slices or ``(H, W, D)`` stacks of them; distances are in-plane pixels, since the
slices of a short-axis stack are 8-10 mm apart.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from scipy import ndimage, stats
from torch import nn

__all__ = ["chance_fraction", "near_structure_fraction", "randomized_copy", "rank_correlation"]


def rank_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, absolute: bool = False) -> float:
    """Spearman rank correlation of two maps over their pixels (within ``mask`` if given).

    Args:
        a: a map, any shape.
        b: a map of the same shape.
        mask: boolean selection of the pixels compared, same shape; None for all.
        absolute: correlate ``|a|`` and ``|b|`` (Adebayo et al. report both; the absolute value ignores the sign
            of the sensitivity).

    Returns:
        ρ in [-1, 1]; NaN when either map is constant over the compared pixels (no ranking to compare).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"map shapes differ: {a.shape} vs {b.shape}")
    if mask is not None:
        a, b = a[np.asarray(mask, dtype=bool)], b[np.asarray(mask, dtype=bool)]
    a, b = a.ravel(), b.ravel()
    if absolute:
        a, b = np.abs(a), np.abs(b)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(stats.spearmanr(a, b).statistic)


def _slices(array: np.ndarray) -> np.ndarray:
    """``(H, W)`` -> ``(H, W, 1)``; ``(H, W, D)`` unchanged."""
    array = np.asarray(array)
    if array.ndim == 2:
        return array[..., None]
    if array.ndim != 3:
        raise ValueError(f"expected an (H, W) slice or (H, W, D) stack, got shape {array.shape}")
    return array


def _near(structure: np.ndarray, distance_px: float) -> np.ndarray:
    """Pixels within ``distance_px`` (Euclidean, in-plane) of a non-zero pixel of the ``(H, W)`` ``structure``."""
    return ndimage.distance_transform_edt(structure == 0) <= distance_px


def near_structure_fraction(
    sensitivity: np.ndarray, structure: np.ndarray, top_fraction: float = 0.05, distance_px: float = 2.0
) -> float:
    """Fraction of the most sensitive pixels that lie within ``distance_px`` of ``structure``.

    On each slice where ``structure`` is present, the ``ceil(top_fraction * H * W)`` pixels of highest (signed)
    sensitivity are taken; the result pools them over those slices: ``#(top pixels near the structure) /
    #(top pixels)``. Slices without the structure are left out (nothing there to be near).

    Args:
        sensitivity: ``(H, W)`` or ``(H, W, D)`` map; larger = more important.
        structure: mask of the same shape (e.g. the ground-truth myocardium); non-zero = structure.
        top_fraction: share of each slice's pixels counted as "most sensitive".
        distance_px: in-plane distance in pixels; pixels of the structure itself are at distance 0.

    Returns:
        The fraction in [0, 1]; NaN when no slice holds the structure.
    """
    maps, masks = _slices(sensitivity), _slices(structure)
    if maps.shape != masks.shape:
        raise ValueError(f"map shape {maps.shape} differs from structure shape {masks.shape}")
    count = math.ceil(top_fraction * maps.shape[0] * maps.shape[1])
    near = total = 0
    for k in range(maps.shape[-1]):
        if not masks[..., k].any():
            continue
        top = np.argsort(maps[..., k], axis=None, kind="stable")[-count:]
        near += int(_near(masks[..., k], distance_px).ravel()[top].sum())
        total += count
    return near / total if total else math.nan


def chance_fraction(structure: np.ndarray, distance_px: float = 2.0) -> float:
    """The expected :func:`near_structure_fraction` of a map with random values: the share of pixels near the
    structure, over the slices holding it. NaN when no slice holds it."""
    masks = _slices(structure)
    near = [_near(masks[..., k], distance_px).mean() for k in range(masks.shape[-1]) if masks[..., k].any()]
    return float(np.mean(near)) if near else math.nan


def randomized_copy(network: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``network`` with every layer re-initialised by its own ``reset_parameters`` (the "full"
    randomisation of Adebayo et al.; batch-norm running statistics are reset too). ``network`` is not changed.

    Args:
        network: the trained network.
        seed: seed of the new weights, for reproducible reports.
    """
    copied = copy.deepcopy(network)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for module in copied.modules():
            for reset in ("reset_parameters", "reset_running_stats"):
                if callable(getattr(module, reset, None)):
                    getattr(module, reset)()
    return copied
