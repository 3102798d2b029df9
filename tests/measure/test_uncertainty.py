"""The per-case uncertainty next to the measures (``pipelines predict --measure``): the mean of the model's
uncertainty map over the heart voxels of each frame, on the frames the measures chose."""

from __future__ import annotations

import csv
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pytest

from pipelines.api import measure_predictions
from pipelines.measure.uncertainty import frame_uncertainty

AFFINE = np.diag([1.25, 1.5, 8.0, 1.0])  # the phantoms' spacing (tests/measure/conftest.py)


def _save(array: np.ndarray, path: Path) -> Path:
    nib.save(nib.Nifti1Image(array, AFFINE), path)
    return path


def _uncertainty_like(labels: np.ndarray, heart: float, background: float = 0.9) -> np.ndarray:
    return np.where(labels > 0, heart, background).astype(np.float32)


def test_frame_uncertainty_averages_over_the_heart_only(tmp_path: Path, ph: ModuleType) -> None:
    labels = ph.ring_frame(15.0, 22.0)
    entropy = _uncertainty_like(labels, 0.1)
    entropy[labels == 3] = 0.4  # the cavity is less certain than the rest of the heart
    seg, unc = _save(labels, tmp_path / "c_seg.nii.gz"), _save(entropy, tmp_path / "c_uncertainty.nii.gz")
    heart = labels > 0
    expected = (0.4 * np.count_nonzero(labels == 3) + 0.1 * np.count_nonzero(heart & (labels != 3))) / heart.sum()
    assert frame_uncertainty(seg, unc) == pytest.approx(expected, rel=1e-6)
    empty = _save(np.zeros_like(labels), tmp_path / "e_seg.nii.gz")
    assert frame_uncertainty(empty, unc) == 1.0  # nothing labelled as heart: as unsure as it gets


def test_predict_measure_pairs_ed_es_frames_and_picks_the_cine_frames(tmp_path: Path, ph: ModuleType) -> None:
    ed, es = ph.ring_frame(15.0, 22.0), ph.ring_frame(10.0, 18.0)
    written = [
        _save(ed, tmp_path / "p1_ed_seg.nii.gz"), _save(_uncertainty_like(ed, 0.2), tmp_path / "p1_ed_uncertainty.nii.gz"),
        _save(es, tmp_path / "p1_es_seg.nii.gz"), _save(_uncertainty_like(es, 0.3), tmp_path / "p1_es_uncertainty.nii.gz"),
        _save(ed, tmp_path / "lonely_seg.nii.gz"),
    ]
    # a cine whose largest cavity (ED) is frame 2 and smallest (ES) frame 0, each with its own uncertainty
    cine = np.stack([es, ph.ring_frame(12.0, 20.0), ed], axis=-1)
    entropy = np.stack([_uncertainty_like(f, u) for f, u in zip(np.moveaxis(cine, -1, 0), (0.5, 0.6, 0.7))], -1)
    written += [_save(cine, tmp_path / "c2_seg.nii.gz"), _save(entropy, tmp_path / "c2_uncertainty.nii.gz")]
    report = measure_predictions(written, tmp_path / "measures")
    assert report.ok and sorted(report.done) == ["c2", "p1"]
    with (tmp_path / "measures" / "uncertainty.csv").open(encoding="utf-8", newline="") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert rows["p1"] == {"case": "p1", "uncertainty_ed": "0.2000", "uncertainty_es": "0.3000", "uncertainty": "0.2500"}
    assert rows["c2"]["uncertainty_ed"] == "0.7000" and rows["c2"]["uncertainty_es"] == "0.5000"
    with (tmp_path / "measures" / "measures.csv").open(encoding="utf-8", newline="") as handle:
        measured = {row["case"]: row for row in csv.DictReader(handle)}
    assert set(measured) == {"p1", "c2"} and (measured["c2"]["ed_frame"], measured["c2"]["es_frame"]) == ("3", "1")
