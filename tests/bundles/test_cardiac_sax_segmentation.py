"""Smoke run of the full-field bundle on a few real ACDC patients: train one tiny epoch, then predict on a 3D frame
and on a 4D cine, checking that every output lies on the input's exact grid and uses the ACDC label convention."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from pipelines import api
from pipelines.data import acdc

BUNDLE = "cardiac_sax_segmentation"
BUNDLE_DIR = api.BUNDLES_DIR / BUNDLE
REPO_ROOT = Path(__file__).resolve().parents[2]
PATIENTS = ("patient002", "patient010", "patient021", "patient041", "patient061", "patient085")  # 010: a fold-0 test patient
FAST = {"batch_size": 4, "val_interval": 1, "validate#inferer#sw_batch_size": 4}
NO_TTA = {"validate#tta_inferer#flip_axes": []}


@pytest.fixture(scope="module")
def acdc_small(acdc_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A datalist of six real ACDC patients (every diagnosis group)."""
    training = acdc_dir / "training"
    source = tmp_path_factory.mktemp("acdc_source")
    for patient in PATIENTS:
        (source / patient).symlink_to(training / patient, target_is_directory=True)
    return acdc.convert(source, tmp_path_factory.mktemp("acdc"), n_val=1).parent


@pytest.fixture(scope="module")
def trained(acdc_small: Path, tmp_path_factory: pytest.TempPathFactory, one_thread_module: None) -> Path:
    run_dir = tmp_path_factory.mktemp("train")
    summary = api.train(BUNDLE, acdc_small, run_dir, epochs=1, max_cases=2, overrides=FAST)
    assert summary["epochs"] == 1 and 0.0 <= summary["best_val_dice"] <= 1.0
    return run_dir / "models" / "model.pt"


@pytest.fixture(scope="module")
def one_thread_module() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _frame(acdc_small: Path, case_id: str) -> Path:
    datalist = json.loads((acdc_small / "datalist.json").read_text(encoding="utf-8"))
    return Path(next(c["image"] for c in datalist["cases"] if c["case_id"] == case_id))


def test_training_writes_a_four_class_unet(trained: Path) -> None:
    state = torch.load(trained, weights_only=True)
    last = [v for k, v in state.items() if k.endswith("weight")][-1]
    assert last.shape[0] == 4 or last.shape[1] == 4  # the output layer has 4 classes (ACDC labels)


def test_predict_a_frame_keeps_its_exact_grid(trained: Path, acdc_small: Path, tmp_path: Path) -> None:
    image = _frame(acdc_small, "patient002_ed")
    report = api.predict(BUNDLE, image, tmp_path, checkpoint=trained, overrides=NO_TTA)
    assert report.ok and len(report.written) == 1
    written, source = nib.load(report.written[0]), nib.load(image)
    assert written.shape == source.shape
    np.testing.assert_array_equal(written.affine, source.affine)
    np.testing.assert_allclose(written.header.get_zooms(), source.header.get_zooms())
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2, 3}
    assert written.get_data_dtype() == np.uint8


def test_ensemble_weights_run_with_the_same_configs(trained: Path, acdc_small: Path, tmp_path: Path) -> None:
    """An ensemble of the trained model with itself (the shipped weights' format) predicts what the model does."""
    from pipelines.io.atomic import atomic_torch_save
    from pipelines.networks.ensemble import ensemble_weights

    ensemble = atomic_torch_save({"model": ensemble_weights([trained, trained])}, tmp_path / "ensemble.pt")
    image = _frame(acdc_small, "patient002_es")
    single = api.predict(BUNDLE, image, tmp_path / "single", checkpoint=trained, overrides=NO_TTA)
    double = api.predict(BUNDLE, image, tmp_path / "double", checkpoint=ensemble, overrides=NO_TTA)
    assert single.ok and double.ok
    np.testing.assert_array_equal(np.asarray(nib.load(double.written[0]).dataobj),
                                  np.asarray(nib.load(single.written[0]).dataobj))


