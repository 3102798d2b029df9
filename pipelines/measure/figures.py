"""Figures of ``pipelines measure``: the AHA bull's-eye of ED wall thickness and a cine's volume curve.

Drawn on Agg :class:`~matplotlib.figure.Figure` objects (no pyplot) and written atomically with
:func:`pipelines.visualize.figures.save_figure`, like the project's other figures.

Bull's-eye layout (the AHA convention, seen from the apex): basal ring outside, mid ring, apical ring inside (the
apex, segment 17, is not measured and left blank); anterior at the top, septum on the left, counter-clockwise
1 -> 6. Segment ``k`` of a six-segment ring spans ``[60 + 60 (k - 1), 120 + 60 (k - 1)]`` degrees of the figure
(0° pointing right), apical segment ``13 + k`` spans ``[45 + 90 k, 135 + 90 k]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Wedge

__all__ = ["bullseye_figure", "volume_curve_figure"]

_RINGS = {"basal": (2.0, 3.0), "mid": (1.0, 2.0), "apical": (0.35, 1.0)}
_NO_VALUE = "lightgrey"


def _segment_span(segment: int) -> tuple[str, float, float]:
    """Ring and angular span (degrees, figure frame) of AHA segment 1-16."""
    if segment <= 12:
        k = (segment - 1) % 6
        return ("basal" if segment <= 6 else "mid"), 60.0 + 60.0 * k, 120.0 + 60.0 * k
    k = segment - 13
    return "apical", 45.0 + 90.0 * k, 135.0 + 90.0 * k


def bullseye_figure(values_mm: Mapping[int, float | None], title: str = "") -> Figure:
    """A bull's-eye of one value per AHA segment (1-16) with a colour bar; segments without value are grey."""
    finite = [v for v in values_mm.values() if v is not None and math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if high - low < 1e-6:
        low, high = low - 0.5, high + 0.5
    norm = mpl.colors.Normalize(vmin=low, vmax=high)
    cmap = mpl.colormaps["viridis"]
    fig = Figure(figsize=(5.6, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for segment in range(1, 17):
        ring, start, end = _segment_span(segment)
        inner, outer = _RINGS[ring]
        value = values_mm.get(segment)
        has_value = value is not None and math.isfinite(value)
        colour = cmap(norm(value)) if has_value else _NO_VALUE
        ax.add_patch(Wedge((0, 0), outer, start, end, width=outer - inner, facecolor=colour, edgecolor="white", lw=1.5))
        middle = math.radians((start + end) / 2)
        radius = (inner + outer) / 2
        text = f"{value:.1f}" if has_value else "n/a"
        dark = has_value and norm(value) < 0.55  # viridis is dark at the low end: white text there
        ax.text(radius * math.cos(middle), radius * math.sin(middle), f"{segment}\n{text}", ha="center",
                va="center", fontsize=7.5, color="white" if dark else "black")
    ax.set_xlim(-3.2, 3.2)
    ax.set_ylim(-3.2, 3.45)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.text(0, 3.1, "anterior", ha="center", va="bottom", fontsize=8)
    ax.text(-3.1, 0, "septal", ha="right", va="center", fontsize=8, rotation=90)
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8, label="ED wall thickness (mm)")
    if title:
        ax.set_title(title)
    return fig


def volume_curve_figure(
    lv_ml: Sequence[float], rv_ml: Sequence[float], ed_index: int, es_index: int, title: str = ""
) -> Figure:
    """LV and RV cavity volume per frame (numbered from 1), with the ED and ES frames marked."""
    frames = np.arange(1, len(lv_ml) + 1)
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(frames, lv_ml, marker="o", markersize=3, label="LV cavity")
    ax.plot(frames, rv_ml, marker="s", markersize=3, label="RV cavity")
    for index, name, colour in ((ed_index, "ED", "tab:red"), (es_index, "ES", "tab:purple")):
        ax.axvline(index + 1, color=colour, linestyle="--", linewidth=1, label=f"{name} (frame {index + 1})")
    ax.set_xlabel("frame")
    ax.set_ylabel("volume (mL)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title)
    return fig
