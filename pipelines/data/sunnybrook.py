"""Sunnybrook Cardiac Data (left-ventricle myocardium) -> one NIfTI image + label per patient, and a datalist.

Source: ``scd_lvsegs.npz`` (Radau et al., "Evaluation Framework for Algorithms Segmenting Short Axis Cardiac MRI",
The MIDAS Journal, 2009), as published in the VPH summer school 2019 material. Run:
``pipelines data sunnybrook --output DIR``.

Geometry. The npz holds 64x64 crops centred on the myocardium, downsampled from the scanner grid by an unrecorded
factor of about 2-2.5. We write the slices of each patient stacked along the third axis, with array axes
(row, column, slice) and the affine ``diag(s, s, dz)``:

* ``s`` (in-plane spacing) is a *nominal* 3.0 mm by default (``--spacing-mm``): the scanner's 1.2-1.4 mm times the
  downsampling factor, consistent with a typical myocardial wall of ~4 pixels (~12 mm at end-diastole is too thick,
  ~3 pixels x 3 mm = 9-10 mm is textbook). Distances are therefore reported both in millimetres and in pixels.
* ``dz`` is the scanner's slice spacing from ``caseVoxelSize`` (8-10 mm).

Splits (all by patient, stratified by diagnostic group ``caseCat``): 5 folds; for each fold the other four folds
train, minus a small stratified validation subset used only to pick the best checkpoint. The seed notebook's fixed
split (the last 6 patients as test) is recorded as the split ``seed``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from pipelines.data.datalist import datalist_target
from pipelines.data.npz import load_arrays
from pipelines.data.sources import DatasetSource, resolve_source
from pipelines.data.splits import split_cases, stratified_folds
from pipelines.errors import InputError
from pipelines.io.atomic import atomic_path, atomic_write_json

logger = logging.getLogger(__name__)

SOURCE = DatasetSource(
    filename="scd_lvsegs.npz",
    url="https://github.com/ericspod/VPHSummerSchool2019/raw/master/scd_lvsegs.npz",
    sha256="5d8509eb1ef937e6e41fb2b1dd7c863cdd398f1a9a7b83c107fe26e9f7ae3ade",
)
CATEGORY_NAMES = {0: "normal", 1: "heart failure A", 2: "heart failure B", 3: "hypertrophy"}
REQUIRED_ARRAYS = ("images", "segs", "caseIndices", "caseCat", "caseVoxelSize")
DEFAULT_SPACING_MM = 3.0


def case_id(index: int) -> str:
    """The case id of the ``index``-th patient in the npz (order of ``caseIndices``)."""
    return f"scd_{index:03d}"


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Load the npz and check the arrays this converter needs; raise :class:`InputError` otherwise."""
    arrays = load_arrays(path, REQUIRED_ARRAYS, "scd_lvsegs.npz")
    if arrays["images"].shape != arrays["segs"].shape or arrays["images"].ndim != 3:
        raise InputError(path, f"images {arrays['images'].shape} and segs {arrays['segs'].shape} do not match")
    return arrays


def volume_affine(spacing_mm: float, slice_spacing_mm: float) -> np.ndarray:
    """The NIfTI affine of a converted volume: ``diag(s, s, dz, 1)`` with the origin at 0."""
    return np.diag([spacing_mm, spacing_mm, slice_spacing_mm, 1.0])


def write_volume(array: np.ndarray, affine: np.ndarray, path: Path, dtype: type, overwrite: bool) -> None:
    """Write ``array`` as ``dtype`` NIfTI with ``affine`` as qform and sform (scanner-anatomical, mm), atomically."""
    image = nib.Nifti1Image(array.astype(dtype), affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)  # scanner-anatomical
    image.set_sform(affine, code=1)
    with atomic_path(path, overwrite=overwrite, suffix=".nii.gz") as tmp:
        nib.save(image, tmp)


