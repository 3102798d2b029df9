"""Measuring label-map files: outputs, overwrite rules, bad inputs, cines, batches and one real ACDC case."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipelines.errors import InputError, OutputExistsError
from pipelines.measure import COLUMNS, default_case_name, measure_batch, measure_cine, measure_pair
from pipelines.measure.labels import load_labels

REQUIRED = ["case", "lv_edv_ml", "lv_esv_ml", "lv_sv_ml", "lv_ef_pct", "lv_mass_g", "rv_edv_ml", "rv_esv_ml",
            "rv_ef_pct", "ed_frame", "es_frame", "qc_flags"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_pair_writes_csv_json_and_bullseye(tmp_path, pair_files):
    ed, es = pair_files()
    out = tmp_path / "out"
    summary = measure_pair(ed, es, out)
    assert summary["case"] == "phantom"
    assert {p.name for p in out.iterdir()} == {"measures.csv", "phantom.json", "phantom_bullseye.png"}
    rows = read_csv(out / "measures.csv")
    assert list(rows[0]) == list(COLUMNS) and set(REQUIRED) <= set(COLUMNS)
    assert float(rows[0]["lv_edv_ml"]) == summary["measures"]["lv_edv_ml"]  # written exactly
    assert rows[0]["qc_flags"] == "" and rows[0]["ed_frame"] == ""
    document = json.loads((out / "phantom.json").read_text())
    assert document["voxel_size_mm"] == [1.25, 1.5, 8.0]
    assert document["excluded_slices"] == {"ED": [], "ES": []}
    assert len(document["wall_thickness"]["segments"]) == 16
    assert (out / "phantom_bullseye.png").read_bytes()[:4] == b"\x89PNG"


def test_outputs_are_not_overwritten_unless_asked_and_rows_are_added(tmp_path, pair_files):
    ed, es = pair_files()
    out = tmp_path / "out"
    measure_pair(ed, es, out)
    with pytest.raises(OutputExistsError):
        measure_pair(ed, es, out)
    measure_pair(ed, es, out, overwrite=True)
    (out / "phantom.json").unlink()
    (out / "phantom_bullseye.png").unlink()
    with pytest.raises(OutputExistsError, match="case phantom"):  # its row is still in the table
        measure_pair(ed, es, out)
    measure_pair(ed, es, out, case="second")
    assert [row["case"] for row in read_csv(out / "measures.csv")] == ["phantom", "second"]


def test_unlabelled_slices_are_reported_in_the_outputs(tmp_path, pair_files, ph):
    ed_labels, es_labels = ph.clean_pair()
    ed_labels[..., 2] = 255
    ed, es = pair_files(ed_labels, es_labels)
    summary = measure_pair(ed, es, tmp_path / "out")
    assert summary["qc_flags"] == ["excluded_slices"]
    assert summary["row"]["excluded_slices"] == "1"
    document = json.loads((tmp_path / "out" / "phantom.json").read_text())
    assert document["excluded_slices"] == {"ED": [2], "ES": []}
    assert document["qc_flags"][0]["detail"].startswith("unlabelled slices: ED [2]")


def test_cine_finds_ed_and_es_and_draws_the_curve(tmp_path, ph):
    cine = ph.save_labels(tmp_path / "heart_4d.nii.gz", ph.cine_labels(), (*ph.SPACING, 30.0))
    out = tmp_path / "out"
    summary = measure_cine(cine, out)
    assert summary["case"] == "heart"
    radii = np.array(ph.CINE_RADII)
    assert summary["row"]["ed_frame"] == str(int(np.argmax(radii)) + 1) == "3"
    assert summary["row"]["es_frame"] == str(int(np.argmin(radii)) + 1) == "6"
    document = json.loads((out / "heart.json").read_text())
    lv = document["volume_curve"]["lv_ml"]
    assert np.argmax(lv) == 2 and np.argmin(lv) == 5
    assert summary["measures"]["lv_edv_ml"] == max(lv) and summary["measures"]["lv_esv_ml"] == min(lv)
    assert (out / "heart_volume_curve.png").is_file() and (out / "heart_bullseye.png").is_file()


def _set_pixdim(path: Path, axis: int, value: float) -> None:
    """Write ``value`` into ``pixdim[axis]`` of a gzipped NIfTI-1 file's header, bypassing nibabel's checks."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<f", raw, 76 + 4 * axis, value)  # pixdim: 8 float32 at byte 76
    path.write_bytes(gzip.compress(bytes(raw)))


def _unknown_label(ph, folder):
    ed, es = ph.clean_pair()
    ed[0, 0, 0] = 4
    return ph.save_labels(folder / "p_ed.nii.gz", ed), ph.save_labels(folder / "p_es.nii.gz", es), "ed", "4"


def _zero_spacing(ph, folder):
    ed, es = ph.clean_pair()
    ed_path = ph.save_labels(folder / "p_ed.nii.gz", ed)
    _set_pixdim(ed_path, 2, 0.0)
    return ed_path, ph.save_labels(folder / "p_es.nii.gz", es), "ed", "voxel size"


def _nan_spacing(ph, folder):
    ed, es = ph.clean_pair()
    es_path = ph.save_labels(folder / "p_es.nii.gz", es)
    _set_pixdim(es_path, 3, float("nan"))
    return ph.save_labels(folder / "p_ed.nii.gz", ed), es_path, "es", "voxel size"


def _mismatched_shape(ph, folder):
    ed, es = ph.clean_pair()
    return ph.save_labels(folder / "p_ed.nii.gz", ed), ph.save_labels(folder / "p_es.nii.gz", es[:-2]), "es", "grid"


