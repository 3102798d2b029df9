"""Paired MR / CT slices (``brain_mr_ct_paired.npz``) -> NIfTI volumes per patient and modality, head masks, datalist.

Run: ``pipelines data brain_mr_ct --source PATH --output DIR`` or, from Python,
``pipelines.data.brain_mr_ct.prepare(DIR, source=PATH)``. The file has no public download address and must never be
redistributed, so it is only ever looked for locally (``--source`` or ``PIPELINES_DATA``), checked by sha256.

Content. 14 patients, 306 axial slices, ``ct``, ``t1`` and ``t2`` at the same levels (approximately aligned), 8-bit
windowed display values (not Hounsfield units) at 256x256. By inspection of the verified file, patients 1-9 are heads
and 10-14 abdomen / pelvis (:data:`REGIONS`); the default split holds the heads only.

Geometry. Neither the in-plane pixel spacing nor the slice spacing is recorded. Each volume has array axes
(row, column, slice), slices stacked in increasing ``slice`` number, and the nominal affine ``diag(s, s, dz, 1)``:
``s`` = 1.0 mm (a 256 mm field of view, typical of a head; abdominal fields are larger) and ``dz`` = 5.0 mm. The affine
makes the volumes loadable and comparable with each other, nothing more: metrics are reported per pixel, and the
anatomical direction of the slice axis is not encoded (slice 1 is the lowest head slice but the highest body slice).

Head mask (:func:`head_mask`, on CT, slice by slice): ``CT > threshold``, a binary opening (2 iterations) to drop
noise and thin lines (head rest, table), the connected components at least ``min_fraction`` of the largest one, then
the convex hull of what is left. The hull closes the skull base, where the brain window maps fat, air cavities and
the ear region to 0 and fragments the outline so that hole filling alone leaves gaps; it over-covers concave outlines
(between the thighs), which only adds background pixels.

Splits (by patient, seeded): ``seed``, the default of every command, holds the 9 **head** patients only (the file
is named and used as brain data; the 5 body patients are too few and too varied to learn from alongside, and one of
them has a CT reconstruction field that no MR predicts); ``all`` holds the 14, stratified by region. Each has
``n_test`` test and ``n_val`` validation patients (paired, for evaluation and checkpoint selection only), the rest
train. The train patients are dealt into two disjoint halves, ``train_mr`` and ``train_ct``: an unpaired model sees
the MR of one half and the CT of the other, so no anatomy it is shown exists in both domains. This halves the data
per domain but makes "unpaired" literal rather than "paired, shuffled".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from pipelines.data.sources import DatasetSource, resolve_local_source
from pipelines.data.splits import split_cases, stratified_subset
from pipelines.data.npz import load_arrays
from pipelines.data.sunnybrook import volume_affine, write_volume  # one NIfTI writer for every converter
from pipelines.errors import InputError, OutputExistsError
from pipelines.io.atomic import atomic_write_json

__all__ = ["SOURCE", "MODALITIES", "REGIONS", "case_id", "load_npz", "head_mask", "convert", "prepare"]

logger = logging.getLogger(__name__)

SOURCE = DatasetSource(
    filename="brain_mr_ct_paired.npz",
    url="",  # not published: the file's provenance and licence are undocumented, so it is never downloaded
    sha256="c242f71e94460e94bd245518f88a971065e6d52ea472a51d4b74f4069055608f",
)
MODALITIES = ("ct", "t1", "t2")
REQUIRED_ARRAYS = (*MODALITIES, "patient", "slice")
# body region of each patient, by visual inspection of the (sha256-verified) file
REGIONS = {**{p: "head" for p in range(1, 10)}, **{p: "body" for p in range(10, 15)}}
REGION_CODES = {"head": 0, "body": 1}
DEFAULT_SPACING_MM = 1.0
DEFAULT_SLICE_SPACING_MM = 5.0
DEFAULT_MASK_THRESHOLD = 10


def case_id(patient: int) -> str:
    """The case id of patient number ``patient`` (1..14): ``brain_01`` ... ``brain_14``."""
    return f"brain_{patient:02d}"


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Load the npz and check ``ct``, ``t1``, ``t2`` (N, H, W) uint8 and ``patient``, ``slice`` (N,).

    Raises:
        InputError: one line naming ``path``: unreadable, an array missing, or shapes / types that do not match.
    """
    arrays = load_arrays(path, REQUIRED_ARRAYS, "brain_mr_ct_paired.npz")
    shapes = {k: arrays[k].shape for k in REQUIRED_ARRAYS}
    ct = shapes["ct"]
    if len(ct) != 3 or not shapes["t1"] == shapes["t2"] == ct or not shapes["patient"] == shapes["slice"] == ct[:1]:
        raise InputError(path, f"array shapes do not match (ct, t1, t2 (N, H, W); patient, slice (N,)): {shapes}")
    not_uint8 = [k for k in MODALITIES if arrays[k].dtype != np.uint8]
    if not_uint8:
        raise InputError(path, f"arrays {not_uint8} are not uint8")
    return arrays