def convert(
    npz_path: str | Path,
    output_dir: str | Path,
    spacing_mm: float = DEFAULT_SPACING_MM,
    n_folds: int = 5,
    n_val: int = 5,
    n_seed_test: int = 6,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Convert ``scd_lvsegs.npz`` into ``images/``, ``labels/`` and ``datalist.json`` under ``output_dir``.

    Args:
        npz_path: the verified source archive.
        output_dir: where to write; an existing datalist is an error unless ``overwrite``.
        spacing_mm: nominal in-plane pixel spacing written into the headers (see the module docstring).
        n_folds: number of cross-validation folds.
        n_val: validation cases carved (stratified) out of each split's training cases.
        n_seed_test: the seed split's test cases: the last ``n_seed_test`` patients.
        seed: seed of the fold assignment and of the validation subsets.
        overwrite: replace existing outputs.

    Returns:
        The path of the written datalist.
    """
    output_dir = Path(output_dir)
    datalist_path = datalist_target(output_dir, overwrite)
    arrays = load_npz(npz_path)
    ranges = arrays["caseIndices"]
    cases: list[dict[str, Any]] = []
    for index, (start, end) in enumerate(ranges):
        cid = case_id(index)
        voxel = arrays["caseVoxelSize"][start]
        slice_spacing = round(float(voxel[2]), 3)
        affine = volume_affine(spacing_mm, slice_spacing)
        image = np.moveaxis(arrays["images"][start:end], 0, -1)  # (slices, rows, cols) -> (rows, cols, slices)
        label = np.moveaxis(arrays["segs"][start:end], 0, -1)
        if image.max() > np.iinfo(np.int16).max:
            raise InputError(npz_path, f"case {cid}: intensities above {np.iinfo(np.int16).max} do not fit int16")
        write_volume(image, affine, output_dir / "images" / f"{cid}.nii.gz", np.int16, overwrite)
        write_volume(label, affine, output_dir / "labels" / f"{cid}.nii.gz", np.uint8, overwrite)
        cases.append(
            {
                "case_id": cid,
                "image": f"images/{cid}.nii.gz",
                "label": f"labels/{cid}.nii.gz",
                "num_slices": int(end - start),
                "category": int(arrays["caseCat"][start]),
                "category_name": CATEGORY_NAMES[int(arrays["caseCat"][start])],
                "slice_spacing_mm": slice_spacing,
                "scanner_voxel_mm": [round(float(v), 4) for v in voxel],
                "npz_slices": [int(start), int(end)],
            }
        )
    categories = {c["case_id"]: c["category"] for c in cases}
    case_ids = [c["case_id"] for c in cases]
    folds = stratified_folds(categories, n_folds=n_folds, seed=seed)
    for case in cases:
        case["fold"] = folds[case["case_id"]]
    splits = {"seed": split_cases(case_ids, case_ids[-n_seed_test:], categories, n_val, seed)}
    for k in range(n_folds):
        test = [c for c in case_ids if folds[c] == k]
        splits[f"fold{k}"] = split_cases(case_ids, test, categories, n_val, seed + k)
    datalist = {
        "name": "sunnybrook_lv_myocardium",
        "description": "Sunnybrook Cardiac Data, LV myocardium, one volume per patient (slices along axis 2).",
        "source": {"file": SOURCE.filename, "url": SOURCE.url, "sha256": SOURCE.sha256},
        "citation": "Radau et al., Evaluation Framework for Algorithms Segmenting Short Axis Cardiac MRI, "
        "The MIDAS Journal, 2009",
        "labels": {"0": "background", "1": "myocardium"},
        "categories": {str(k): v for k, v in CATEGORY_NAMES.items()},
        "inplane_spacing_mm": spacing_mm,
        "seed": seed,
        "cases": cases,
        "splits": splits,
    }
    atomic_write_json(datalist_path, datalist, overwrite=overwrite)
    logger.info("wrote %d cases (%d slices) and %s", len(cases), int(ranges[-1, 1]), datalist_path)
    return datalist_path


def prepare(output_dir: str | Path, source: str | Path | None = None, overwrite: bool = False, **kwargs: Any) -> Path:
    """Find (or download) the verified source archive and convert it; return the datalist path."""
    return convert(resolve_source(SOURCE, source), output_dir, overwrite=overwrite, **kwargs)
