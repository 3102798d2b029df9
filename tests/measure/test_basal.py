"""The basal end-systolic RV slice rule (:mod:`pipelines.measure.basal`) on phantoms, and its options."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from pipelines import api
from pipelines.cli import main
from pipelines.measure import measure_frames
from pipelines.measure.basal import DEFAULT_MIN_RATIO, trim_basal_es_rv


def _es_with_small_basal_rv(ph, basal: int) -> np.ndarray:
    """The clean ES frame whose RV on slice ``basal`` is a disc of 5 mm instead of 9 mm (area ratio about 0.3)."""
    _, es = ph.clean_pair()
    small = ph.ring_frame(*ph.ES_RADII, rv_radius=5.0, rv_offset=26.0)
    es[..., basal] = small[..., basal]
    return es


def test_a_basal_rv_slice_narrower_than_the_next_is_removed_from_es_only(ph):
    ed, _ = ph.clean_pair()  # the LV is as wide on every slice: the base counts as the low-index end
    es = _es_with_small_basal_rv(ph, 1)
    before = es.copy()
    voxel_ml = float(np.prod(ph.SPACING)) / 1000
    trimmed, record = trim_basal_es_rv(ed, es, voxel_ml)
    np.testing.assert_array_equal(es, before)  # the input is left alone
    ratio = np.count_nonzero(es[..., 1] == 1) / np.count_nonzero(es[..., 2] == 1)
    assert record["trimmed"] and record["slice"] == 1 and record["base_at"] == "low"
    assert record["area_ratio"] == pytest.approx(ratio) and ratio < DEFAULT_MIN_RATIO
    assert record["removed_ml"] == np.count_nonzero(es[..., 1] == 1) * voxel_ml
    assert not np.any(trimmed[..., 1] == 1)
    np.testing.assert_array_equal(trimmed[..., 1][es[..., 1] != 1], es[..., 1][es[..., 1] != 1])  # LV kept
    np.testing.assert_array_equal(trimmed[..., 2:], es[..., 2:])  # once: the other slices are untouched


def test_a_basal_slice_as_wide_as_the_next_is_kept(ph):
    ed, es = ph.clean_pair()
    out, record = trim_basal_es_rv(ed, es, 0.015)
    assert out is es and not record["trimmed"] and record["area_ratio"] == pytest.approx(1.0)
    out, record = trim_basal_es_rv(ed, _es_with_small_basal_rv(ph, 1), 0.015, min_ratio=0.0)
    assert not record["trimmed"]  # ratio 0 never removes anything


def test_the_base_comes_from_the_ed_lv(ph):
    ed = ph.ring_frame(*ph.ED_RADII)
    ed[..., 6:10] = ph.ring_frame(18.0, 25.0)[..., 6:10]  # wider towards high indices: the base is there
    es = _es_with_small_basal_rv(ph, 9)
    trimmed, record = trim_basal_es_rv(ed, es, 0.015)
    assert record["base_at"] == "high" and record["slice"] == 9 and record["trimmed"]
    assert not np.any(trimmed[..., 9] == 1) and np.any(trimmed[..., 1] == 1)


def test_measure_frames_reports_what_the_rule_removed(ph):
    ed, _ = ph.clean_pair()
    es = _es_with_small_basal_rv(ph, 1)
    plain = measure_frames(ed, es, ph.SPACING, np.eye(4))
    trimmed = measure_frames(ed, es, ph.SPACING, np.eye(4), basal_rv_min_ratio=DEFAULT_MIN_RATIO)
    assert plain["basal_rv_trim"] is None and plain["measures"]["rv_basal_trimmed_ml"] is None
    removed = trimmed["measures"]["rv_basal_trimmed_ml"]
    assert removed > 0 and trimmed["basal_rv_trim"]["slice"] == 1
    assert trimmed["measures"]["rv_esv_ml"] == pytest.approx(plain["measures"]["rv_esv_ml"] - removed)
    assert trimmed["measures"]["lv_ef_pct"] == plain["measures"]["lv_ef_pct"]


def test_measure_cli_trims_only_when_asked(tmp_path, capsys, ph, pair_files, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ed, es = pair_files(es=_es_with_small_basal_rv(ph, 1))
    cells = {}
    for name, extra in (("plain", []), ("trimmed", ["--trim-basal-rv", "0.8"])):
        assert main(["measure", "--ed", str(ed), "--es", str(es), "--output", str(tmp_path / name), *extra]) == 0
        with (tmp_path / name / "measures.csv").open(newline="", encoding="utf-8") as handle:
            cells[name] = next(csv.DictReader(handle))
    assert cells["plain"]["rv_basal_trimmed_ml"] == "" and float(cells["trimmed"]["rv_basal_trimmed_ml"]) > 0
    assert float(cells["trimmed"]["rv_ef_pct"]) > float(cells["plain"]["rv_ef_pct"])
    with pytest.raises(SystemExit):
        main(["measure", "--ed", str(ed), "--es", str(es), "--output", str(tmp_path / "x"), "--trim-basal-rv", "2"])
    assert "expected a number from 0 to 1" in capsys.readouterr().err


def test_predict_default_is_the_rule_default():
    assert api.BASAL_RV_MIN_RATIO == DEFAULT_MIN_RATIO