def _convex_hull_fill(mask: np.ndarray) -> np.ndarray:
    """The pixels whose centres lie in the convex hull of the centres of ``mask``'s pixels."""
    points = np.argwhere(mask)
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):  # fewer than 3 pixels, or all on one line: nothing to fill
        return mask
    grid = np.indices(mask.shape).reshape(2, -1).T
    # a point is inside when a.x + b <= 0 for every facet (a, b) of the hull
    inside = (grid @ hull.equations[:, :2].T + hull.equations[:, 2]).max(axis=1) <= 1e-9
    return inside.reshape(mask.shape)


def head_mask(
    ct_slice: np.ndarray, threshold: int = DEFAULT_MASK_THRESHOLD, min_fraction: float = 0.02
) -> np.ndarray:
    """Head (or body) mask of one CT slice: threshold, opening, large components, convex hull.

    Args:
        ct_slice: (H, W) CT display values 0..255.
        threshold: foreground is ``ct_slice > threshold``.
        min_fraction: keep connected components of at least this fraction of the largest one's area.

    Returns:
        (H, W) bool mask; all False for an empty slice.
    """
    foreground = ndimage.binary_opening(ct_slice > threshold, iterations=2)
    labels, n = ndimage.label(foreground)
    if n == 0:
        return foreground
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    kept = np.isin(labels, np.flatnonzero(sizes >= min_fraction * sizes.max()))
    return _convex_hull_fill(kept)


def _patient_slices(arrays: dict[str, np.ndarray], path: str | Path) -> dict[int, np.ndarray]:
    """Patient number -> indices of its slices in the npz, in increasing ``slice`` number."""
    by_patient: dict[int, np.ndarray] = {}
    for patient in np.unique(arrays["patient"]).tolist():
        indices = np.flatnonzero(arrays["patient"] == patient)
        numbers = arrays["slice"][indices]
        if len(np.unique(numbers)) != len(numbers):
            raise InputError(path, f"patient {patient} has repeated slice numbers")
        by_patient[int(patient)] = indices[np.argsort(numbers, kind="stable")]
    unknown = sorted(set(by_patient) - set(REGIONS))
    if unknown:
        raise InputError(path, f"unexpected patient numbers {unknown}; is this brain_mr_ct_paired.npz?")
    return by_patient