def _mismatched_affine(ph, folder):
    ed, es = ph.clean_pair()
    es_path = ph.save_labels(folder / "p_es.nii.gz", es, (1.25, 1.5, 10.0))
    return ph.save_labels(folder / "p_ed.nii.gz", ed), es_path, "es", "affine"


def _empty_lv(ph, folder):
    ed, es = ph.clean_pair()
    ed[ed == 3] = 2
    return ph.save_labels(folder / "p_ed.nii.gz", ed), ph.save_labels(folder / "p_es.nii.gz", es), "ed", "LV cavity"


def _lost_spacing(ph, folder):
    ed, es = ph.clean_pair()
    nib.save(nib.Nifti1Image(ed, np.eye(4)), folder / "p_ed.nii.gz")
    return folder / "p_ed.nii.gz", ph.save_labels(folder / "p_es.nii.gz", es), "ed", "lost the spacing"


@pytest.mark.parametrize(
    "build", [_unknown_label, _zero_spacing, _nan_spacing, _mismatched_shape, _mismatched_affine, _empty_lv,
              _lost_spacing],
    ids=lambda build: build.__name__.strip("_"),
)
def test_bad_input_is_a_one_line_error_naming_the_file(tmp_path, ph, build):
    ed, es, culprit, words = build(ph, tmp_path)
    with pytest.raises(InputError) as caught:
        measure_pair(ed, es, tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message and words in message
    assert message.startswith(str(ed if culprit == "ed" else es))
    assert not (tmp_path / "out" / "measures.csv").exists()


def test_a_3d_file_is_not_a_cine(tmp_path, ph):
    path = ph.save_labels(tmp_path / "x_4d.nii.gz", ph.clean_pair()[0])
    with pytest.raises(InputError, match="4D cine"):
        load_labels(path, 4)


@pytest.mark.parametrize(
    ("name", "case"),
    [("patient002_frame01_gt.nii.gz", "patient002"), ("patient002_4d.nii.gz", "patient002"),
     ("p7_ED_seg.nii.gz", "p7"), ("heart_cine.nii", "heart"), ("ed.nii.gz", "ed")],
)
def test_default_case_name(name, case):
    assert default_case_name(name) == case


def test_batch_carries_on_past_a_bad_case(tmp_path, ph, pair_files):
    folder = tmp_path / "batch"
    pair_files(name="good", folder=folder)
    bad_ed, es = ph.clean_pair()
    bad_ed[3, 3, 3] = 7
    pair_files(bad_ed, es, name="bad", folder=folder)
    ph.save_labels(folder / "orphan_ed.nii.gz", es)
    ph.save_labels(folder / "beating_4d.nii.gz", ph.cine_labels(), (*ph.SPACING, 30.0))
    result = measure_batch(folder, tmp_path / "out")
    assert sorted(Path(s).name for s in result.done) == ["beating_4d.nii.gz", "good_ed.nii.gz"]
    assert sorted(Path(s).name for s in result.failed) == ["bad_ed.nii.gz", "orphan_ed.nii.gz"]
    assert "label values outside" in result.failed[str(folder / "bad_ed.nii.gz")]
    assert "no matching ES" in result.failed[str(folder / "orphan_ed.nii.gz")]
    assert sorted(row["case"] for row in read_csv(tmp_path / "out" / "measures.csv")) == ["beating", "good"]


def test_batch_of_an_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no cases found"):
        measure_batch(tmp_path / "empty", tmp_path / "out")


def _acdc_files(acdc_dir: Path, patient: str = "patient002") -> tuple[Path, Path, Path]:
    folder = acdc_dir / "training" / patient
    if not folder.is_dir():
        pytest.skip(f"{folder} not in the shared ACDC copy")
    return folder / f"{patient}_frame01_gt.nii.gz", folder / f"{patient}_frame12_gt.nii.gz", folder / "Info.cfg"


def test_acdc_expert_labels_measure_as_counted_by_hand(tmp_path, acdc_dir):
    ed, es, _ = _acdc_files(acdc_dir)
    summary = measure_pair(ed, es, tmp_path / "out")
    image = nib.load(ed)
    ed_labels, es_labels = np.asarray(image.dataobj), np.asarray(nib.load(es).dataobj)
    dx, dy, dz = (float(z) for z in image.header.get_zooms()[:3])
    voxel_ml = dx * dy * dz / 1000.0
    m = summary["measures"]
    assert m["lv_edv_ml"] == np.sum(ed_labels == 3) * voxel_ml
    assert m["lv_esv_ml"] == np.sum(es_labels == 3) * voxel_ml
    assert m["rv_edv_ml"] == np.sum(ed_labels == 1) * voxel_ml
    assert m["rv_esv_ml"] == np.sum(es_labels == 1) * voxel_ml
    assert m["lv_mass_g"] == np.sum(ed_labels == 2) * voxel_ml * 1.05
    assert 10 < m["lv_ef_pct"] < 85 and 15 < m["rv_ef_pct"] < 85
    assert summary["row"]["ed_frame"] == "1" and summary["row"]["es_frame"] == "12"
    assert 5 < m["wall_thickness_mean_mm"] < m["wall_thickness_max_mm"] < 20


def test_batch_reads_the_acdc_layout(tmp_path, acdc_dir):
    ed, es, info = _acdc_files(acdc_dir)
    patient = tmp_path / "acdc" / "training" / "patient002"
    patient.mkdir(parents=True)
    for path in (ed, es, info):
        shutil.copy(path, patient / path.name)
    result = measure_batch(tmp_path / "acdc", tmp_path / "out")
    assert not result.failed
    row = read_csv(tmp_path / "out" / "measures.csv")[0]
    assert (row["case"], row["ed_frame"], row["es_frame"]) == ("patient002", "1", "12")
