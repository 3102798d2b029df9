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

CT window harmonisation (:func:`ct_level`, :func:`harmonisation_shifts`, :func:`shift_window`). The heads come from
two sources (patients 1-5 and 8: FLAIR-like ``t2``; 6, 7 and 9: T2-weighted ``t2``), and their CTs were exported with
different brain-window **levels**: the brain-parenchyma peak of the head-mask histogram sits at 96-109 in the first
group and at 147-150 in the second, with the same peak width (the same window width, so the same noise in display
units). No MR predicts an export setting, and a model trained on both learns a compromise that is wrong for both.
So each patient's parenchyma level ``l_p`` (the mode of its smoothed head-mask histogram within 60..200) is compared
with its region's reference ``r`` (the median ``l_p`` of the region's patients); a patient whose ``|r - l_p|``
exceeds ``tolerance`` display units has its CT shifted by ``d = r - l_p``: ``v' = clip(v + d, 0, 255)`` for
``0 < v < 255``, while 0 and 255 stay (air and bone lie beyond both windows). With the default tolerance of 20 the
file's patients 6, 7 and 9 move by -40..-43, and every other patient, the seed split's test patients included, keeps
its CT values. The datalist records each patient's level and shift; ``harmonise_ct=False`` keeps the file's
values.

CT-to-MR registration (:func:`register_ct`, :mod:`pipelines.data.registration`; opt-in, ``register=True``). The
slices are only roughly aligned (the heads' CT / T1 head-mask Dice averages 0.943). Each CT slice can be registered
onto its T1 slice (2D affine, Mattes mutual information, SimpleITK) and resampled with nearest neighbour, so its
values stay the CT's own; a slice's registration is kept only when it raises the head-mask Dice, else the slice
stays as it is, and the head mask is then computed on the registered CT. What it did goes to ``registration.json``
(per slice: kept or not, Dice before and after, the affine) and each case's ``ct_registration`` summary. It raises
the mean head-mask Dice to 0.954 but lowered neither model's test MAE (see data/brain_mr_ct/README.md),
so it is off by default. Through-plane mismatch (a CT slice a little above or below its MR slice) is beyond any 2D
registration either way.

Splits (by patient, seeded): ``seed``, the default of every command, holds the 9 **head** patients only (the file
is named and used as brain data; the 5 body patients are too few and too varied to learn from alongside, and one of
them has a CT reconstruction field that no MR predicts); ``all`` holds the 14, stratified by region. Each has
``n_test`` test and ``n_val`` validation patients (paired, for evaluation and checkpoint selection only), the rest
train. The train patients are dealt into two disjoint halves, ``train_mr`` and ``train_ct`` (stratified by region and
acquisition source, :data:`SOURCES`): an unpaired model sees the MR of one half and the CT of the other, so no
anatomy it is shown exists in both domains. This halves the data
per domain but makes "unpaired" literal rather than "paired, shuffled".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, TypeVar

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from pipelines.data.datalist import datalist_target
from pipelines.data.npz import load_arrays
from pipelines.data.registration import SliceRegistration, register_slice
from pipelines.data.sources import DatasetSource, resolve_local_source
from pipelines.data.splits import split_cases, stratified_subset
from pipelines.data.sunnybrook import volume_affine, write_volume  # one NIfTI writer for every converter
from pipelines.errors import InputError, OutputExistsError
from pipelines.io.atomic import atomic_write_json

__all__ = [
    "SOURCE", "MODALITIES", "REGIONS", "case_id", "load_npz", "head_mask", "ct_level", "harmonisation_shifts",
    "shift_window", "register_ct", "convert", "prepare",
]

logger = logging.getLogger(__name__)
K = TypeVar("K")  # a case key: a case id or a patient number

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
# acquisition source of each head, by visual inspection of the verified file: the t2 of patients 1-5 and 8 is
# FLAIR-like, that of 6, 7 and 9 T2-weighted, and their CT windows differ (see the CT window harmonisation above)
SOURCES = {**{p: 0 for p in range(1, 15)}, **{p: 1 for p in (6, 7, 9)}}
DEFAULT_SPACING_MM = 1.0
DEFAULT_SLICE_SPACING_MM = 5.0
DEFAULT_MASK_THRESHOLD = 10
DEFAULT_HARMONISE_TOLERANCE = 20
LEVEL_SEARCH_RANGE = (60, 200)  # display values where the brain-parenchyma (soft-tissue) peak is looked for


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
    # only the bounding box of the points can be inside; a point is inside when a.x + b <= 0 for every facet (a, b)
    low, high = points.min(axis=0), points.max(axis=0) + 1
    grid = np.indices(tuple(high - low)).reshape(2, -1).T + low
    inside = (grid @ hull.equations[:, :2].T + hull.equations[:, 2]).max(axis=1) <= 1e-9
    filled = np.zeros_like(mask, dtype=bool)
    filled[low[0] : high[0], low[1] : high[1]] = inside.reshape(tuple(high - low))
    return filled


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


def ct_level(values: np.ndarray, search: tuple[int, int] = LEVEL_SEARCH_RANGE, sigma: float = 2.0) -> int:
    """The soft-tissue level of a CT: the mode of the histogram of ``values`` smoothed with a Gaussian of ``sigma``.

    Args:
        values: CT display values (0..255) inside the head mask, any shape.
        search: the mode is looked for in ``[search[0], search[1])``, which excludes air / fat (0) and bone (255).
        sigma: width in display units of the Gaussian smoothing the 256-bin histogram (the CT grain makes it ragged).

    Returns:
        The display value of the highest smoothed-histogram bin in ``search``.
    """
    histogram = np.bincount(np.asarray(values, dtype=np.int64).ravel(), minlength=256)[:256].astype(float)
    smooth = ndimage.gaussian_filter1d(histogram, sigma)
    return int(search[0] + np.argmax(smooth[search[0] : search[1]]))


def harmonisation_shifts(levels: Mapping[K, int], groups: Mapping[K, int], tolerance: float) -> dict[K, int]:
    """The shift ``d_p = r_g - l_p`` of each case whose level is more than ``tolerance`` from its group's reference.

    Args:
        levels: case (id or patient number) -> soft-tissue level ``l_p`` (:func:`ct_level`).
        groups: case id -> group (region code); each group's reference ``r_g`` is the median level of its cases.
        tolerance: cases with ``|r_g - l_p| <= tolerance`` keep their values (shift 0).

    Returns:
        case id -> integer shift in display units.
    """
    reference = {g: float(np.median([levels[c] for c in levels if groups[c] == g])) for g in set(groups.values())}
    shifts = {}
    for case, level in levels.items():
        offset = reference[groups[case]] - level
        shifts[case] = int(round(offset)) if abs(offset) > tolerance else 0
    return shifts


def shift_window(volume: np.ndarray, shift: int) -> np.ndarray:
    """Move a uint8 display window by ``shift``: ``clip(v + shift, 0, 255)`` for ``0 < v < 255``; 0 and 255 stay.

    A window level change moves every unsaturated value by the same amount when the window width is unchanged; the
    saturated values (air and fat at 0, bone at 255) lie beyond both windows and stay saturated.
    """
    if shift == 0:
        return volume
    values = volume.astype(np.int16)
    moved = np.clip(values + shift, 0, 255)
    return np.where((values == 0) | (values == 255), values, moved).astype(np.uint8)


def register_ct(
    ct: np.ndarray, mr: np.ndarray, mask_threshold: int = DEFAULT_MASK_THRESHOLD
) -> tuple[np.ndarray, list[SliceRegistration]]:
    """Register each CT slice of a (H, W, S) volume onto the MR slice at the same index (module docstring).

    Returns:
        The (H, W, S) registered CT (same dtype; unregistered slices unchanged) and the per-slice outcomes.
    """
    def mask(image: np.ndarray) -> np.ndarray:
        return head_mask(image, mask_threshold)

    outcomes = [register_slice(mr[..., k], ct[..., k], mask) for k in range(ct.shape[-1])]
    return np.stack([o.image for o in outcomes], axis=-1), outcomes


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


def _unpaired_halves(train: list[str], strata: dict[str, int], seed: int) -> tuple[list[str], list[str]]:
    """Deal the train patients (stratified by region and source) into disjoint MR-domain and CT-domain halves."""
    mr = stratified_subset({c: strata[c] for c in train}, (len(train) + 1) // 2, seed=seed)
    return mr, sorted(set(train) - set(mr))


def _split(regions: dict[str, int], sources: dict[str, int], n_test: int, n_val: int, seed: int) -> dict[str, list[str]]:
    """Test, validation and train patients (stratified by region), and the train patients' MR / CT halves.

    The halves are stratified by region and acquisition source, so that each domain holds every source that the
    validation and test patients may come from (an MR contrast never seen in training is out of distribution).
    """
    split = split_cases(sorted(regions), stratified_subset(regions, n_test, seed=seed), regions, n_val, seed + 1)
    strata = {c: 2 * regions[c] + sources[c] for c in regions}
    split["train_mr"], split["train_ct"] = _unpaired_halves(split["train"], strata, seed + 2)
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
    harmonise_ct: bool = True,
    harmonise_tolerance: float = DEFAULT_HARMONISE_TOLERANCE,
    register: bool = False,
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
        harmonise_ct: move the CT window level of outlying patients onto their region's reference (module docstring).
        harmonise_tolerance: level difference (display units) up to which a patient's CT is kept as it is.
        register: register each CT slice onto its T1 slice (module docstring; off by default: it did not help).

    Returns:
        The path of the written datalist.
    """
    output_dir = Path(output_dir)
    datalist_path = datalist_target(output_dir, overwrite)
    arrays = load_npz(source)
    by_patient = _patient_slices(arrays, source)
    affine = volume_affine(spacing_mm, slice_spacing_mm)
    volumes = {  # (slices, rows, cols) -> (rows, cols, slices)
        (patient, modality): np.moveaxis(arrays[modality][indices], 0, -1)
        for patient, indices in by_patient.items()
        for modality in MODALITIES
    }
    # the targets are all checked before the (minutes of) work, so that a refusal costs nothing
    folders = [*(f"images/{m}" for m in MODALITIES), "masks"]
    targets = [output_dir / folder / f"{case_id(p)}.nii.gz" for p in by_patient for folder in folders]
    targets += [output_dir / "registration.json"] if register else []
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise OutputExistsError(existing[0])
    masks = {
        patient: np.stack([head_mask(arrays["ct"][i], mask_threshold) for i in indices], axis=-1)
        for patient, indices in by_patient.items()
    }
    levels = {patient: ct_level(volumes[patient, "ct"][masks[patient]]) for patient in by_patient}
    shifts = dict.fromkeys(by_patient, 0)
    if harmonise_ct:
        shifts = harmonisation_shifts(
            levels, {p: REGION_CODES[REGIONS[p]] for p in by_patient}, harmonise_tolerance
        )
    registrations: dict[str, list[dict[str, Any]]] = {}
    for patient in by_patient:
        volumes[patient, "ct"] = shift_window(volumes[patient, "ct"], shifts[patient])
        if register:
            ct, outcomes = register_ct(volumes[patient, "ct"], volumes[patient, "t1"], mask_threshold)
            volumes[patient, "ct"] = ct
            masks[patient] = np.stack([head_mask(ct[..., k], mask_threshold) for k in range(ct.shape[-1])], axis=-1)
            registrations[case_id(patient)] = [
                {
                    "kept": o.accepted,
                    "mask_dice_before": round(o.dice_before, 4),
                    "mask_dice_after": round(o.dice_after, 4),
                    "affine": [round(v, 5) for v in o.parameters],
                }
                for o in outcomes
            ]
            logger.info("%s: %d of %d CT slices registered onto the T1", case_id(patient),
                        sum(o.accepted for o in outcomes), len(outcomes))
    cases: list[dict[str, Any]] = []
    for patient, indices in by_patient.items():
        cid = case_id(patient)
        case: dict[str, Any] = {"case_id": cid, "patient": patient, "region": REGIONS[patient], "source": SOURCES[patient]}
        for modality in MODALITIES:
            volume = volumes[patient, modality]
            case[modality] = f"images/{modality}/{cid}.nii.gz"
            write_volume(volume, affine, output_dir / case[modality], np.uint8, overwrite)
        mask = masks[patient]
        case["mask"] = f"masks/{cid}.nii.gz"
        write_volume(mask, affine, output_dir / case["mask"], np.uint8, overwrite)
        # `image` / `label` let pipelines.data.split_items read a case as (MR input, CT target)
        case.update(
            image=case["t1"],
            label=case["ct"],
            num_slices=len(indices),
            slice_numbers=arrays["slice"][indices].astype(int).tolist(),
            npz_indices=indices.astype(int).tolist(),
            ct_level=levels[patient],
            ct_shift=shifts[patient],
        )
        slices = registrations.get(cid)
        if slices:
            case["ct_registration"] = {
                "kept": sum(r["kept"] for r in slices),
                "slices": len(slices),
                "mask_dice_before": round(float(np.mean([r["mask_dice_before"] for r in slices])), 4),
                "mask_dice_after": round(float(np.mean([r["mask_dice_after"] for r in slices])), 4),
            }
        cases.append(case)
        logger.debug("%s: %d slices, head mask %.1f%% of pixels, CT level %d, shift %d",
                     cid, len(indices), 100 * mask.mean(), levels[patient], shifts[patient])
    moved = {case_id(p): d for p, d in shifts.items() if d}
    if moved:
        logger.info("CT window level harmonised (shift in display units): %s", moved)
    regions = {c["case_id"]: REGION_CODES[c["region"]] for c in cases}
    heads = {cid: code for cid, code in regions.items() if code == REGION_CODES["head"]}
    sources = {c["case_id"]: SOURCES[c["patient"]] for c in cases}
    splits = {"seed": _split(heads, sources, n_test, n_val, seed), "all": _split(regions, sources, n_test, n_val, seed)}
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
        "ct_harmonisation": {
            "enabled": harmonise_ct,
            "method": "soft-tissue level = mode of the head-mask CT histogram (Gaussian sigma 2) in 60..200; a case "
            "more than `tolerance` from its region's median level is shifted onto it (0 and 255 kept)",
            "tolerance": harmonise_tolerance,
            "shifted": moved,
        },
        "ct_registration": {
            "enabled": register,
            "method": "per slice: CT onto T1, 2D affine, Mattes MI (SimpleITK), nearest-neighbour resampling; kept only "
            "when the head-mask Dice rises; details in registration.json",
        },
        "seed": seed,
        "cases": cases,
        "splits": splits,
    }
    if register:
        atomic_write_json(output_dir / "registration.json", registrations, overwrite=overwrite)
    elif overwrite and (output_dir / "registration.json").exists():  # a replaced dataset keeps no stale record
        (output_dir / "registration.json").unlink()
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