def _unpaired_halves(train: list[str], regions: dict[str, int], seed: int) -> tuple[list[str], list[str]]:
    """Deal the train patients (stratified by region) into disjoint MR-domain and CT-domain halves."""
    mr = stratified_subset({c: regions[c] for c in train}, (len(train) + 1) // 2, seed=seed)
    return mr, sorted(set(train) - set(mr))


def _split(regions: dict[str, int], n_test: int, n_val: int, seed: int) -> dict[str, list[str]]:
    """Test, validation and train patients (stratified by region), and the train patients' MR / CT halves."""
    split = split_cases(sorted(regions), stratified_subset(regions, n_test, seed=seed), regions, n_val, seed + 1)
    split["train_mr"], split["train_ct"] = _unpaired_halves(split["train"], regions, seed + 2)
    return split


def convert(
    source: str | Path,
    output_dir: str | Path,
    overwrite: bool = False,
    spacing_mm: float = DEFAULT_SPACING_MM,
    slice_spacing_mm: float = DEFAULT_SLICE_SPACING_MM,
    n_val: int = 1,
    n_test: int = 2,
    seed: int = 0,
    mask_threshold: int = DEFAULT_MASK_THRESHOLD,
) -> Path:
    """Convert the npz into ``images/{ct,t1,t2}/``, ``masks/`` and ``datalist.json`` under ``output_dir``.

    Args:
        source: the verified ``brain_mr_ct_paired.npz``.
        output_dir: where to write; an existing output file is an error unless ``overwrite``.
        overwrite: replace existing outputs.
        spacing_mm: nominal in-plane pixel spacing written into the headers (not recorded in the data).
        slice_spacing_mm: nominal slice spacing written into the headers (not recorded in the data).
        n_val: validation patients of each split.
        n_test: test patients of each split (stratified by region in ``all``).
        seed: seed of the test, validation and MR / CT half assignments.
        mask_threshold: CT value above which a pixel is foreground for the head mask.

    Returns:
        The path of the written datalist.
    """
    output_dir = Path(output_dir)
    datalist_path = output_dir / "datalist.json"
    if datalist_path.exists() and not overwrite:
        raise OutputExistsError(datalist_path)
    arrays = load_npz(source)
    by_patient = _patient_slices(arrays, source)
    affine = volume_affine(spacing_mm, slice_spacing_mm)
    cases: list[dict[str, Any]] = []
    for patient, indices in by_patient.items():
        cid = case_id(patient)
        case: dict[str, Any] = {"case_id": cid, "patient": patient, "region": REGIONS[patient]}
        for modality in MODALITIES:
            volume = np.moveaxis(arrays[modality][indices], 0, -1)  # (slices, rows, cols) -> (rows, cols, slices)
            case[modality] = f"images/{modality}/{cid}.nii.gz"
            write_volume(volume, affine, output_dir / case[modality], np.uint8, overwrite)
        mask = np.stack([head_mask(arrays["ct"][i], mask_threshold) for i in indices], axis=-1)
        case["mask"] = f"masks/{cid}.nii.gz"
        write_volume(mask, affine, output_dir / case["mask"], np.uint8, overwrite)
        # `image` / `label` let pipelines.data.split_items read a case as (MR input, CT target)
        case.update(
            image=case["t1"],
            label=case["ct"],
            num_slices=len(indices),
            slice_numbers=arrays["slice"][indices].astype(int).tolist(),
            npz_indices=indices.astype(int).tolist(),
        )
        cases.append(case)
        logger.debug("%s: %d slices, head mask %.1f%% of pixels", cid, len(indices), 100 * mask.mean())
    regions = {c["case_id"]: REGION_CODES[c["region"]] for c in cases}
    heads = {cid: code for cid, code in regions.items() if code == REGION_CODES["head"]}
    splits = {"seed": _split(heads, n_test, n_val, seed), "all": _split(regions, n_test, n_val, seed)}
    datalist = {
        "name": "brain_mr_ct_paired",
        "description": "Paired CT / T1 / T2 axial slices of 14 patients, one volume per patient and modality "
        "(slices along axis 2), 8-bit display values (not HU).",
        "source": {"file": SOURCE.filename, "sha256": SOURCE.sha256},
        "licence": "provenance and licence undocumented: evaluation and demos only, never redistribute",
        "modalities": list(MODALITIES),
        "intensity_range": [0, 255],
        "inplane_spacing_mm": spacing_mm,
        "slice_spacing_mm": slice_spacing_mm,
        "geometry_note": "spacings are nominal (not recorded in the source); axes (row, column, slice)",
        "mask": {"method": "CT > threshold, opening x2, components >= 2% of largest, convex hull, per slice",
                 "threshold": mask_threshold},
        "seed": seed,
        "cases": cases,
        "splits": splits,
    }
    atomic_write_json(datalist_path, datalist, overwrite=overwrite)
    logger.info("wrote %d patients (%d slices) and %s", len(cases), len(arrays["patient"]), datalist_path)
    return datalist_path


def prepare(output_dir: str | Path, source: str | Path | None = None, overwrite: bool = False, **kwargs: Any) -> Path:
    """Find the local, verified source file (``source`` or ``PIPELINES_DATA``; never downloaded) and convert it.

    Raises:
        PipelineError: the file is not found; it has no public download and must be supplied locally.
    """
    path = resolve_local_source(SOURCE, source, "it has no public download (undocumented licence, never redistributed)")
    return convert(path, output_dir, overwrite=overwrite, **kwargs)
