"""Static PNG figures: learning curves, image/label/prediction overlay grids, occlusion sensitivity overlays.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas (no pyplot, so no global figure
state and no display needed) and written atomically with :func:`pipelines.io.atomic.atomic_path`. The handlers in
:mod:`pipelines.handlers.figures` call these functions during training; they can also be called directly::

    from pipelines.visualize import plot_curves
    plot_curves({"train_loss": [(1, 0.9), (2, 0.7)], "val_mean_dice": [(1, 0.4), (2, 0.6)]}, "curves.png")
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipelines.io.atomic import atomic_path

__all__ = [
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

logger = logging.getLogger(__name__)

# Substrings of metric names for which a smaller value is better (the "best" marker goes on the minimum).
_LOWER_IS_BETTER = ("loss", "distance", "hausdorff", "error", "mae", "mse")
_GT_COLOUR = "lime"
_PRED_COLOUR = "red"
_CONTOUR_ON_HEAT_COLOUR = "yellow"  # red would vanish in the red half of the diverging heat map


def lower_is_better(name: str) -> bool:
    """Whether a smaller value of the metric ``name`` is better (losses, distances, errors)."""
    lowered = name.lower()
    return any(word in lowered for word in _LOWER_IS_BETTER)


def save_figure(fig: Figure, path: str | Path, dpi: int = 100, overwrite: bool = True) -> Path:
    """Render ``fig`` with the Agg canvas and write it as a PNG at ``path`` atomically.

    Args:
        fig: the figure to write.
        path: the PNG file; its folder is created if needed.
        dpi: resolution of the PNG.
        overwrite: if False, an existing ``path`` raises :class:`~pipelines.errors.OutputExistsError`.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    FigureCanvasAgg(fig)  # attaches itself to the figure
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    fig.clear()  # release the artists now rather than at garbage collection
    logger.debug("wrote %s", path)
    return path


# ---------------------------------------------------------------------------------------------------------- curves


def _plot_family(ax: Axes, history: Mapping[str, Sequence[tuple[int, float]]], names: Sequence[str]) -> None:
    """Draw one line per metric in ``names`` on ``ax`` and mark each metric's best value."""
    all_epochs: list[int] = []
    for name in names:
        points = sorted((int(epoch), float(value)) for epoch, value in history[name])
        epochs = [epoch for epoch, _ in points]
        all_epochs += epochs
        finite = [(epoch, value) for epoch, value in points if math.isfinite(value)]
        best = (min if lower_is_better(name) else max)(finite, key=lambda point: point[1]) if finite else None
        # the best value goes in the legend rather than next to the point, where it would collide with the lines
        label = name if best is None else f"{name} (best {best[1]:.4g} @ {best[0]})"
        (line,) = ax.plot(epochs, [value for _, value in points], marker="o", markersize=3, label=label)
        if best is not None:
            ax.plot(
                [best[0]], [best[1]], marker="*", markersize=14, linestyle="none",
                color=line.get_color(), markeredgecolor="black", zorder=3,
            )
    if all_epochs and max(all_epochs) - min(all_epochs) < 2:  # else the integer locator has no integer to show
        ax.set_xlim(min(all_epochs) - 1, max(all_epochs) + 1)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)


def curves_figure(history: Mapping[str, Sequence[tuple[int, float]]], title: str = "") -> Figure:
    """Build the learning-curve figure described in :func:`plot_curves` without writing it."""
    names = [name for name, points in history.items() if len(points) > 0]
    losses = [name for name in names if "loss" in name.lower()]
    others = [name for name in names if "loss" not in name.lower()]
    families = [(family, label) for family, label in ((losses, "loss"), (others, "metric")) if family]
    fig = Figure(figsize=(6 * max(len(families), 1), 4.5), layout="constrained")
    if not families:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no values recorded yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    for i, (family, label) in enumerate(families):
        ax = fig.add_subplot(1, len(families), i + 1)
        _plot_family(ax, history, family)
        ax.set_ylabel(label)
    if title:
        fig.suptitle(title)
    return fig


def plot_curves(history: Mapping[str, Sequence[tuple[int, float]]], path: str | Path, title: str = "") -> Path:
    """Plot learning curves to one PNG: losses in the left panel, other metrics (Dice, ...) in the right one.

    Each metric is a line over epochs; its best value (minimum for losses, distances and errors, maximum otherwise)
    is marked with a star and given in the legend. A family with no values gets no panel, so a run without validation yields
    a single panel. A single point per metric is drawn as a marker.

    Args:
        history: metric name -> ``(epoch, value)`` pairs, e.g. ``{"train_loss": [(1, 0.8)], "val_mean_dice": ...}``.
        path: the PNG file, written atomically.
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return save_figure(curves_figure(history, title), path)


# -------------------------------------------------------------------------------------------------------- overlays


def binary_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two binary masks: ``2|A∩B| / (|A|+|B|)``, and 1.0 when both are empty.

    Args:
        a: mask, any shape; non-zero means foreground.
        b: mask of the same shape.
    """
    a = np.asarray(a) != 0
    b = np.asarray(b) != 0
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def informative_slice(volume: np.ndarray, label: np.ndarray | None = None) -> int:
    """Index along the last axis of the slice to show for a ``(H, W, D)`` volume.

    The slice with the largest foreground area in ``label`` (the first one on ties); the middle slice ``D // 2``
    when no label is given or the label is empty everywhere.

    Args:
        volume: ``(H, W, D)`` array; only its depth is used.
        label: ``(H, W, D)`` mask (non-zero = foreground) matching ``volume``, or None.
    """
    depth = np.shape(volume)[-1]
    if label is not None:
        label = np.asarray(label)
        if label.shape[-1] != depth:
            raise ValueError(f"label depth {label.shape[-1]} does not match volume depth {depth}")
        areas = (label != 0).reshape(-1, depth).sum(axis=0)
        if areas.max() > 0:
            return int(np.argmax(areas))
    return depth // 2


