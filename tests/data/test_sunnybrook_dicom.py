"""Tests for :mod:`pipelines.data.sunnybrook_dicom` on the real Sunnybrook sample (SCD0000101 / SC-HF-I-01)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from pipelines.data import sunnybrook_dicom
from pipelines.data.datalist import split_items
from pipelines.errors import InputError, OutputExistsError
from pipelines.io.dicom_cine import read_series

EXPERT = Path("SCD_ManualContours") / "SC-HF-I-01" / "contours-manual" / "IRCCI-expert"


@pytest.fixture(scope="module")
def cases(sunnybrook_dicom_dir: Path) -> dict[str, dict[str, Any]]:
    datalist = json.loads((sunnybrook_dicom_dir / "datalist.json").read_text())
    return {case["frame"]: case for case in datalist["cases"]}


def load(folder: Path, relative: str) -> tuple[nib.Nifti1Image, np.ndarray]:
    image = nib.load(folder / relative)
    return image, np.asanyarray(image.dataobj)


def test_datalist_lists_both_frames_for_external_testing_only(sunnybrook_dicom_dir: Path) -> None:
    datalist = json.loads((sunnybrook_dicom_dir / "datalist.json").read_text())

    assert [c["case_id"] for c in datalist["cases"]] == ["SCD0000101_ed", "SCD0000101_es"]
    assert datalist["splits"] == {
        "external": {"train": [], "validation": [], "test": ["SCD0000101_ed", "SCD0000101_es"]}
    }
    items = split_items(sunnybrook_dicom_dir / "datalist.json", "external", "test")
    assert [Path(i["image"]).name for i in items] == ["SCD0000101_ed.nii.gz", "SCD0000101_es.nii.gz"]
    assert all(Path(i["label"]).is_file() for i in items)


def test_cine_is_4d_with_the_series_geometry(
    sunnybrook_dicom_dir: Path, sunnybrook_dicom_sample: Path, cases: dict[str, dict[str, Any]]
) -> None:
    cine, voxels = load(sunnybrook_dicom_dir, cases["ed"]["image_4d"])
    series = read_series(sunnybrook_dicom_sample / "SCD_DeidentifiedImages" / "SCD0000101" / "CINESAX")

    assert cine.shape == (256, 256, 12, 20)
    np.testing.assert_allclose(cine.affine, series.affine, atol=1e-4)
    for frame in ("ed", "es"):
        image, frame_voxels = load(sunnybrook_dicom_dir, cases[frame]["image"])
        label, _ = load(sunnybrook_dicom_dir, cases[frame]["label"])
        assert image.shape == label.shape == (256, 256, 12)
        np.testing.assert_allclose(image.affine, cine.affine, atol=1e-6)
        np.testing.assert_allclose(label.affine, cine.affine, atol=1e-6)
        np.testing.assert_array_equal(frame_voxels, voxels[..., cases[frame]["phase_index"]])


def test_ed_and_es_phases_come_from_the_contours(cases: dict[str, dict[str, Any]]) -> None:
    # Contour files IM-0001-0059/0079/...-ocontour (ED) and 0048/0068/...-icontour (ES): phases 19 and 8 of 20.
    assert cases["ed"]["phase_index"] == 18
    assert cases["es"]["phase_index"] == 7
    assert cases["ed"]["labels_drawn"] == [2, 3]
    assert cases["es"]["labels_drawn"] == [3]
    assert "epicardial" in cases["ed"]["phase_found_by"]
    assert cases["ed"]["contour_image_match"] == ["file name"]


@pytest.mark.parametrize("frame", ["ed", "es"])
def test_labelled_and_unlabelled_slices(
    sunnybrook_dicom_dir: Path, cases: dict[str, dict[str, Any]], frame: str
) -> None:
    _, labels = load(sunnybrook_dicom_dir, cases[frame]["label"])
    labelled = cases[frame]["labelled_slices"]

    assert len(labelled) == 9
    for k in range(labels.shape[2]):
        values = set(np.unique(labels[:, :, k]).tolist())
        if k in labelled:
            assert values == ({0, 2, 3} if frame == "ed" else {0, 3})
        else:
            assert values == {sunnybrook_dicom.UNLABELLED}


def test_cavity_sits_on_the_bright_blood_pool(sunnybrook_dicom_dir: Path, cases: dict[str, dict[str, Any]]) -> None:
    _, image = load(sunnybrook_dicom_dir, cases["ed"]["image"])
    _, labels = load(sunnybrook_dicom_dir, cases["ed"]["label"])

    contrast = image[labels == 3].mean() / image[labels == 2].mean()
    assert contrast > 2
    # Labels with rows and columns swapped (the LV sits near the diagonal, so they overlap) fit much worse.
    swapped = labels.transpose(1, 0, 2)
    assert image[swapped == 3].mean() / image[swapped == 2].mean() < 0.7 * contrast


def test_expert_volumes_are_plausible(cases: dict[str, dict[str, Any]]) -> None:
    ed, es = cases["ed"]["lv_cavity_ml"], cases["es"]["lv_cavity_ml"]

    assert 20 < es < ed < 400
    assert 20 < cases["ed"]["lv_myocardium_ml"] < 400
    assert cases["es"]["lv_myocardium_ml"] is None


def test_existing_datalist_is_not_overwritten(sunnybrook_dicom_sample: Path, sunnybrook_dicom_dir: Path) -> None:
    with pytest.raises(OutputExistsError):
        sunnybrook_dicom.prepare(sunnybrook_dicom_dir, source=sunnybrook_dicom_sample)


def linked_source(sample: Path, root: Path) -> Path:
    """A source folder whose images are the sample's (symlinked) and whose expert contours are a copy to edit."""
    root.mkdir()
    (root / "SCD_DeidentifiedImages").symlink_to(sample / "SCD_DeidentifiedImages")
    shutil.copytree(sample / EXPERT, root / EXPERT)
    return root


