"""Measures of synthetic phantoms with known volumes and wall thickness (:mod:`pipelines.measure.case` and below)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.measure import aha
from pipelines.measure.case import measure_frames
from pipelines.measure.volumes import ed_es_frames


def codes(result: dict) -> set[str]:
    return {f["code"] for f in result["qc_flags"]}


def test_volumes_equal_voxel_count_times_voxel_volume(ph):
    ed, es = ph.clean_pair()
    dx, dy, dz = ph.SPACING
    voxel_ml = dx * dy * dz / 1000.0
    result = measure_frames(ed, es, ph.SPACING, np.diag([*ph.SPACING, 1.0]))
    m = result["measures"]
    assert m["lv_edv_ml"] == np.count_nonzero(ed == 3) * voxel_ml
    assert m["lv_esv_ml"] == np.count_nonzero(es == 3) * voxel_ml
    assert m["lv_mass_g"] == np.count_nonzero(ed == 2) * voxel_ml * 1.05
    assert m["rv_edv_ml"] == np.count_nonzero(ed == 1) * voxel_ml
    assert m["rv_esv_ml"] == np.count_nonzero(es == 1) * voxel_ml
    assert m["lv_sv_ml"] == m["lv_edv_ml"] - m["lv_esv_ml"]
    assert m["lv_ef_pct"] == 100 * (m["lv_edv_ml"] - m["lv_esv_ml"]) / m["lv_edv_ml"]
    assert m["rv_ef_pct"] == 100 * (m["rv_edv_ml"] - m["rv_esv_ml"]) / m["rv_edv_ml"]
    assert m["lv_slices"] == len(ph.LV_SLICES)

    height = len(ph.LV_SLICES) * dz
    r1, r2 = ph.ED_RADII
    assert m["lv_edv_ml"] == pytest.approx(math.pi * r1**2 * height / 1000, rel=0.03)
    assert m["lv_mass_g"] == pytest.approx(1.05 * math.pi * (r2**2 - r1**2) * height / 1000, rel=0.03)
    r1_es = ph.ES_RADII[0]
    assert m["lv_ef_pct"] == pytest.approx(100 * (1 - (r1_es / r1) ** 2), abs=2.0)
    assert codes(result) == set()  # the clean phantom raises no flag


def test_wall_thickness_of_a_ring_is_r2_minus_r1_in_every_segment(ph):
    ed, es = ph.clean_pair()
    result = measure_frames(ed, es, ph.SPACING, np.diag([*ph.SPACING, 1.0]))
    thickness = result["thickness"]
    wall = ph.ED_RADII[1] - ph.ED_RADII[0]
    voxel = max(ph.SPACING[:2])
    assert abs(thickness["mean_mm"] - wall) <= voxel
    for row in thickness["slices"]:
        assert abs(row["mean_mm"] - wall) <= voxel, row
    segments = thickness["segments"]
    assert [s["segment"] for s in segments] == list(range(1, 17))
    for segment in segments:
        assert segment["points"] > 0, segment
        assert abs(segment["mean_mm"] - wall) <= voxel, segment
    means = [s["mean_mm"] for s in segments]
    assert max(means) - min(means) <= voxel  # the same in all segments
    # 9 slices: 3 basal, 3 mid, 3 apical; a cylinder's tie puts the base at slice index 1
    assert thickness["base_at"] == "low"
    assert [row["level"] for row in thickness["slices"]] == ["basal"] * 3 + ["mid"] * 3 + ["apical"] * 3
    # the RV sits towards low axis-0 indices: the RV contact arc runs counter-clockwise around phi = 180 degrees
    for row in thickness["slices"]:
        anterior, inferior = row["anterior_insertion_deg"], row["inferior_insertion_deg"]
        assert 90.0 < anterior < 180.0 < inferior < 270.0, row
        assert (anterior + inferior) / 2 == pytest.approx(180.0, abs=3.0)
    assert thickness["anterior_insertion_deg"] == pytest.approx(thickness["slices"][4]["anterior_insertion_deg"])


def test_base_is_where_the_lv_is_wider():
    narrowing_towards_high_z = np.array([0, 900, 800, 700, 500, 300, 100, 0])
    assert aha.base_at_low_index(narrowing_towards_high_z)
    assert not aha.base_at_low_index(narrowing_towards_high_z[::-1])


@pytest.mark.parametrize(
    ("level", "theta", "segment"),
    [
        ("basal", 0.0, 2), ("basal", 59.9, 2), ("basal", 60.0, 3), ("basal", 150.0, 4), ("basal", 200.0, 5),
        ("basal", 250.0, 6), ("basal", 300.0, 1), ("basal", 359.9, 1), ("basal", -10.0, 1),
        ("mid", 0.0, 8), ("mid", 90.0, 9), ("mid", 330.0, 7),
        ("apical", 60.0, 14), ("apical", 14.9, 13), ("apical", 15.0, 14), ("apical", 150.0, 15),
        ("apical", 240.0, 16), ("apical", 300.0, 13),
    ],
)
def test_aha_segment_of_angle(level, theta, segment):
    assert int(aha.segment_of(level, np.array([theta]))[0]) == segment


def test_mirrored_images_keep_the_septum_septal(ph):
    """Flipping axis 1 (a mirror) with a mirrored affine gives the same segment values."""
    ed, es = ph.clean_pair()
    affine = np.diag([*ph.SPACING, 1.0])
    straight = measure_frames(ed, es, ph.SPACING, affine)["thickness"]["segments"]
    mirror = np.diag([1.0, -1.0, 1.0, 1.0]) @ affine
    flipped = measure_frames(ed[:, ::-1], es[:, ::-1], ph.SPACING, mirror)["thickness"]["segments"]
    for a, b in zip(straight, flipped):
        assert a["mean_mm"] == pytest.approx(b["mean_mm"], abs=0.5), (a, b)


def test_ed_es_frames_skip_empty_frames_and_take_the_first_of_ties():
    assert ed_es_frames(np.array([0.0, 50.0, 80.0, 80.0, 30.0, 30.0, 0.0])) == (2, 4)
    with pytest.raises(ValueError):
        ed_es_frames(np.zeros(3))


def _open_ring(ph):
    ed, es = ph.clean_pair()
    # cut the myocardium on the lateral side (high axis-0 indices) of every slice: the cavity meets background
    centre = int(ph.CENTRE_MM[0] / ph.SPACING[0])
    column = int(ph.CENTRE_MM[1] / ph.SPACING[1])
    wall = ed[centre:, column - 2: column + 3]
    wall[wall == 2] = 0
    return ed, es


def _two_components(ph):
    ed, es = ph.clean_pair()
    ed[2:14, 2:14, 2:6] = 2  # a myocardium island (about 11 % of the myocardium) in a corner
    return ed, es


def _swapped(ph):
    ed, es = ph.clean_pair()
    return es, ed


def _missing_mid_slice(ph):
    ed, es = ph.clean_pair()
    ed[..., 5] = 0
    return ed, es


def _no_rv(ph):
    ed, es = ph.clean_pair()
    return np.where(ed == 1, 0, ed), es


def _small_heart(ph):
    return ph.ring_frame(6.0, 9.0), ph.ring_frame(4.0, 8.0)


def _few_slices(ph):
    return ph.ring_frame(*ph.ED_RADII, slices=range(4, 6)), ph.ring_frame(*ph.ES_RADII, slices=range(4, 6))


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (_open_ring, {"myo_not_closed"}),
        (_two_components, {"disconnected"}),
        (_swapped, {"ed_lt_es", "lvef_range"}),
        (_missing_mid_slice, {"lv_missing_mid"}),
        (_no_rv, {"rv_missing", "no_rv_insertion"}),
        (_small_heart, {"lvedv_range"}),
        (_few_slices, {"few_lv_slices"}),
    ],
    ids=lambda value: value.__name__.strip("_") if callable(value) else None,
)
def test_qc_flag_fires_on_the_phantom_built_for_it(ph, build, expected):
    ed, es = build(ph)
    result = measure_frames(ed, es, ph.SPACING, np.diag([*ph.SPACING, 1.0]))
    found = codes(result)
    assert expected <= found, result["qc_flags"]
    for item in result["qc_flags"]:
        assert item["rule"] and item["detail"]


def test_unlabelled_slices_are_excluded_and_reported(ph):
    ed, es = ph.clean_pair()
    clean = measure_frames(ed, es, ph.SPACING, np.diag([*ph.SPACING, 1.0]))
    ed[..., 5] = 255
    result = measure_frames(ed, es, ph.SPACING, np.diag([*ph.SPACING, 1.0]))  # finds the 255 slice itself
    assert codes(result) == {"excluded_slices"}  # neither a missing mid slice nor two components
    assert result["excluded_slices"] == {"ED": [5], "ES": []}
    per_slice_ml = clean["measures"]["lv_edv_ml"] / len(ph.LV_SLICES)
    assert result["measures"]["lv_edv_ml"] == pytest.approx(clean["measures"]["lv_edv_ml"] - per_slice_ml)
