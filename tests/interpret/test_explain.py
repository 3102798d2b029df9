"""``pipelines explain`` end to end on a real Sunnybrook image: files written, the input's exact geometry, no
overwriting without ``--overwrite``, MLflow artifacts when tracked. The weights are random (files and geometry do
not depend on training); the maps' meaning is tested in ``test_sanity.py``."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import mlflow
import nibabel as nib
import numpy as np
import pytest

from pipelines.cli import main

BUNDLE = "lv_segmentation_unet"
GEOMETRY_FIELDS = ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y",
                   "qoffset_z", "srow_x", "srow_y", "srow_z", "pixdim", "dim", "xyzt_units")  # fmt: skip
FAST = ["--patch-size", "8", "--stride", "8", "--batch-size", "64"]


@pytest.fixture(autouse=True)
def untracked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def oblique_image(sunnybrook_dir: Path, tmp_path: Path) -> Path:
    """Three real slices under an oblique, translated affine with 2.5 mm pixels (resampled to the bundle's 3.0 mm
    for the network and back for the map)."""
    source = nib.load(sunnybrook_dir / "images" / "scd_043.nii.gz")
    angle = np.deg2rad(20)
    affine = np.eye(4)
    affine[:3, :3] = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    ) @ np.diag([2.5, 2.5, 9.0])
    affine[:3, 3] = [-40.0, 12.5, 7.0]
    path = tmp_path / "inputs" / "oblique.nii.gz"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(np.asarray(source.dataobj)[..., 3:6], affine), path)
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_explain_writes_maps_with_the_input_geometry_and_refuses_to_overwrite(
    oblique_image: Path, random_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "explained"
    args = ["explain", BUNDLE, "--input", oblique_image, "--output", out, "--checkpoint", random_checkpoint, *FAST]
    code, stdout, stderr = run_cli(capsys, *args, "--occlusion", "mean", "--bbox", "8", "47", "-1", "-1")
    assert code == 0, stderr
    nifti = out / "oblique_occlusion.nii.gz"
    figures = [out / f"oblique_occlusion_z{k}.png" for k in range(3)]
    assert stdout.split() == [str(p) for p in (nifti, *figures)]

    source, written = nib.load(oblique_image), nib.load(nifti)
    for name in GEOMETRY_FIELDS:
        np.testing.assert_array_equal(written.header[name], source.header[name], err_msg=name)
    np.testing.assert_array_equal(written.affine, source.affine)
    assert written.get_data_dtype() == np.float32
    values = np.asarray(written.dataobj)
    assert np.isfinite(values).all() and np.abs(values).max() > 0
    for figure in figures:
        pixels = matplotlib.image.imread(figure)
        assert pixels.shape[0] > 200 and len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50

    before = {path: path.read_bytes() for path in (nifti, *figures)}
    code, stdout, stderr = run_cli(capsys, *args)
    assert code == 1 and stdout == ""
    assert str(nifti) in stderr and "--overwrite" in stderr
    assert all(path.read_bytes() == data for path, data in before.items())
    assert not list(out.glob(".*tmp*")), "temporary files left behind"


def test_explain_overwrites_when_asked_and_logs_the_maps_to_mlflow(
    oblique_image: Path, random_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "explained"
    out.mkdir()
    stale = out / "oblique_occlusion_z1.png"
    stale.write_bytes(b"an earlier run")
    uri = "sqlite:///" + (tmp_path / "mlflow.db").as_posix()
    args = ["explain", BUNDLE, "--input", oblique_image.parent, "--output", out, "--checkpoint", random_checkpoint]
    code, _, stderr = run_cli(capsys, *args, *FAST, "--tracking-uri", uri)
    assert code == 1 and str(stale) in stderr  # any one existing output blocks the input
    # --set reaches the run's config; a named option (--stride 8 in FAST) wins over a --set of the same value
    settings = ["--set", "occlusion_blur_sigma=1.5", "--set", "occlusion_stride=4"]
    code, _, stderr = run_cli(capsys, *args, *FAST, "--tracking-uri", uri, "--overwrite", "--score", "mean_probability",
                              *settings)
    assert code == 0, stderr
    assert stale.read_bytes()[:4] == b"\x89PNG"

    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name(BUNDLE).experiment_id])
    assert run.data.params["occlusion_score"] == "mean_probability"
    assert run.data.params["occlusion_stride"] == "8"
    assert run.data.params["occlusion_blur_sigma"] == "1.5"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"oblique_occlusion.nii.gz", "oblique_occlusion_z0.png", "oblique_occlusion_z2.png"} <= artifacts
