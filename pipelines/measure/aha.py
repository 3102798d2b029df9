"""The AHA 16-segment model on a short-axis label stack: base vs apex, levels, RV insertion, segments.

Conventions (also in ``docs/measure.md``):

- **Base vs apex.** The LV (myocardium + cavity) is wider at the base. With ``A_z`` the LV area of labelled slice
  ``z`` and ``z_first .. z_last`` the slices holding LV, the base is at the low-index end when the area-weighted mean
  index ``sum(z A_z) / sum(A_z)`` is at most ``(z_first + z_last) / 2`` (a tie, e.g. a cylinder, counts as base at
  low index, as in ACDC), else at the high-index end.
- **Levels.** The ED slices holding LV myocardium, ordered from base to apex, are split into three runs as equal as
  possible (``numpy.array_split``: the basal, then the mid run get the extra slice): basal, mid, apical.
- **Angles.** In a slice, a point's angle ``phi`` is taken about the LV cavity centroid (the myocardium's where there
  is no cavity), in mm, counter-clockwise as *seen from the apex looking towards the base* (the standard short-axis
  view: anterior up, septum left), assuming the voxel frame has the handedness of its affine. With the array axes 0
  and 1 as x and y, ``phi = atan2(s * dy_mm, dx_mm)`` where ``s = +1`` when the apex is at high z, ``-1`` otherwise,
  and ``s`` is negated when ``det(affine[:3, :3]) < 0``. (ACDC's headers kept no orientation: for an image mirrored
  without its affine saying so, anterior and inferior swap, roughly segments 1-4, 2-3, 5-6 and likewise mid and
  apical; septal and lateral stay, being found from the RV.)
- **RV insertion.** Per slice, the *contact points* are the myocardium voxels within ``1.5 * max(dx, dy)`` mm of the
  RV cavity. Their angles cover an arc (the complement of the largest angular gap between them); the arc runs
  counter-clockwise over the septum from the *anterior insertion* (its start) to the inferior one (its end; reported
  per slice, not used: the AHA sectors are 60° wide whatever the septum's width). The
  origin ``theta_0`` is the circular mean of the anterior insertion angles of the mid-level slices with contact
  (all slices with contact if no mid slice has any; 0 if none has: QC flag ``no_rv_insertion``).
- **Segments.** With ``theta = (phi - theta_0) mod 360``: basal and mid slices have six 60° sectors from the anterior
  insertion: ``[0, 60)`` anteroseptal (2 / 8), ``[60, 120)`` inferoseptal (3 / 9), ``[120, 180)`` inferior (4 / 10),
  ``[180, 240)`` inferolateral (5 / 11), ``[240, 300)`` anterolateral (6 / 12), ``[300, 360)`` anterior (1 / 7);
  apical slices four 90° sectors centred on the septum (``theta = 60``): ``[15, 105)`` septal (14), ``[105, 195)``
  inferior (15), ``[195, 285)`` lateral (16), ``[285, 375)`` anterior (13).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["SEGMENT_NAMES", "LEVELS", "base_at_low_index", "slice_levels", "angle_sense", "point_angles_deg",
           "rv_insertions_deg", "circular_mean_deg", "segment_of"]

LEVELS = ("basal", "mid", "apical")
SEGMENT_NAMES = {
    1: "basal anterior", 2: "basal anteroseptal", 3: "basal inferoseptal", 4: "basal inferior",
    5: "basal inferolateral", 6: "basal anterolateral", 7: "mid anterior", 8: "mid anteroseptal",
    9: "mid inferoseptal", 10: "mid inferior", 11: "mid inferolateral", 12: "mid anterolateral",
    13: "apical anterior", 14: "apical septal", 15: "apical inferior", 16: "apical lateral",
}
# sector k (60° wide from the anterior insertion) -> segment number at the basal level; mid adds 6
_SIX_SECTORS = (2, 3, 4, 5, 6, 1)
# sector k (90° wide from theta = 15°) -> apical segment number
_FOUR_SECTORS = (14, 15, 16, 13)
_APICAL_START_DEG = 15.0
_CONTACT_VOXELS = 1.5


def base_at_low_index(lv_area: np.ndarray) -> bool:
    """Whether the base is at the low-index end of the stack, from the LV area per slice (see the module docstring)."""
    area = np.asarray(lv_area, dtype=float)
    present = np.flatnonzero(area > 0)
    if present.size == 0:
        return True
    weighted_mean = float(np.sum(np.arange(area.size) * area) / np.sum(area))
    return weighted_mean <= (present[0] + present[-1]) / 2.0


def slice_levels(slices: list[int], base_low: bool) -> dict[int, str]:
    """Each slice of ``slices`` (those holding LV myocardium) -> ``basal``, ``mid`` or ``apical``."""
    ordered = sorted(slices, reverse=not base_low)
    levels: dict[int, str] = {}
    for level, run in zip(LEVELS, np.array_split(np.array(ordered, dtype=int), 3)):
        levels.update({int(z): level for z in run})
    return levels


def angle_sense(base_low: bool, affine: np.ndarray) -> int:
    """``s`` of the module docstring: +1 or -1."""
    sense = 1 if base_low else -1
    if np.linalg.det(np.asarray(affine, float)[:3, :3]) < 0:
        sense = -sense
    return sense


def point_angles_deg(
    points: np.ndarray, centre: np.ndarray, spacing_mm: tuple[float, float], sense: int
) -> np.ndarray:
    """``phi`` in ``[0, 360)`` of voxel ``points`` ``(n, 2)`` about ``centre`` (voxel coordinates)."""
    offset = (np.asarray(points, float) - np.asarray(centre, float)) * np.asarray(spacing_mm, float)
    return np.degrees(np.arctan2(sense * offset[:, 1], offset[:, 0])) % 360.0


def rv_insertions_deg(
    myo: np.ndarray, rv: np.ndarray, centre: np.ndarray, spacing_mm: tuple[float, float], sense: int
) -> tuple[float, float] | None:
    """``phi`` of the anterior and the inferior RV insertion in one slice (the start and the end of the contact
    arc), or None without RV-myocardium contact."""
    if not myo.any() or not rv.any():
        return None
    distance = ndimage.distance_transform_edt(~rv, sampling=spacing_mm)
    contact = myo & (distance <= _CONTACT_VOXELS * max(spacing_mm))
    if not contact.any():
        return None
    angles = np.sort(point_angles_deg(np.argwhere(contact), centre, spacing_mm, sense))
    gaps = np.diff(np.append(angles, angles[0] + 360.0))  # gaps[i]: from angles[i] to the next one
    largest = int(np.argmax(gaps))
    # the arc starts after the largest gap and ends where the gap begins
    return float(angles[(largest + 1) % angles.size]), float(angles[largest])


def circular_mean_deg(angles: list[float]) -> float:
    """The circular mean of ``angles`` (degrees) in ``[0, 360)``."""
    radians = np.radians(np.asarray(angles, float))
    return float(math.degrees(math.atan2(np.sin(radians).mean(), np.cos(radians).mean())) % 360.0)


def segment_of(level: str, theta_deg: np.ndarray) -> np.ndarray:
    """AHA segment numbers (1-16) of angles ``theta`` (from the anterior insertion) at ``level``."""
    theta = np.asarray(theta_deg, float) % 360.0
    if level == "apical":
        sector = (((theta - _APICAL_START_DEG) % 360.0) // 90.0).astype(int)
        return np.array(_FOUR_SECTORS)[np.minimum(sector, 3)]
    sector = (theta // 60.0).astype(int)
    return np.array(_SIX_SECTORS)[np.minimum(sector, 5)] + (6 if level == "mid" else 0)
