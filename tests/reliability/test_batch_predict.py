"""Batch prediction carries on: bad inputs are reported, the good ones written, a failed input leaves no file.

Real prepared Sunnybrook volumes and the bundle's shipped weights; nothing is trained.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipelines.transforms import save_nifti

BUNDLE = "lv_segmentation_unet"


def _real_inputs(sunnybrook_dir: Path, folder: Path, names: dict[str, str]) -> None:
    """Copy real volumes into ``folder`` as ``<name>.nii.gz`` (``names``: new name -> case id)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, case_id in names.items():
        shutil.copy(sunnybrook_dir / "images" / f"{case_id}.nii.gz", folder / f"{name}.nii.gz")


def _files(folder: Path) -> list[str]:
    """Every file in ``folder``, hidden ones (temporary files) included."""
    return sorted(p.name for p in folder.iterdir())


def test_bad_inputs_are_reported_and_the_good_ones_written(sunnybrook_dir: Path, tmp_path: Path, cli) -> None:
    inputs, output = tmp_path / "in", tmp_path / "out"
    _real_inputs(sunnybrook_dir, inputs, {"a_good": "scd_043", "c_good": "scd_044"})
    voxels = np.random.default_rng(0).normal(100, 20, (64, 64, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(voxels, np.eye(4)), inputs / "b_cut.nii.gz")
    cut = inputs / "b_cut.nii.gz"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    voxels[10, 10, 3] = np.nan
    nib.save(nib.Nifti1Image(voxels, np.eye(4)), inputs / "d_nan.nii.gz")

    result = cli("predict", BUNDLE, "--input", inputs, "--output", output)

    assert result.code == 1
    assert _files(output) == ["a_good_seg.nii.gz", "c_good_seg.nii.gz"]
    assert result.out.split() == [str(output / "a_good_seg.nii.gz"), str(output / "c_good_seg.nii.gz")]
    assert "Traceback" not in result.err
    assert result.error_lines() == [
        "error: 2 of 4 inputs failed:",
        f"  {inputs / 'b_cut.nii.gz'}: not a readable NIfTI file",
        f"  {inputs / 'd_nan.nii.gz'}: contains NaN or Inf voxels",
    ]


def test_an_input_failing_during_inference_leaves_nothing(
    sunnybrook_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    """The disk fills up while the second input's label map is written, after its probability map was: the first
    and third inputs are written in full, the second leaves no file at all (not even a temporary one)."""
    inputs, output = tmp_path / "in", tmp_path / "out"
    _real_inputs(sunnybrook_dir, inputs, {"a": "scd_042", "b": "scd_043", "c": "scd_044"})
    real_save = nib.save

    def disk_full_on_b_seg(image: nib.Nifti1Image, path: str | Path) -> None:
        if Path(path).name.startswith(".b_seg.nii.gz."):  # the temporary file of b_seg.nii.gz
            Path(path).write_bytes(b"half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(image, path)

    monkeypatch.setattr(save_nifti.nib, "save", disk_full_on_b_seg)

    result = cli("predict", BUNDLE, "--input", inputs, "--output", output, "--probabilities")

    assert result.code == 1
    assert _files(output) == ["a_prob.nii.gz", "a_seg.nii.gz", "c_prob.nii.gz", "c_seg.nii.gz"]
    assert "Traceback" not in result.err
    assert result.error_lines() == [
        "error: 1 of 3 inputs failed:",
        f"  {inputs / 'b.nii.gz'}: failed (OSError: [Errno 28] No space left on device)",
    ]
