"""Slice Dice, strata, area ratio and reference perturbations on hand-computed masks."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.evaluation.slice_errors import (
    ErrorSides, area_ratio, error_sides, perturbation_dice, slice_records, stratified_dice,
)


def square(size: int, side: int, depth: int = 1) -> np.ndarray:
    mask = np.zeros((size, size, depth), dtype=bool)
    mask[2 : 2 + side, 2 : 2 + side] = True
    return mask


def test_slice_records_skip_empty_reference_slices_and_score_each_slice() -> None:
    reference = np.zeros((8, 8, 3), dtype=bool)
    reference[1:3, 1:3, 0] = True  # 4 px
    reference[1:5, 1:5, 2] = True  # 16 px
    prediction = np.zeros_like(reference)
    prediction[1:3, 1:2, 0] = True  # 2 of the 4
    prediction[0, 0, 1] = True  # a false positive on a slice without reference: not scored here
    prediction[1:5, 1:5, 2] = True
    first, last = slice_records("c", prediction, reference)
    assert (first.index, first.reference_area, first.predicted_area) == (0, 4, 2)
    assert first.dice == pytest.approx(2 * 2 / 6) and last.dice == 1.0
    assert (first.position, last.position) == (0.0, 1.0)
    assert area_ratio([first, last]) == pytest.approx(18 / 20)


def test_shape_mismatch_is_refused_naming_the_case() -> None:
    with pytest.raises(ValueError, match="scd_007"):
        slice_records("scd_007", np.zeros((4, 4, 2)), np.zeros((4, 4, 3)))


def test_strata_split_by_ring_area_terciles_and_stack_thirds() -> None:
    reference = np.concatenate([square(12, s) for s in (2, 2, 4, 4, 6, 6)], axis=2)
    prediction = reference.copy()
    prediction[..., :2] = False  # the two smallest rings, at the start of the stack, are missed
    strata = stratified_dice(slice_records("c", prediction, reference))
    assert strata["ring_area"]["smallest"] == {"dice": 0.0, "slices": 2, "reference_area_px": 4.0}
    assert strata["ring_area"]["largest"]["dice"] == 1.0
    # positions 0, 0.2, 0.4, 0.6, 0.8, 1.0 -> thirds of 2 slices each
    assert [strata["stack_position"][t]["slices"] for t in ("first", "middle", "last")] == [2, 2, 2]
    assert strata["stack_position"]["first"]["dice"] == 0.0
    with pytest.raises(ValueError, match="no slice"):
        stratified_dice([])


def test_perturbations_of_a_square_match_hand_counts() -> None:
    reference = square(10, 4)  # 16 px
    figures = perturbation_dice(reference)
    assert figures["shift_1px"] == pytest.approx(2 * 12 / 32)  # a shift by one keeps 3 of 4 columns or rows
    assert figures["erode_1px"] == pytest.approx(2 * 4 / 20)  # the 2x2 core
    assert figures["dilate_1px"] == pytest.approx(2 * 16 / (16 + 32))  # + 4 edges of 4 px, no corners (cross)


def ring(depth: int = 1) -> np.ndarray:
    """A square ring on a 12x12 slice: outer square rows/columns 2..9, hole 4..7 (16 px cavity, 48 px ring)."""
    mask = square(12, 8, depth)
    mask[4:8, 4:8] = False
    return mask


def test_error_sides_count_cavity_and_outside_false_positives_and_inner_and_outer_misses() -> None:
    reference = ring()
    prediction = reference.copy()
    prediction[5, 5, 0] = True  # a false positive in the cavity
    prediction[0, 0, 0] = prediction[11, 11, 0] = True  # two outside the ring
    prediction[3, 6, 0] = False  # a miss on the inner edge: one pixel from the cavity, two from the outside
    prediction[2, 6, 0] = prediction[9, 3, 0] = False  # two misses on the outer edge
    sides = error_sides(prediction, reference)
    assert sides == ErrorSides(reference=48, fp_cavity=1, fp_outside=2, fn_inner=1, fn_outer=2, closed_slices=1)


def test_open_rings_are_counted_apart_and_counts_add() -> None:
    reference = np.concatenate([ring(), square(12, 3)], axis=2)  # a closed ring, then a ring-less blob
    prediction = np.zeros_like(reference)
    prediction[0, 0, 1] = True
    open_only = error_sides(prediction, reference)
    assert (open_only.open_slices, open_only.closed_slices) == (1, 1)
    assert (open_only.fp_open_ring, open_only.fn_open_ring, open_only.fn_inner + open_only.fn_outer) == (1, 9, 48)
    total = open_only + open_only
    assert total.reference == 2 * (48 + 9) and total.fp_open_ring == 2
    with pytest.raises(ValueError, match="same"):
        error_sides(prediction[..., :1], reference)
