"""Reading and checking cardiac label maps (ACDC convention) for :mod:`pipelines.measure`.

Labels: 0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity, 255 "this slice is not labelled". A slice (a
position along z, the short-axis stacking axis, of one frame) holding any 255 voxel is *unlabelled*: it is set to
background for every measure and reported in the case's JSON (``excluded_slices``) and by the QC flag
``excluded_slices``.

A label map is refused with a one-line :class:`~pipelines.errors.InputError` naming the file when it is unreadable,
has the wrong number of dimensions, holds values outside {0, 1, 2, 3, 255}, or has a voxel size that cannot be
trusted: a zero or non-finite zoom (as stored in the file), or zooms of exactly 1 x 1 x 1 with no spatial unit in
the header (what a header rebuilt from a bare array looks like; measuring it would give volumes in "voxels").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel.openers import ImageOpener
from nibabel.spatialimages import HeaderDataError

from pipelines.errors import InputError
from pipelines.io.images import read_nifti, spatial_shape

__all__ = [
    "BACKGROUND", "RV", "MYO", "LV", "UNLABELLED", "VALID_LABELS", "LabelMap", "load_labels", "check_same_grid",
    "unlabelled_slices",
]

BACKGROUND, RV, MYO, LV = 0, 1, 2, 3
UNLABELLED = 255
VALID_LABELS = (BACKGROUND, RV, MYO, LV, UNLABELLED)
# NIfTI stores affines as float32: about 1e-5 mm of rounding for a 100 mm offset (as pipelines.data.validate)
AFFINE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class LabelMap:
    """A checked label map.

    Args:
        path: the file it was read from (named in messages).
        labels: the labels, ``uint8``, shape ``(x, y, z)`` or ``(x, y, z, t)``, 255 still in place.
        spacing_mm: the voxel size ``(dx, dy, dz)`` in mm from the header's zooms.
        affine: the voxel-to-world affine (4 x 4).
    """

    path: Path
    labels: np.ndarray
    spacing_mm: tuple[float, float, float]
    affine: np.ndarray

    @property
    def voxel_volume_ml(self) -> float:
        """``dx * dy * dz / 1000`` (mm^3 to mL)."""
        dx, dy, dz = self.spacing_mm
        return dx * dy * dz / 1000.0


def load_labels(path: str | Path, ndim: int) -> LabelMap:
    """Read and check the label map at ``path``, a 3D frame (``ndim=3``) or a 4D cine (``ndim=4``).

    Trailing singleton dimensions beyond the third are dropped: ``(x, y, z, 1)`` is a 3D frame, not a cine.

    Raises:
        InputError: naming ``path``, for an unreadable file, another number of dimensions, label values outside
            {0, 1, 2, 3, 255}, or an untrustworthy voxel size (see the module docstring).
    """
    path = Path(path)
    image, voxels = read_nifti(path)
    shape = tuple(int(n) for n in voxels.shape)
    spatial = spatial_shape(shape)
    if len(spatial) != ndim or 0 in spatial:
        kind = "a 3D frame (x, y, z)" if ndim == 3 else "a 4D cine (x, y, z, t)"
        raise InputError(path, f"label map of shape {shape}; expected {kind}")
    voxels = np.asarray(voxels).reshape(spatial)
    values = np.unique(voxels)
    bad = values[~np.isin(values, VALID_LABELS)]
    if bad.size:
        shown = ", ".join(f"{v:g}" for v in bad[:5].astype(float)) + (", ..." if bad.size > 5 else "")
        raise InputError(path, f"label values outside {{0, 1, 2, 3, 255}}: {shown}")
    return LabelMap(path, voxels.astype(np.uint8), _spacing_mm(path, image), np.asarray(image.affine, float))


def _stored_zooms(path: Path, header: object) -> tuple[float, ...]:
    """The voxel size as stored in the file: nibabel's reader replaces a zero ``pixdim`` by 1 (``check_fix``),
    which would turn a header that lost its spacing into a plausible-looking 1 mm."""
    try:
        with ImageOpener(path) as stream:
            raw = type(header).from_fileobj(stream, check=False)  # type: ignore[attr-defined]
        return tuple(float(z) for z in raw["pixdim"][1:4])
    except (AttributeError, KeyError, OSError, ValueError, HeaderDataError):  # not a NIfTI header: trust nibabel
        return tuple(float(z) for z in header.get_zooms()[:3])  # type: ignore[attr-defined]


def _spacing_mm(path: Path, image: object) -> tuple[float, float, float]:
    header = image.header  # type: ignore[attr-defined]
    zooms = tuple(float(z) for z in header.get_zooms()[:3])
    stored = _stored_zooms(path, header)
    # a negative pixdim is a sign convention nibabel reads as its absolute value; zero or NaN is no size at all
    if len(zooms) < 3 or not all(np.isfinite(z) and z != 0 for z in (*zooms, *stored)):
        shown = " x ".join(f"{z:g}" for z in stored)
        raise InputError(path, f"voxel size {shown} in the header is not usable (zero or not finite)")
    unit = header.get_xyzt_units()[0] if hasattr(header, "get_xyzt_units") else "unknown"
    if zooms == (1.0, 1.0, 1.0) and unit == "unknown":
        raise InputError(path, "voxel size 1 x 1 x 1 with no spatial unit: the header seems to have lost the spacing")
    scale = {"meter": 1000.0, "micron": 0.001}.get(unit, 1.0)  # mm and unknown are taken as mm
    return (zooms[0] * scale, zooms[1] * scale, zooms[2] * scale)


def check_same_grid(reference: LabelMap, other: LabelMap) -> None:
    """Raise :class:`InputError` naming ``other`` unless its spatial shape and affine are ``reference``'s."""
    if reference.labels.shape[:3] != other.labels.shape[:3]:
        shapes = f"{other.labels.shape[:3]} differs from {reference.path.name}'s {reference.labels.shape[:3]}"
        raise InputError(other.path, f"grid {shapes}")
    if not np.allclose(reference.affine, other.affine, atol=AFFINE_TOLERANCE_MM, rtol=0):
        raise InputError(other.path, f"affine (voxel position / spacing) differs from {reference.path.name}'s")


def unlabelled_slices(labels: np.ndarray) -> list[int]:
    """The z indices of a 3D frame ``(x, y, z)`` holding any 255 (unlabelled) voxel."""
    return [int(z) for z in np.flatnonzero(np.any(labels == UNLABELLED, axis=(0, 1)))]
