"""Checking a datalist's image/label pairs before a run spends time on them.

A training or evaluation run reads its volumes inside a MONAI dataset, where a broken file becomes a traceback
after minutes of caching, or worse, trains silently on a label map that does not match its image. :func:`check_split`
reads every pair a run will use first and raises a one-line :class:`~pipelines.errors.InputError` naming the file
and the problem:

* the image: readable, one finite, non-constant 3D volume (:func:`pipelines.io.images.validate_nifti`);
* the label: readable, the image's shape, the image's affine within ``AFFINE_TOLERANCE_MM``, values in {0, 1}.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.data.datalist import split_items, split_name
from pipelines.errors import InputError
from pipelines.io.images import read_nifti, spatial_shape, validate_nifti

__all__ = ["AFFINE_TOLERANCE_MM", "LABEL_VALUES", "check_pair", "check_items", "check_split"]

logger = logging.getLogger(__name__)

AFFINE_TOLERANCE_MM = 1e-3  # NIfTI stores affines as float32: about 1e-5 mm of rounding for a 100 mm offset
LABEL_VALUES = (0, 1)  # background, myocardium


def check_pair(image: str | Path, label: str | Path, label_values: Sequence[int] | None = LABEL_VALUES) -> None:
    """Raise :class:`InputError` unless ``label`` is a valid label map for the valid image ``image``.

    Args:
        image: the image file.
        label: its label map.
        label_values: the values a label voxel may take; None for a target image (any value).

    Raises:
        InputError: naming ``image`` when it fails :func:`validate_nifti`, else naming ``label`` when it is
            unreadable, has another spatial shape, another affine (largest entry difference above
            ``AFFINE_TOLERANCE_MM``), or values outside ``label_values``.
    """
    image_header, _ = validate_nifti(image)
    label_header, voxels = read_nifti(label)
    image_shape, label_shape = spatial_shape(image_header.shape), spatial_shape(label_header.shape)
    if label_shape != image_shape:
        raise InputError(label, f"label shape {label_shape} differs from its image's {image_shape} ({image})")
    difference = float(np.abs(np.asarray(label_header.affine) - np.asarray(image_header.affine)).max())
    if not difference <= AFFINE_TOLERANCE_MM:  # also catches NaN
        raise InputError(label, f"label affine differs from its image's ({image}) by up to {difference:.4g} mm")
    if label_values is None:
        return
    values = np.unique(voxels)
    outside = values[~np.isin(values, label_values)]
    if outside.size:
        shown = ", ".join(f"{v:g}" for v in outside[:5]) + (", ..." if outside.size > 5 else "")
        allowed = ", ".join(str(v) for v in label_values)
        raise InputError(label, f"label values {{{shown}}} outside {{{allowed}}}")


def check_items(
    items: Iterable[Mapping[str, Any]],
    label_values: Sequence[int] | None = LABEL_VALUES,
    path_fields: Sequence[str] = ("image", "label"),
) -> int:
    """Check the ``image`` (and ``label``, when it is one of ``path_fields``) of every dataset item; return the
    number checked. Images that are not NIfTI (MedNIST's PNGs) are only required to exist, as
    :func:`~pipelines.data.datalist.split_items` already checked; a ``label`` outside ``path_fields`` is a class
    index, not a file."""
    count = 0
    for item in items:
        if "label" in item and "label" in path_fields:
            check_pair(item["image"], item["label"], label_values)
        elif str(item["image"]).endswith((".nii", ".nii.gz")):
            validate_nifti(item["image"])
        count += 1
    return count


def check_split(
    datalist: str | Path,
    split: str | int,
    subsets: Sequence[str],
    max_cases: int | None = None,
    label_values: Sequence[int] | None = LABEL_VALUES,
    path_fields: Sequence[str] = ("image", "label"),
) -> list[dict[str, Any]]:
    """Check the pairs of the ``subsets`` of ``split`` that a run will read (the first ``max_cases`` of each).

    Args:
        datalist: the datalist file or its folder.
        split: ``seed`` or a fold.
        subsets: e.g. ``("train", "validation")`` for training, ``("test",)`` for evaluation.
        max_cases: as given to the run.
        label_values: allowed label values (see :func:`check_pair`); None when the label is a target image.
        path_fields: the item fields that are file paths (``["image"]`` for a datalist of class labels).

    Returns:
        The checked items.

    Raises:
        InputError: the datalist is missing or broken, lists a missing file, or a pair fails :func:`check_pair`.
    """
    items = [
        item for subset in subsets
        for item in split_items(datalist, split, subset, max_cases, path_fields=path_fields)
    ]
    count = check_items(items, label_values, path_fields)
    logger.info("checked %d cases of split %s (%s)", count, split_name(split), ", ".join(subsets))
    return items

