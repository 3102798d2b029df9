"""All measures of one case from its ED and ES label frames (arrays in, plain dicts out; no files).

:func:`measure_frames` combines :mod:`~pipelines.measure.volumes` (volumes, EF, mass),
:mod:`~pipelines.measure.thickness` and :mod:`~pipelines.measure.aha` (ED wall thickness per slice and per AHA
segment) and :mod:`~pipelines.measure.qc` (flags). The result is what the case's JSON holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipelines.measure import aha
from pipelines.measure.basal import trim_basal_es_rv
from pipelines.measure.labels import LV, MYO, RV, UNLABELLED, unlabelled_slices
from pipelines.measure.qc import QC_RULES, flag, frame_flags, measure_flags, mid_slices
from pipelines.measure.thickness import epicardial_thickness
from pipelines.measure.volumes import chamber_volumes

__all__ = ["clean_frame", "wall_thickness", "measure_frames"]


def clean_frame(frame: np.ndarray, excluded: Sequence[int]) -> np.ndarray:
    """A copy of ``frame`` ``(x, y, z)`` with the unlabelled slices ``excluded`` (and any stray 255) set to 0."""
    cleaned = np.array(frame, dtype=np.uint8, copy=True)
    cleaned[..., list(excluded)] = 0
    cleaned[cleaned == UNLABELLED] = 0
    return cleaned


def _summary(values: np.ndarray) -> tuple[float | None, float | None]:
    return (float(values.mean()), float(values.max())) if values.size else (None, None)


def _centre(myo: np.ndarray, cavity: np.ndarray) -> np.ndarray:
    return np.argwhere(cavity if cavity.any() else myo).mean(axis=0)


def wall_thickness(ed: np.ndarray, spacing_mm: Sequence[float], affine: np.ndarray) -> dict[str, Any]:
    """ED wall thickness per slice and per AHA segment (methods: :mod:`~pipelines.measure.thickness`,
    :mod:`~pipelines.measure.aha`).

    Args:
        ed: the ED frame ``(x, y, z)``, unlabelled slices set to background.
        spacing_mm: the voxel size ``(dx, dy, dz)``.
        affine: the voxel-to-world affine (only the handedness of its 3 x 3 part is used).

    Returns:
        ``base_at`` (``low`` or ``high`` slice index), ``angle_sense``, ``anterior_insertion_deg`` (``theta_0``,
        None without contact), ``slices`` (per slice with myocardium: level, mean / max thickness in mm, number of
        epicardial points, the slice's own anterior and inferior insertion angles ``phi``), ``segments`` (1-16:
        name, mean / max mm, points; None where a segment got no point), ``mean_mm`` and ``max_mm`` over every
        epicardial point.
    """
    in_plane = (float(spacing_mm[0]), float(spacing_mm[1]))
    lv_area = np.count_nonzero((ed == MYO) | (ed == LV), axis=(0, 1))
    base_low = aha.base_at_low_index(lv_area)
    sense = aha.angle_sense(base_low, affine)
    myo_slices = [int(z) for z in np.flatnonzero(np.any(ed == MYO, axis=(0, 1)))]
    levels = aha.slice_levels(myo_slices, base_low)

    per_slice: dict[int, dict[str, Any]] = {}
    for z in myo_slices:
        myo, cavity, rv = ed[..., z] == MYO, ed[..., z] == LV, ed[..., z] == RV
        centre = _centre(myo, cavity)
        points, thickness = epicardial_thickness(myo, cavity, in_plane)
        per_slice[z] = {
            "centre": centre, "points": points, "thickness": thickness,
            "insertions": aha.rv_insertions_deg(myo, rv, centre, in_plane, sense),
        }
    mid_angles = [s["insertions"][0] for z, s in per_slice.items() if levels[z] == "mid" and s["insertions"]]
    all_angles = [s["insertions"][0] for s in per_slice.values() if s["insertions"]]
    origin = aha.circular_mean_deg(mid_angles or all_angles) if all_angles else None

    slices, by_segment = [], {k: [] for k in aha.SEGMENT_NAMES}
    for z, s in per_slice.items():
        mean_mm, max_mm = _summary(s["thickness"])
        slices.append({"slice": z, "level": levels[z], "mean_mm": mean_mm, "max_mm": max_mm,
                       "points": int(s["thickness"].size),
                       "anterior_insertion_deg": s["insertions"][0] if s["insertions"] else None,
                       "inferior_insertion_deg": s["insertions"][1] if s["insertions"] else None})
        if s["thickness"].size:
            phi = aha.point_angles_deg(s["points"], s["centre"], in_plane, sense)
            segments = aha.segment_of(levels[z], phi - (origin or 0.0))
            for k in np.unique(segments):
                by_segment[int(k)].append(s["thickness"][segments == k])
    segments_out = []
    for k, name in aha.SEGMENT_NAMES.items():
        values = np.concatenate(by_segment[k]) if by_segment[k] else np.zeros(0)
        mean_mm, max_mm = _summary(values)
        segments_out.append({"segment": k, "name": name, "mean_mm": mean_mm, "max_mm": max_mm,
                             "points": int(values.size)})
    everything = np.concatenate([s["thickness"] for s in per_slice.values()]) if per_slice else np.zeros(0)
    mean_mm, max_mm = _summary(everything)
    return {
        "base_at": "low" if base_low else "high",
        "angle_sense": sense,
        "anterior_insertion_deg": origin,
        "anterior_insertion_from": "mid slices" if mid_angles else ("all slices" if all_angles else None),
        "slices": slices,
        "segments": segments_out,
        "mean_mm": mean_mm,
        "max_mm": max_mm,
    }


def measure_frames(
    ed: np.ndarray,
    es: np.ndarray,
    spacing_mm: Sequence[float],
    affine: np.ndarray,
    excluded_ed: Sequence[int] | None = None,
    excluded_es: Sequence[int] | None = None,
    basal_rv_min_ratio: float | None = None,
) -> dict[str, Any]:
    """Volumes, EF, mass, ED wall thickness and QC flags of an ED / ES pair of frames.

    Args:
        ed: the ED labels ``(x, y, z)`` (255 allowed: see ``excluded_ed``).
        es: the ES labels on the same grid.
        spacing_mm: the voxel size ``(dx, dy, dz)`` in mm.
        affine: the voxel-to-world affine.
        excluded_ed: the unlabelled slices of the ED frame, left out of every measure (default: those holding 255,
            :func:`~pipelines.measure.labels.unlabelled_slices`).
        excluded_es: likewise for the ES frame.
        basal_rv_min_ratio: when given, the basal ES RV slice rule (:mod:`pipelines.measure.basal`) with this
            ratio is applied to the ES frame before anything is measured; ``None`` measures the labels as they are
            (reference labels).

    Returns:
        ``measures`` (the CSV row's numbers: :func:`~pipelines.measure.volumes.chamber_volumes` plus
        ``wall_thickness_mean_mm``, ``wall_thickness_max_mm``, ``lv_slices``), ``thickness``
        (:func:`wall_thickness`), ``qc_flags`` (list of ``{code, rule, detail}``), ``excluded_slices``,
        ``basal_rv_trim`` (the rule's record, ``None`` when not applied); ``measures["rv_basal_trimmed_ml"]`` is
        the RV volume the rule removed (``None`` when not applied).
    """
    dx, dy, dz = (float(s) for s in spacing_mm)
    excluded_ed = unlabelled_slices(ed) if excluded_ed is None else list(excluded_ed)
    excluded_es = unlabelled_slices(es) if excluded_es is None else list(excluded_es)
    ed = clean_frame(ed, excluded_ed)
    es = clean_frame(es, excluded_es)
    trim = None
    if basal_rv_min_ratio is not None:
        es, trim = trim_basal_es_rv(ed, es, dx * dy * dz / 1000.0, basal_rv_min_ratio)
    measures: dict[str, Any] = chamber_volumes(ed, es, dx * dy * dz / 1000.0)
    measures["rv_basal_trimmed_ml"] = None if trim is None else trim["removed_ml"]
    thickness = wall_thickness(ed, (dx, dy, dz), affine)
    measures["wall_thickness_mean_mm"] = thickness["mean_mm"]
    measures["wall_thickness_max_mm"] = thickness["max_mm"]
    measures["lv_slices"] = int(np.count_nonzero(np.any(ed == LV, axis=(0, 1))))

    flags = []
    if excluded_ed or excluded_es:
        flags.append(flag("excluded_slices", f"unlabelled slices: ED {list(excluded_ed)}, ES {list(excluded_es)}"))
    if measures["lv_slices"] < 3:
        flags.append(flag("few_lv_slices", f"{measures['lv_slices']} ED slices hold LV cavity"))
    flags += frame_flags(ed, "ED", excluded_ed) + frame_flags(es, "ES", excluded_es)
    flags += measure_flags(measures)
    missing_rv = [name for name, frame in (("ED", ed), ("ES", es)) if not np.any(frame == RV)]
    if missing_rv:
        flags.append(flag("rv_missing", f"no RV cavity in {' and '.join(missing_rv)}"))
    if thickness["anterior_insertion_deg"] is None:
        flags.append(flag("no_rv_insertion", "no ED slice has RV-myocardium contact"))
    return {
        "measures": measures,
        "thickness": thickness,
        "mid_slices": {"ED": mid_slices(ed, excluded_ed), "ES": mid_slices(es, excluded_es)},
        "qc_flags": _ordered(flags),
        "excluded_slices": {"ED": list(excluded_ed), "ES": list(excluded_es)},
        "basal_rv_trim": trim,
    }


def _ordered(flags: list[dict[str, str]]) -> list[dict[str, str]]:
    """``flags`` in the order of :data:`~pipelines.measure.qc.QC_RULES` (stable CSV cells)."""
    order = {code: i for i, code in enumerate(QC_RULES)}
    return sorted(flags, key=lambda f: order[f["code"]])
