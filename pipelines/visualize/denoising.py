"""A PNG grid for denoising: noisy | denoised | clean | |denoised - clean|, one row per case and noise level."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from pipelines.visualize.figures import image_grid_axes, save_figure

__all__ = ["denoising_figure", "denoising_grid"]


def denoising_figure(rows: Sequence[Mapping[str, object]], data_range: float = 1.0, title: str = "") -> Figure:
    """Build the grid of :func:`denoising_grid` without writing it."""
    fig, axes = image_grid_axes(len(rows), 4, title)
    for row, item in enumerate(rows):
        noisy, pred, clean = (np.asarray(item[k], float) for k in ("image", "pred", "label"))
        name = item.get("name") or f"item {row}"
        columns = [
            (noisy, f"{name}: noisy", item.get("noisy_psnr")),
            (pred, "denoised", item.get("pred_psnr")),
            (clean, "clean", None),
        ]
        for col, (image, label, psnr) in enumerate(columns):
            axes[row, col].imshow(image, cmap="gray", vmin=0, vmax=data_range)
            axes[row, col].set_title(label + (f", {psnr:.1f} dB" if psnr is not None else ""), fontsize=9)
        shown = axes[row, 3].imshow(np.abs(pred - clean), cmap="magma", vmin=0, vmax=data_range / 4)
        axes[row, 3].set_title("|denoised - clean|", fontsize=9)
        fig.colorbar(shown, ax=axes[row, 3], fraction=0.046, pad=0.02)
    return fig


def denoising_grid(
    rows: Sequence[Mapping[str, object]], path: str | Path, data_range: float = 1.0, title: str = ""
) -> Path:
    """Write one row per case: noisy input | denoised | clean | absolute error (scale 0..``data_range`` / 4).

    Args:
        rows: dicts with 2D arrays ``image`` (noisy), ``pred`` (denoised), ``label`` (clean), optionally ``name``
            and the slices' PSNRs ``noisy_psnr`` / ``pred_psnr`` shown in the titles.
        path: the PNG file, written atomically.
        data_range: display range of the images.
        title: figure title (e.g. the epoch).
    """
    return save_figure(denoising_figure(rows, data_range, title), path)
