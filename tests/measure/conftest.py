"""Synthetic short-axis phantoms for :mod:`pipelines.measure`: an LV ring (myocardium between radii r1 and r2 mm,
cavity inside r1) over ``h`` slices, with an RV disc pressed against its septal side, on an anisotropic grid.

The analytic volumes are ``pi r1^2 h dz`` (LV cavity) and ``pi (r2^2 - r1^2) h dz`` (myocardium); the voxel counts
approach them to within the pixelation of the circles.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SHAPE = (64, 72, 11)  # 9 LV slices (1..9) with an empty slice above and below
SPACING = (1.25, 1.5, 8.0)  # anisotropic in-plane, ACDC-like slice gap
CENTRE_MM = (40.0, 54.0)  # LV centre (axis 0, axis 1) in mm from the voxel at index 0
LV_SLICES = range(1, 10)
ED_RADII = (15.0, 22.0)  # wall 7 mm
ES_RADII = (10.0, 18.0)


def ring_frame(
    r1: float, r2: float, rv_radius: float = 12.0, rv_offset: float = 30.0, slices: range = LV_SLICES
) -> np.ndarray:
    """One frame: LV cavity ``d < r1``, myocardium ``r1 <= d < r2``, and an RV disc of ``rv_radius`` mm whose
    centre is ``rv_offset`` mm from the LV centre towards low axis-0 indices, outside the LV (``d >= r2``)."""
    i, j = np.meshgrid(np.arange(SHAPE[0]) * SPACING[0], np.arange(SHAPE[1]) * SPACING[1], indexing="ij")
    d = np.hypot(i - CENTRE_MM[0], j - CENTRE_MM[1])
    d_rv = np.hypot(i - (CENTRE_MM[0] - rv_offset), j - CENTRE_MM[1])
    plane = np.zeros(SHAPE[:2], np.uint8)
    plane[(d_rv < rv_radius) & (d >= r2)] = 1
    plane[(d >= r1) & (d < r2)] = 2
    plane[d < r1] = 3
    frame = np.zeros(SHAPE, np.uint8)
    frame[..., list(slices)] = plane[..., None]
    return frame


def clean_pair() -> tuple[np.ndarray, np.ndarray]:
    """ED and ES frames of a healthy-looking phantom (LVEF about 56 %, LVEDV about 51 mL, mass about 62 g)."""
    return ring_frame(*ED_RADII), ring_frame(*ES_RADII, rv_radius=9.0, rv_offset=26.0)


def save_labels(path: Path, labels: np.ndarray, spacing: tuple[float, ...] = SPACING) -> Path:
    """Write ``labels`` as NIfTI with a diagonal affine of ``spacing`` (mm units)."""
    image = nib.Nifti1Image(labels, np.diag([*spacing[:3], 1.0]))
    image.header.set_xyzt_units("mm", "sec")
    if len(spacing) > 3:
        image.header.set_zooms(spacing)
    nib.save(image, path)
    return path


@pytest.fixture
def pair_files(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """``make(ed, es, name)`` writes ``<name>_ed.nii.gz`` and ``<name>_es.nii.gz`` (default: the clean pair)."""

    def make(ed: np.ndarray | None = None, es: np.ndarray | None = None, name: str = "phantom",
             folder: Path | None = None) -> tuple[Path, Path]:
        clean_ed, clean_es = clean_pair()
        folder = folder or tmp_path / "inputs"
        folder.mkdir(parents=True, exist_ok=True)
        ed_path = save_labels(folder / f"{name}_ed.nii.gz", clean_ed if ed is None else ed)
        es_path = save_labels(folder / f"{name}_es.nii.gz", clean_es if es is None else es)
        return ed_path, es_path

    return make


CINE_RADII = (15.0, 17.0, 19.0, 16.0, 12.0, 10.0, 13.0)  # ED = frame 3, ES = frame 6 (1-based)


def cine_labels() -> np.ndarray:
    """A 7-frame cine whose cavity radius follows :data:`CINE_RADII` with a 7 mm wall."""
    return np.stack([ring_frame(r, r + 7.0) for r in CINE_RADII], axis=-1)


@pytest.fixture
def ph() -> ModuleType:
    """This module (phantom builders and constants), for tests: ``ph.ring_frame(...)``, ``ph.SPACING``."""
    return sys.modules[__name__]
