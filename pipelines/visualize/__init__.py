"""Static figures (PNG): learning curves, overlay grids of labels and predictions, occlusion sensitivity overlays,
MR -> CT synthesis grids."""

from __future__ import annotations

from pipelines.visualize.figures import (
    binary_dice,
    curves_figure,
    informative_slice,
    label_overlay_figure,
    lower_is_better,
    occlusion_figure,
    overlay_figure,
    overlay_grid,
    plot_curves,
    save_figure,
    synthesis_figure,
    synthesis_grid,
)

__all__ = [
    "label_overlay_figure",
    "binary_dice",
    "curves_figure",
    "informative_slice",
    "lower_is_better",
    "occlusion_figure",
    "overlay_figure",
    "synthesis_figure",
    "synthesis_grid",
    "overlay_grid",
    "plot_curves",
    "save_figure",
]
