"""Refusing images a bundle was not trained for, before anything is written.

The 64x64 Sunnybrook-crop bundles see a crop centred on the left ventricle at about 3 mm; on a full-field scan
(256x256 or larger at 1.2-1.8 mm, the heart somewhere in it) they return a confident, wrong mask. A bundle declares
the grid it accepts in its inference config as ``input_grid``::

    "input_grid": {"max_inplane_size": 96, "inplane_spacing_mm": [2.0, 4.5], "use_instead": "cardiac_sax_segmentation"}

and :func:`check_input_grid` refuses any other image with a one-line :class:`~pipelines.errors.InputError`
naming the file, what is wrong with it and which bundle to use instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib

from pipelines.errors import InputError

__all__ = ["check_input_grid"]


def check_input_grid(nifti: str | Path, source: str | Path, grid: Mapping[str, Any] | None) -> None:
    """Raise unless the in-plane size and spacing of the NIfTI file ``nifti`` fit ``grid``.

    Args:
        nifti: the image as the bundle will read it (in-plane axes 0 and 1).
        source: what the user gave (file or DICOM folder), named in the error.
        grid: ``max_inplane_size`` (pixels, either axis), ``inplane_spacing_mm`` ([low, high], either axis) and
            ``use_instead`` (a bundle name for the message); ``None`` or empty accepts everything.

    Raises:
        InputError: the image is larger than ``max_inplane_size`` or its spacing is outside the range.
    """
    if not grid:
        return
    header = nib.load(nifti).header
    size = tuple(int(s) for s in header.get_data_shape()[:2])
    spacing = tuple(float(z) for z in header.get_zooms()[:2])
    problems = []
    max_size = grid.get("max_inplane_size")
    if max_size is not None and max(size) > int(max_size):
        problems.append(f"{size[0]}x{size[1]} pixels in-plane (this bundle takes crops of at most {max_size})")
    spacing_range: Sequence[float] | None = grid.get("inplane_spacing_mm")
    if spacing_range is not None:
        low, high = (float(v) for v in spacing_range)
        if not all(low <= s <= high for s in spacing):
            shown = "x".join(f"{s:.2f}" for s in spacing)
            problems.append(f"{shown} mm pixels (this bundle takes {low:g}-{high:g} mm)")
    if problems:
        instead = grid.get("use_instead")
        hint = f"; for a full-field short-axis scan use {instead}" if instead else ""
        raise InputError(source, "not the kind of image this bundle was trained on: " + ", ".join(problems) + hint)