def test_contour_naming_a_missing_image_is_refused(sunnybrook_dicom_sample: Path, tmp_path: Path) -> None:
    source = linked_source(sunnybrook_dicom_sample, tmp_path / "source")
    (source / EXPERT / "IM-0001-0999-icontour-manual.txt").write_text("1 1\n5 1\n5 5\n")

    with pytest.raises(InputError, match=r"IM-0001-0999-icontour-manual.txt: names image IM-0001-0999, which is not"):
        sunnybrook_dicom.convert(source, tmp_path / "out")


def test_malformed_contour_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "IM-0001-0048-icontour-manual.txt"
    path.write_text("120.50 137.50\n121.00 x\n")
    with pytest.raises(InputError, match=r"line 2: expected two numbers 'x y', got '121.00 x'"):
        sunnybrook_dicom.read_contour(path)


def test_studies_are_matched_by_the_patient_data_csv(sunnybrook_dicom_sample: Path, tmp_path: Path) -> None:
    source = linked_source(sunnybrook_dicom_sample, tmp_path / "source")
    (source / "scd_patientdata.csv").write_text("PatientID,OriginalID,Gender\nSCD0000101,SC-HF-I-1,Male\n")

    [study] = sunnybrook_dicom.find_studies(source)

    assert (study.patient_id, study.original_id) == ("SCD0000101", "SC-HF-I-01")
    assert "scd_patientdata.csv" in study.matched_by
    (source / "scd_patientdata.csv").write_text("PatientID,OriginalID\nSCD0000201,SC-HF-I-02\n")
    with pytest.raises(InputError, match=r"SC-HF-I-01: cannot match this contour folder to an image study"):
        sunnybrook_dicom.find_studies(source)


def test_rasterise_uses_x_for_columns_and_y_for_rows() -> None:
    square = np.array([[1.0, 2.0], [4.0, 2.0], [4.0, 3.0], [1.0, 3.0]])  # x 1..4, y 2..3

    mask = sunnybrook_dicom.rasterise(square, (6, 5))  # (x, y)

    assert mask.shape == (6, 5)
    assert {tuple(p) for p in np.argwhere(mask)} == {(x, y) for x in range(1, 5) for y in range(2, 4)}


def test_missing_source_says_there_is_no_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pipelines.errors import PipelineError

    monkeypatch.setenv("PIPELINES_DATA", str(tmp_path))
    monkeypatch.setattr(sunnybrook_dicom, "__file__", str(tmp_path / "repo" / "pipelines" / "data" / "x.py"))
    with pytest.raises(PipelineError, match=r"sunnybrook_dicom_sample: not found; .* no download"):
        sunnybrook_dicom.default_source()
