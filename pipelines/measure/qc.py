"""Quality-control flags of a measured case: documented rules, each with a short stable code.

The *LV span* of a frame is the run of slices from the first to the last labelled slice holding LV myocardium or
cavity; its *mid-ventricular slices* are the middle third of that run (``numpy.array_split`` of the run into three).
Unlabelled slices (255) are never checked and are taken out of the stack before connected components are counted.

=================  ========================================================================================
code               rule
=================  ========================================================================================
excluded_slices    some slices held label 255 (unlabelled) and were left out of every measure
few_lv_slices      fewer than 3 slices of the ED frame hold LV cavity
lv_missing_mid     a mid-ventricular slice of the ED or ES frame lacks LV cavity or LV myocardium
myo_not_closed     on a mid-ventricular slice of the ED or ES frame the LV cavity has a 4-neighbour that is
                   background or RV: the myocardium does not enclose the cavity
disconnected       a structure (RV, LV myocardium, LV cavity) of the ED or ES frame has more than one 3D
                   connected component (26-connectivity) of at least max(10 voxels, 5 % of the structure)
ed_lt_es           LV EDV <= LV ESV
lvef_range         LVEF outside 10-85 %
lvedv_range        LV EDV outside 40-400 mL
lv_mass_range      LV mass outside 40-350 g
rvef_range         RVEF outside 15-85 % (checked only when the RV is present in both frames)
rv_missing         no RV cavity in the ED or the ES frame
no_rv_insertion    no ED slice has RV-myocardium contact: the AHA segments are measured from the array's
                   axis 0 and are not anatomical
empty_frames       (cine) some frames hold no LV cavity; they were left out of the choice of ED and ES
=================  ========================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from pipelines.measure.labels import LV, MYO, RV

__all__ = ["QC_RULES", "RANGES", "flag", "frame_flags", "measure_flags", "mid_slices"]

QC_RULES: dict[str, str] = {
    "excluded_slices": "some slices held label 255 (unlabelled) and were left out of every measure",
    "few_lv_slices": "fewer than 3 slices of the ED frame hold LV cavity",
    "lv_missing_mid": "a mid-ventricular slice of the ED or ES frame lacks LV cavity or LV myocardium",
    "myo_not_closed": "on a mid-ventricular slice the LV cavity touches background or RV (myocardium not closed)",
    "disconnected": "a structure has more than one 3D connected component of at least max(10 voxels, 5 %)",
    "ed_lt_es": "LV EDV <= LV ESV",
    "lvef_range": "LVEF outside 10-85 %",
    "lvedv_range": "LV EDV outside 40-400 mL",
    "lv_mass_range": "LV mass outside 40-350 g",
    "rvef_range": "RVEF outside 15-85 %",
    "rv_missing": "no RV cavity in the ED or the ES frame",
    "no_rv_insertion": "no ED slice has RV-myocardium contact: AHA segments are not anatomical",
    "empty_frames": "some cine frames hold no LV cavity and were left out of the choice of ED and ES",
}
# measure -> (code, low, high): physiological ranges for an adult
RANGES: dict[str, tuple[str, float, float]] = {
    "lv_ef_pct": ("lvef_range", 10.0, 85.0),
    "lv_edv_ml": ("lvedv_range", 40.0, 400.0),
    "lv_mass_g": ("lv_mass_range", 40.0, 350.0),
    "rv_ef_pct": ("rvef_range", 15.0, 85.0),
}
MIN_LV_SLICES = 3
_MIN_COMPONENT_VOXELS = 10
# ACDC's expert labels have second components of up to 3.6 % (an apical slice shifted off the others)
_MIN_COMPONENT_FRACTION = 0.05
_STRUCTURES = {RV: "RV", MYO: "LV myocardium", LV: "LV cavity"}
_CROSS = ndimage.generate_binary_structure(2, 1)
_CUBE = ndimage.generate_binary_structure(3, 3)


def flag(code: str, detail: str) -> dict[str, str]:
    """One flag as written to the case's JSON: its code, its rule (:data:`QC_RULES`) and what fired it."""
    return {"code": code, "rule": QC_RULES[code], "detail": detail}


def mid_slices(frame: np.ndarray, excluded: Sequence[int] = ()) -> list[int]:
    """The mid-ventricular slices of a frame ``(x, y, z)`` (module docstring), unlabelled ones left out."""
    has_lv = np.any((frame == MYO) | (frame == LV), axis=(0, 1))
    has_lv[list(excluded)] = False
    present = np.flatnonzero(has_lv)
    if present.size == 0:
        return []
    run = np.arange(present[0], present[-1] + 1)
    return [int(z) for z in np.array_split(run, 3)[1] if int(z) not in set(excluded)]


def frame_flags(frame: np.ndarray, name: str, excluded: Sequence[int] = ()) -> list[dict[str, str]]:
    """The flags of one frame: ``lv_missing_mid``, ``myo_not_closed``, ``disconnected``.

    Args:
        frame: the labels ``(x, y, z)``, unlabelled slices set to background.
        name: ``ED`` or ``ES``, named in the details.
        excluded: the unlabelled slices.
    """
    flags = []
    mid = mid_slices(frame, excluded)
    missing = [z for z in mid if not (np.any(frame[..., z] == LV) and np.any(frame[..., z] == MYO))]
    if missing:
        flags.append(flag("lv_missing_mid", f"{name} slices {missing} lack LV cavity or myocardium"))
    open_slices = []
    for z in mid:
        cavity = frame[..., z] == LV
        if cavity.any():
            ring = ndimage.binary_dilation(cavity, structure=_CROSS) & ~cavity
            if np.any(np.isin(frame[..., z][ring], (0, RV))):
                open_slices.append(z)
    if open_slices:
        flags.append(flag("myo_not_closed", f"{name} slices {open_slices}: LV cavity touches background or RV"))
    stack = np.delete(frame, list(excluded), axis=2) if excluded else frame
    for label, structure in _STRUCTURES.items():
        mask = stack == label
        total = int(mask.sum())
        if total == 0:
            continue
        components, count = ndimage.label(mask, structure=_CUBE)
        if count < 2:
            continue
        sizes = np.bincount(components.ravel())[1:]
        large = int(np.sum(sizes >= max(_MIN_COMPONENT_VOXELS, _MIN_COMPONENT_FRACTION * total)))
        if large > 1:
            largest = [int(n) for n in sorted(sizes, reverse=True)[:4]]
            flags.append(flag("disconnected", f"{name} {structure}: {large} components (largest {largest} voxels)"))
    return flags


def measure_flags(measures: Mapping[str, float]) -> list[dict[str, str]]:
    """``ed_lt_es`` and the physiological-range flags of the case's measures (NaN measures are not checked)."""
    flags = []
    if measures["lv_edv_ml"] <= measures["lv_esv_ml"]:
        flags.append(flag("ed_lt_es", f"LV EDV {measures['lv_edv_ml']:.1f} mL <= ESV {measures['lv_esv_ml']:.1f} mL"))
    for name, (code, low, high) in RANGES.items():
        value = measures[name]
        if code == "rvef_range" and (measures["rv_edv_ml"] == 0 or measures["rv_esv_ml"] == 0):
            continue
        if math.isfinite(value) and not low <= value <= high:
            flags.append(flag(code, f"{name} = {value:.1f} outside {low:g}-{high:g}"))
    return flags