def test_predict_a_4d_cine_writes_one_4d_label_map_in_frame_order(
    trained: Path, acdc_small: Path, tmp_path: Path
) -> None:
    ed, es = (nib.load(_frame(acdc_small, f"patient002_{f}")) for f in ("ed", "es"))
    voxels = np.stack([np.asarray(ed.dataobj), np.asarray(es.dataobj)], axis=-1)
    cine = nib.Nifti1Image(voxels, ed.affine)
    cine.header.set_xyzt_units("mm", "msec")
    cine.header["pixdim"][4] = 40.0
    cine_path = tmp_path / "patient002_4d.nii.gz"
    nib.save(cine, cine_path)
    report = api.predict(BUNDLE, cine_path, tmp_path / "cine", checkpoint=trained, overrides=NO_TTA)
    assert report.ok and [p.name for p in report.written] == ["patient002_4d_seg.nii.gz"]
    labels = nib.load(report.written[0])
    assert labels.shape == voxels.shape
    np.testing.assert_array_equal(labels.affine, ed.affine)
    assert labels.header["pixdim"][4] == pytest.approx(40.0)
    # frame t of the cine is predicted exactly as the same 3D frame on its own
    single = api.predict(BUNDLE, _frame(acdc_small, "patient002_es"), tmp_path / "es", checkpoint=trained,
                         overrides=NO_TTA)
    np.testing.assert_array_equal(np.asarray(labels.dataobj)[..., 1], np.asarray(nib.load(single.written[0]).dataobj))
    assert sorted(p.name for p in (tmp_path / "cine").iterdir()) == ["patient002_4d_seg.nii.gz"]


def test_slice_context_trains_a_three_channel_network_and_predicts_on_the_input_grid(
    acdc_small: Path, tmp_path: Path, one_thread_module: None
) -> None:
    """``slice_context=1`` (2.5D: each slice with its two neighbours as channels) in training and prediction alike."""
    context = {"slice_context": 1}
    api.train(BUNDLE, acdc_small, tmp_path / "run", epochs=1, max_cases=1, overrides={**FAST, **context})
    checkpoint = tmp_path / "run" / "models" / "model.pt"
    first_conv = next(v for v in torch.load(checkpoint, weights_only=True).values() if v.ndim == 4)
    assert first_conv.shape[1] == 3
    image = _frame(acdc_small, "patient002_es")
    report = api.predict(BUNDLE, image, tmp_path / "pred", checkpoint=checkpoint, overrides={**NO_TTA, **context})
    assert report.ok
    written, source = nib.load(report.written[0]), nib.load(image)
    assert written.shape == source.shape
    np.testing.assert_array_equal(written.affine, source.affine)
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2, 3}


def test_metadata_states_the_acdc_label_convention_and_licence() -> None:
    meta = json.loads((BUNDLE_DIR / "configs" / "metadata.json").read_text(encoding="utf-8"))
    assert "1 right-ventricle cavity, 2 left-ventricle myocardium, 3 left-ventricle cavity" in meta["pred_classes"]
    assert "ACDC" in meta["intended_use"] and "research" in meta["intended_use"].lower()