def _contour(ax: Axes, mask: np.ndarray, colour: str) -> None:
    """Draw the 0.5 iso-line of a binary mask; skipped when the mask is constant (no line to draw)."""
    mask = np.asarray(mask, dtype=float)
    if 0 < mask.sum() < mask.size:
        ax.contour(mask, levels=[0.5], colors=colour, linewidths=1.2)


def overlay_figure(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | None,
    preds: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    max_items: int = 8,
) -> Figure:
    """Build the overlay grid described in :func:`overlay_grid` without writing it."""
    count = min(len(images), len(preds), max_items)
    if labels is not None:
        count = min(count, len(labels))
    columns = 2 if labels is None else 3
    rows = max(count, 1)
    fig = Figure(figsize=(2.6 * columns, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    if count == 0:
        axes[0, 0].text(0.5, 0.5, "no items", ha="center", va="center", transform=axes[0, 0].transAxes)
    for row in range(count):
        image = np.asarray(images[row], dtype=float)
        pred = np.asarray(preds[row]) != 0
        name = titles[row] if titles is not None and row < len(titles) else f"item {row}"
        for ax in axes[row]:
            ax.imshow(image, cmap="gray", interpolation="nearest")
        axes[row, 0].set_title(name, fontsize=9)
        if labels is None:
            _contour(axes[row, 1], pred, _PRED_COLOUR)
            axes[row, 1].set_title("prediction", fontsize=9, color=_PRED_COLOUR)
            continue
        label = np.asarray(labels[row]) != 0
        _contour(axes[row, 1], label, _GT_COLOUR)
        axes[row, 1].set_title("ground truth", fontsize=9, color="green")
        _contour(axes[row, 2], pred, _PRED_COLOUR)
        axes[row, 2].set_title(f"prediction, Dice {binary_dice(label, pred):.3f}", fontsize=9, color=_PRED_COLOUR)
    return fig


LABEL_COLOURS = {1: "tab:blue", 2: "tab:green", 3: "tab:red"}  # ACDC: RV cavity, LV myocardium, LV cavity


def label_overlay_figure(
    images: Sequence[np.ndarray],
    predicted: Sequence[np.ndarray],
    reference: Sequence[np.ndarray | None],
    titles: Sequence[str],
    title: str = "",
) -> Figure:
    """One panel per slice: the image in grey, each predicted label's contour solid and the reference's dashed.

    Labels follow ACDC (1 RV cavity blue, 2 LV myocardium green, 3 LV cavity red); a reference value outside them
    (255, unlabelled) draws nothing. Slices are shown with array axis 0 as rows, as a viewer shows axis 0 down.
    """
    fig = Figure(figsize=(3.2 * len(images), 3.6))
    axes = fig.subplots(1, len(images), squeeze=False)[0]
    for ax, image, pred, ref, name in zip(axes, images, predicted, reference, titles):
        ax.imshow(np.asarray(image, float), cmap="gray")
        for value, colour in LABEL_COLOURS.items():
            _contour(ax, np.asarray(pred) == value, colour)
            if ref is not None and np.any(np.asarray(ref) == value):
                ax.contour(np.asarray(ref) == value, levels=[0.5], colors=colour, linewidths=1.0, linestyles="--")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(f"{title}\nsolid: predicted, dashed: expert (blue RV, green myocardium, red LV cavity)",
                     fontsize=9)
    fig.tight_layout()
    return fig


def overlay_grid(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | None,
    preds: Sequence[np.ndarray],
    path: str | Path,
    titles: Sequence[str] | None = None,
    max_items: int = 8,
) -> Path:
    """Write a grid of 2D slices with ground-truth and prediction contours to one PNG.

    One row per item (at most ``max_items``). Columns: the image in grey; the image with the ground-truth contour
    (green); the image with the prediction contour (red), titled with the item's Dice
    ``2|A∩B| / (|A|+|B|)`` (see :func:`binary_dice`). With ``labels=None`` (inference) the ground-truth column and
    the Dice are left out.

    Args:
        images: ``(H, W)`` arrays.
        labels: ``(H, W)`` binary masks matching ``images``, or None.
        preds: ``(H, W)`` binary masks matching ``images``.
        path: the PNG file, written atomically.
        titles: one title per item (e.g. case ids), shown over the image column; defaults to ``item <n>``.
        max_items: the most rows drawn; later items are ignored.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return save_figure(overlay_figure(images, labels, preds, titles=titles, max_items=max_items), path)


# ----------------------------------------------------------------------------------------------------- occlusion


def occlusion_figure(
    image: np.ndarray,
    sensitivity: np.ndarray,
    mask: np.ndarray | None,
    limit: float | None = None,
    window: tuple[float, float] | None = None,
    title: str = "",
) -> Figure:
    """Two panels of one slice: the image with the predicted contour, and the occlusion sensitivity over it.

    The heat map is diverging and centred on 0 (red: occluding the region lowers the score, so the prediction
    relies on it; blue: occluding it raises the score), on the scale ``[-limit, limit]``; its opacity grows with
    ``sqrt(|sensitivity| / limit)``, so the anatomy stays visible where the map is near 0. The predicted contour is
    yellow in both panels.

    Args:
        image: ``(H, W)`` intensities.
        sensitivity: ``(H, W)`` map.
        mask: ``(H, W)`` predicted mask (non-zero = structure), or None.
        limit: the colour scale's half range; default ``max |sensitivity|``.
        window: ``(low, high)`` grey-level window; default the slice's 0.5th-99.5th percentiles.
        title: figure title.
    """
    image = np.asarray(image, dtype=float)
    sensitivity = np.asarray(sensitivity, dtype=float)
    low, high = window if window is not None else np.percentile(image, [0.5, 99.5])
    limit = max(float(np.abs(sensitivity).max() if limit is None else limit), 1e-12)
    fig = Figure(figsize=(7.4, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax in axes:
        ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
        ax.set_axis_off()
    opacity = np.sqrt(np.clip(np.abs(sensitivity) / limit, 0.0, 1.0)) * 0.85
    heat = axes[1].imshow(
        sensitivity, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=opacity, interpolation="nearest"
    )
    if mask is not None:
        for ax in axes:
            _contour(ax, np.asarray(mask) != 0, _CONTOUR_ON_HEAT_COLOUR)
    axes[0].set_title("image, predicted contour", fontsize=9)
    axes[1].set_title("occlusion sensitivity", fontsize=9)
    fig.colorbar(heat, ax=axes[1], shrink=0.85, label="score drop when occluded")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------------------- synthesis


def image_grid_axes(rows: int, columns: int = 4, title: str = "") -> tuple[Figure, np.ndarray]:
    """A figure of ``rows`` x ``columns`` image panels (axes off, ``[rows, columns]`` array), with an optional title."""
    count = max(int(rows), 1)
    fig = Figure(figsize=(2.6 * columns, 2.7 * count), layout="constrained")
    axes = fig.subplots(count, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig, axes


def synthesis_figure(
    rows: Sequence[Mapping[str, object]],
    image_range: Sequence[float] = (-1.0, 1.0),
    data_range: float = 255.0,
    title: str = "",
) -> Figure:
    """Build the grid described in :func:`synthesis_grid` without writing it."""
    fig, axes = image_grid_axes(len(rows), 4, title)
    for row, item in enumerate(rows):
        pred = np.asarray(item["pred"], float)
        label = np.asarray(item["label"], float)
        error = np.abs(pred - label)
        mask = item.get("mask")
        axes[row, 0].imshow(np.asarray(item["image"], float), cmap="gray", vmin=image_range[0], vmax=image_range[1])
        axes[row, 0].set_title(f"{item.get('name') or f'item {row}'}: MR", fontsize=9)
        axes[row, 1].imshow(pred, cmap="gray", vmin=0, vmax=data_range)
        axes[row, 1].set_title("synthetic CT", fontsize=9)
        axes[row, 2].imshow(label, cmap="gray", vmin=0, vmax=data_range)
        axes[row, 2].set_title("real CT", fontsize=9)
        shown = axes[row, 3].imshow(error, cmap="magma", vmin=0, vmax=data_range / 2)
        if mask is not None and np.any(mask):
            _contour(axes[row, 3], np.asarray(mask, bool), "cyan")
            axes[row, 3].set_title(f"|error|, MAE in mask {error[np.asarray(mask, bool)].mean():.1f}", fontsize=9)
        else:
            axes[row, 3].set_title("|error|", fontsize=9)
        fig.colorbar(shown, ax=axes[row, 3], fraction=0.046, pad=0.02)
    return fig


def synthesis_grid(
    rows: Sequence[Mapping[str, object]],
    path: str | Path,
    image_range: Sequence[float] = (-1.0, 1.0),
    data_range: float = 255.0,
    title: str = "",
) -> Path:
    """Write one row per case: input MR | synthetic CT | real CT | absolute error (with the mask's contour).

    Args:
        rows: dicts with ``image`` (the MR slice, network scale), ``pred`` and ``label`` (0..``data_range``),
            optionally ``mask`` (bool) and ``name``.
        path: the PNG file, written atomically.
        image_range: display range of the MR slice.
        data_range: display range of the CT slices; the error map spans half of it.
        title: figure title (e.g. the epoch).
    """
    return save_figure(synthesis_figure(rows, image_range, data_range, title), path)
