"""Myocardial wall thickness of one short-axis slice, by a distance transform, in mm.

Method (per slice, in-plane only, voxel size ``(dx, dy)`` mm along the array's axes 0 and 1):

- the LV is ``L = myocardium ∪ cavity``; the *epicardial points* are the myocardium voxels with a 4-neighbour
  outside ``L`` (background, RV, or the image edge): ``E = myo ∖ erode(L)``;
- ``D(p) = min_{q ∈ cavity} sqrt(((p_0 - q_0) dx)^2 + ((p_1 - q_1) dy)^2)``, the Euclidean distance in mm from a
  voxel centre to the nearest LV cavity voxel centre (``scipy.ndimage.distance_transform_edt`` of the cavity's
  complement with ``sampling=(dx, dy)``);
- the wall thickness at an epicardial point ``p ∈ E`` is ``T(p) = D(p)``.

Because both ends are voxel centres, a wall ``k`` voxels thick along an axis measures ``k * dx``: for a ring between
radii ``r1`` and ``r2`` the result is ``r2 - r1`` to within a voxel. A slice without cavity (an apical cap) has no
defined thickness and yields no points. Myocardium far from the cavity (a stray island) measures as thick as its
distance: the ``disconnected`` QC flag reports such islands.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["epicardial_thickness"]

_CROSS = ndimage.generate_binary_structure(2, 1)


def epicardial_thickness(
    myo: np.ndarray, cavity: np.ndarray, spacing_mm: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The epicardial points of a slice and the wall thickness at each.

    Args:
        myo: the LV myocardium of the slice, 2D boolean.
        cavity: the LV cavity of the slice, 2D boolean.
        spacing_mm: the in-plane voxel size ``(dx, dy)`` along axes 0 and 1.

    Returns:
        ``(points, thickness_mm)``: the epicardial voxel indices, shape ``(n, 2)``, and ``T`` at each, shape
        ``(n,)``; both empty when the slice has no myocardium or no cavity.
    """
    myo = np.asarray(myo, bool)
    cavity = np.asarray(cavity, bool)
    if not myo.any() or not cavity.any():
        return np.zeros((0, 2), dtype=int), np.zeros(0)
    lv = myo | cavity
    epicardium = myo & ~ndimage.binary_erosion(lv, structure=_CROSS, border_value=0)
    distance = ndimage.distance_transform_edt(~cavity, sampling=spacing_mm)
    points = np.argwhere(epicardium)
    return points, distance[epicardium].astype(float)
