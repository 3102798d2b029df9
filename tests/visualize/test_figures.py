"""Tests of :mod:`pipelines.visualize.figures`: curves and overlay grids are valid, non-blank PNGs."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from pipelines.visualize import (
    binary_dice,
    curves_figure,
    informative_slice,
    overlay_figure,
    overlay_grid,
    plot_curves,
)


def _colour_codes(pixels: np.ndarray) -> np.ndarray:
    """One integer per pixel for its 8-bit RGB colour (1-D, so that counting colours is fast)."""
    rgb = np.round(pixels[..., :3] * 255).astype(np.int64)
    return (rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]).ravel()


def _assert_png(path: Path, min_height: int = 100, min_width: int = 100) -> np.ndarray:
    """Read ``path`` as a PNG and check it is big enough and not a single colour."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] >= min_height and pixels.shape[1] >= min_width
    assert len(np.unique(_colour_codes(pixels))) > 10
    return pixels


def _disc(size: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


@pytest.mark.parametrize(
    "history",
    [
        {"train_loss": [(1, 0.9), (2, 0.6), (3, 0.65)], "val_mean_dice": [(1, 0.3), (2, 0.5), (3, 0.45)]},
        {"train_loss": [(1, 0.9)], "val_mean_dice": [(1, 0.3)]},  # a single point
        {"train_loss": [(1, 0.9), (2, 0.8)]},  # no validation
        {"val_mean_dice": [(2, float("nan")), (4, 0.5)], "train_loss": []},  # NaN, empty series
        {},
    ],
    ids=["three-epochs", "single-point", "loss-only", "nan-and-empty", "empty"],
)
def test_plot_curves_writes_png(tmp_path: Path, history: dict) -> None:
    path = plot_curves(history, tmp_path / "sub" / "curves.png", title="run")
    assert path == tmp_path / "sub" / "curves.png"
    _assert_png(path)
    assert [p.name for p in path.parent.iterdir()] == ["curves.png"]  # no temporary file left behind


def test_curves_panels_and_best_markers() -> None:
    history = {
        "train_loss": [(1, 0.9), (2, 0.6), (3, 0.65)],
        "val_loss": [(1, 1.0), (2, 0.7), (3, 0.8)],
        "val_mean_dice": [(1, 0.3), (2, 0.5), (3, 0.45)],
    }
    fig = curves_figure(history)
    loss_ax, metric_ax = fig.axes
    # best = minimum for losses, maximum for Dice
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == [
        "train_loss (best 0.6 @ 2)",
        "val_loss (best 0.7 @ 2)",
    ]
    assert [t.get_text() for t in metric_ax.get_legend().get_texts()] == ["val_mean_dice (best 0.5 @ 2)"]


def test_binary_dice_hand_computed() -> None:
    a = np.zeros((4, 4), dtype=bool)
    b = np.zeros((4, 4), dtype=bool)
    a[0, :3] = True  # |A| = 3
    b[0, 1:] = True  # |B| = 3, |A∩B| = 2
    assert binary_dice(a, b) == pytest.approx(2 * 2 / 6)
    assert binary_dice(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert binary_dice(a, np.zeros_like(a)) == 0.0
    with pytest.raises(ValueError):
        binary_dice(a, np.zeros((2, 2)))


def test_informative_slice() -> None:
    volume = np.zeros((8, 8, 5))
    label = np.zeros((8, 8, 5), dtype=np.uint8)
    assert informative_slice(volume) == 2
    assert informative_slice(volume, label) == 2  # empty label: middle slice
    label[:2, :2, 1] = 1
    label[:3, :3, 3] = 1
    assert informative_slice(volume, label) == 3
    with pytest.raises(ValueError):
        informative_slice(volume, label[..., :4])


def test_overlay_grid_titles_and_png(tmp_path: Path) -> None:
    image = np.random.default_rng(0).random((64, 64))
    label = _disc(64, (32, 32), 12) & ~_disc(64, (32, 32), 7)  # a myocardium-like ring
    pred = np.zeros((64, 64), dtype=bool)
    pred[:2, :3] = True  # hand-computable second row: |A| = 6, |B| = 4, |A∩B| = 4 -> Dice 0.8
    label2 = np.zeros((64, 64), dtype=bool)
    label2[:2, :2] = True
    fig = overlay_figure([image, image], [label, label2], [label, pred], titles=["case_a", "case_b"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "case_a", "ground truth", "prediction, Dice 1.000",
        "case_b", "ground truth", "prediction, Dice 0.800",
    ]  # fmt: skip
    path = overlay_grid([image, image], [label, label2], [label, pred], tmp_path / "grid.png", titles=["a", "b"])
    pixels = _assert_png(path)
    assert pixels.shape[1] > pixels.shape[0]  # 2 rows, 3 columns
    # green and red contour pixels are drawn
    rgb = pixels[..., :3]
    assert ((rgb[..., 1] > 0.8) & (rgb[..., 0] < 0.3) & (rgb[..., 2] < 0.3)).sum() > 20
    assert ((rgb[..., 0] > 0.8) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)).sum() > 20


def test_overlay_grid_without_labels_and_max_items(tmp_path: Path) -> None:
    images = [np.full((16, 16), i, dtype=float) + np.eye(16) for i in range(5)]
    preds = [_disc(16, (8, 8), 4)] * 5
    fig = overlay_figure(images, None, preds, max_items=3)
    assert len(fig.axes) == 3 * 2
    assert [ax.get_title() for ax in fig.axes[:2]] == ["item 0", "prediction"]
    _assert_png(overlay_grid(images, None, preds, tmp_path / "inference.png", max_items=3))
    _assert_png(overlay_grid([], [], [], tmp_path / "empty.png"), min_width=50)
