"""Where a segmentation model's errors lie, slice by slice, and what a Dice figure means at this resolution.

* Slice Dice: ``2 |P_z ∩ G_z| / (|P_z| + |G_z|)`` of each slice ``z`` holding reference foreground.
* Strata: each such slice falls into a third of the reference ring area (tercile edges over all slices scored
  together) and into a third of its position in the patient's stack (``z / (depth - 1)`` in ``[0, 1/3)``,
  ``[1/3, 2/3)``, ``[2/3, 1]``); a stratum's figure is the mean slice Dice over its slices.
* Area ratio: ``sum |P| / sum |G|`` over all scored voxels (above 1: the model over-segments).
* Reference perturbations: the Dice, pooled per patient as in :mod:`pipelines.evaluation.metrics`, of the reference
  against itself shifted by one pixel in plane (mean over the 4 directions), dilated by one pixel and eroded by one
  pixel (3x3 cross structuring element, in plane only). They show how much Dice a one-pixel boundary error costs on
  structures of this size, a yardstick for the model's figures rather than a bound.
* Error sides: on a slice whose reference is a closed ring, the cavity ``C`` is the ring's hole (the in-plane
  hole filling of ``G`` minus ``G``) and the outside ``O`` is everything beyond the filled ring. A false positive
  ``P \\ G`` lies in ``C`` (endocardial side: blood pool, papillary muscles, trabeculae) or in ``O`` (epicardial
  side: fat, pericardium, neighbouring organs); a miss ``G \\ P`` is on the inner edge when its Euclidean distance
  to ``C`` is below its distance to ``O``, else on the outer edge. Slices whose reference ring is open (no hole:
  the basal outflow tract, the apex) have no sides, and their errors are counted apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass

import numpy as np
from scipy import ndimage

__all__ = ["SliceRecord", "ErrorSides", "pooled_dice", "slice_records", "stratified_dice", "area_ratio",
           "perturbation_dice", "error_sides"]

# the 3x3 cross of one slice, with no neighbours along the slice axis: the operations stay in plane
_CROSS_IN_PLANE = ndimage.generate_binary_structure(2, 1)[..., None]
THIRDS = ("first", "middle", "last")


@dataclass(frozen=True)
class SliceRecord:
    """One slice holding reference foreground."""

    case_id: str
    index: int
    depth: int
    reference_area: int
    predicted_area: int
    dice: float

    @property
    def position(self) -> float:
        """Position in the stack: 0 for the first slice, 1 for the last."""
        return self.index / (self.depth - 1) if self.depth > 1 else 0.0


def _check(prediction: np.ndarray, reference: np.ndarray, case_id: str) -> None:
    if prediction.shape != reference.shape or reference.ndim != 3:
        raise ValueError(f"{case_id}: prediction {prediction.shape} and reference {reference.shape} must be the same "
                         "(H, W, slices) shape")


def slice_records(case_id: str, prediction: np.ndarray, reference: np.ndarray) -> list[SliceRecord]:
    """Per-slice Dice of binary ``(H, W, slices)`` masks, for the slices where the reference has foreground."""
    _check(prediction, reference, case_id)
    pred, ref = prediction.astype(bool), reference.astype(bool)
    records = []
    for z in range(ref.shape[2]):
        g, p = ref[..., z], pred[..., z]
        if not g.any():
            continue
        records.append(SliceRecord(case_id, z, ref.shape[2], int(g.sum()), int(p.sum()), pooled_dice(p, g)))
    return records


def _thirds(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    return np.digitize(values, edges)  # 0, 1, 2


def stratified_dice(records: Sequence[SliceRecord]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean slice Dice, slice count and mean reference area per third of ring area and of stack position."""
    if not records:
        raise ValueError("no slice with reference foreground to score")
    dice = np.array([r.dice for r in records])
    area = np.array([r.reference_area for r in records], dtype=float)
    position = np.array([r.position for r in records])
    strata = {
        "ring_area": _thirds(area, np.percentile(area, [100 / 3, 200 / 3])),
        "stack_position": _thirds(position, [1 / 3, 2 / 3]),
    }
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, third in strata.items():
        out[name] = {}
        for k, label in enumerate(("smallest", "middle", "largest") if name == "ring_area" else THIRDS):
            chosen = third == k
            if chosen.any():
                out[name][label] = {"dice": float(dice[chosen].mean()), "slices": int(chosen.sum()),
                                    "reference_area_px": float(area[chosen].mean())}
    return out


def area_ratio(records: Iterable[SliceRecord]) -> float:
    """``sum |P| / sum |G|`` over the scored slices."""
    records = list(records)
    return sum(r.predicted_area for r in records) / sum(r.reference_area for r in records)


def pooled_dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """``2 |P ∩ G| / (|P| + |G|)`` over all voxels of two boolean masks; 1.0 when both are empty."""
    total = prediction.sum() + reference.sum()
    return 1.0 if total == 0 else 2.0 * float((prediction & reference).sum()) / float(total)


def perturbation_dice(reference: np.ndarray) -> dict[str, float]:
    """Dice of a binary ``(H, W, slices)`` reference against its one-pixel shift, dilation and erosion."""
    ref = reference.astype(bool)
    if ref.ndim != 3:
        raise ValueError(f"expected an (H, W, slices) mask, got shape {ref.shape}")
    shifts = [np.roll(ref, step, axis=axis) for axis in (0, 1) for step in (-1, 1)]
    return {
        "shift_1px": float(np.mean([pooled_dice(ref, s) for s in shifts])),
        "dilate_1px": pooled_dice(ref, ndimage.binary_dilation(ref, structure=_CROSS_IN_PLANE)),
        "erode_1px": pooled_dice(ref, ndimage.binary_erosion(ref, structure=_CROSS_IN_PLANE)),
    }


@dataclass(frozen=True)
class ErrorSides:
    """Pixel counts of false positives and misses by side of the reference ring (see the module doc)."""

    reference: int = 0
    fp_cavity: int = 0
    fp_outside: int = 0
    fp_open_ring: int = 0
    fn_inner: int = 0
    fn_outer: int = 0
    fn_open_ring: int = 0
    closed_slices: int = 0
    open_slices: int = 0

    def __add__(self, other: ErrorSides) -> ErrorSides:
        return ErrorSides(*(a + b for a, b in zip(astuple(self), astuple(other))))


def error_sides(prediction: np.ndarray, reference: np.ndarray, case_id: str = "case") -> ErrorSides:
    """Count the errors of binary ``(H, W, slices)`` masks by side, over the slices with reference foreground."""
    _check(prediction, reference, case_id)
    pred, ref = prediction.astype(bool), reference.astype(bool)
    counts = dict.fromkeys(vars(ErrorSides()), 0)
    for z in range(ref.shape[2]):
        g, p = ref[..., z], pred[..., z]
        if not g.any():
            continue
        filled = ndimage.binary_fill_holes(g)
        cavity, outside = filled & ~g, ~filled
        fp, fn = p & ~g, g & ~p
        counts["reference"] += int(g.sum())
        if not cavity.any():
            counts["open_slices"] += 1
            counts["fp_open_ring"] += int(fp.sum())
            counts["fn_open_ring"] += int(fn.sum())
            continue
        counts["closed_slices"] += 1
        inner = ndimage.distance_transform_edt(~cavity) < ndimage.distance_transform_edt(~outside)
        counts["fp_cavity"] += int((fp & cavity).sum())
        counts["fp_outside"] += int((fp & outside).sum())
        counts["fn_inner"] += int((fn & inner).sum())
        counts["fn_outer"] += int((fn & ~inner).sum())
    return ErrorSides(**counts)