def test_predict_a_dicom_cine_folder_writes_4d_labels_with_the_series_geometry(
    trained: Path, sunnybrook_dicom_dir: Path, sunnybrook_dicom_sample: Path, tmp_path: Path
) -> None:
    """The Sunnybrook cine as distributed (12 positions x 20 phases in one series) -> one 4D label map on the grid
    of the series' own 4D image (oblique affine, phases in trigger-time order, the time step kept)."""
    cine_folder = sunnybrook_dicom_sample / "SCD_DeidentifiedImages" / "SCD0000101" / "CINESAX"
    # one 256x256 window per slice keeps this smoke run short (the bundle's own window is 128x128)
    overrides = {**NO_TTA, "validate#inferer#roi_size": [256, 256]}
    report = api.predict(BUNDLE, cine_folder, tmp_path, checkpoint=trained, overrides=overrides)
    assert report.ok and [p.name for p in report.written] == ["CINESAX_seg.nii.gz"]
    labels = nib.load(report.written[0])
    image = nib.load(sunnybrook_dicom_dir / "images" / "SCD0000101_4d.nii.gz")  # pipelines data sunnybrook_dicom
    assert labels.shape == image.shape == (256, 256, 12, 20)
    np.testing.assert_allclose(labels.affine, image.affine, atol=1e-4)
    assert abs(labels.affine[2, 2]) < 9.0  # oblique: the stacking axis is not the scanner's z
    assert labels.header["pixdim"][4] == pytest.approx(image.header["pixdim"][4])


def test_evaluate_scores_every_class_per_patient(trained: Path, acdc_small: Path, tmp_path: Path) -> None:
    metrics = api.evaluate(BUNDLE, acdc_small, trained, tmp_path, subset="test", max_cases=2, overrides=NO_TTA)
    assert metrics["summary"]["n_cases"] == 2  # the LV myocardium (class 2) in metrics/
    for folder in ("rv_cavity", "lv_cavity"):
        scores = json.loads((tmp_path / "metrics" / folder / "metrics.json").read_text(encoding="utf-8"))
        assert [c["case_id"] for c in scores["cases"]] == [c["case_id"] for c in metrics["cases"]]
        assert all(0.0 <= c["dice"] <= 1.0 for c in scores["cases"])


def test_monai_bundle_run_with_mlflow_tracking(acdc_small: Path, tmp_path: Path, monai_bundle_run) -> None:
    """The model-zoo way: ``python -m monai.bundle run ... --tracking mlflow`` with the standard ids."""
    import mlflow

    out = tmp_path / "bundle_run"
    result = monai_bundle_run(BUNDLE_DIR, acdc_small, out, "--num_epochs", "1", "--max_cases", "1", "--batch_size", "4",
                              "--val_interval", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "models" / "model.pt").is_file()
    client = mlflow.MlflowClient(tracking_uri="sqlite:///" + (out / "mlruns.db").resolve().as_posix())
    experiment = client.get_experiment_by_name(BUNDLE)
    runs = client.search_runs([experiment.experiment_id])
    assert runs and "val_mean_dice" in runs[0].data.metrics


@pytest.mark.skipif(not (BUNDLE_DIR / "models" / "model.pt").is_file(), reason="no shipped weights")
def test_shipped_weights_segment_a_held_out_patient(acdc_small: Path, tmp_path: Path) -> None:
    """The shipped model on the ED frame of a fold-0 test patient (never seen in training or selection): the LV
    cavity, myocardium and RV cavity all overlap the experts' (Dice above 0.7) on the input's own grid."""
    from pipelines.evaluation.agreement import class_scores

    datalist = json.loads((acdc_small / "datalist.json").read_text(encoding="utf-8"))
    full = json.loads((REPO_ROOT / "bundles" / BUNDLE / "configs" / "metadata.json").read_text(encoding="utf-8"))
    held_out = set(full["eval_metrics"]["test_patients_ids"])
    case = next(c for c in datalist["cases"] if c["patient"] in held_out and c["frame"] == "ed")
    report = api.predict(BUNDLE, case["image"], tmp_path, overrides=NO_TTA)
    assert report.ok
    predicted = np.asarray(nib.load(report.written[0]).dataobj)
    expert = nib.load(case["label"])
    scores = class_scores(predicted, np.asarray(expert.dataobj), expert.header.get_zooms()[:3],
                          {1: "rv", 2: "myo", 3: "lv"})
    assert min(scores["dice_rv"], scores["dice_myo"], scores["dice_lv"]) > 0.7, scores
