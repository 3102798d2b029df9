"""Tests for :mod:`pipelines.evaluation.synthesis`: masked MAE / PSNR / SSIM against hand computations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.evaluation.synthesis import masked_mae, masked_psnr, masked_ssim, synthesis_metrics

H, W, D = 32, 32, 2


def texture(seed: int, shape: tuple[int, ...] = (H, W, D)) -> torch.Tensor:
    """Random 0..255 values: SSIM of a texture against a perturbed copy is well below 1."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 255


def box_mask(rows: slice, cols: slice, shape: tuple[int, ...] = (H, W, D)) -> torch.Tensor:
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[rows, cols] = True
    return mask


def test_mae_is_the_mean_over_the_mask_only() -> None:
    target = torch.zeros(4, 4, 1)
    pred = torch.zeros(4, 4, 1)
    pred[0, 0, 0], pred[0, 1, 0] = 2.0, -4.0  # inside the mask: |2| + |-4| over 4 pixels
    pred[3, 3, 0] = 1e6  # outside the mask
    mask = box_mask(slice(0, 2), slice(0, 2), (4, 4, 1))
    assert masked_mae(pred, target, mask) == pytest.approx(6 / 4)


def test_psnr_is_ten_log10_of_peak_squared_over_the_masked_mse() -> None:
    pred, target = texture(0), texture(1)
    mask = box_mask(slice(4, 20), slice(8, 30))
    pred[~mask] = 1e4  # outside the mask: must not count
    p, t, m = pred.numpy(), target.numpy(), mask.numpy()
    mse = np.mean((p[m].astype(np.float64) - t[m]) ** 2)
    assert masked_psnr(pred, target, mask) == pytest.approx(10 * np.log10(255.0**2 / mse), rel=1e-5)
    assert masked_psnr(pred, target, mask, data_range=1.0) == pytest.approx(10 * np.log10(1.0 / mse), rel=1e-5)


def test_identical_images_give_infinite_psnr_zero_mae_and_unit_ssim() -> None:
    image = texture(0)
    mask = box_mask(slice(8, 24), slice(8, 24))
    metrics = synthesis_metrics(image, image.clone(), mask)
    assert metrics["mae"] == 0.0
    assert metrics["psnr"] == math.inf
    assert metrics["ssim"] == pytest.approx(1.0, abs=1e-6)


def test_ssim_with_a_full_mask_matches_scikit_image() -> None:
    """Full mask: the mean of the valid SSIM map, i.e. skimage's Gaussian SSIM (sigma 1.5, population statistics)."""
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    target = texture(0, (H, W, 1))
    pred = (target + texture(1, (H, W, 1)) * 0.3).clamp(0, 255)
    expected = structural_similarity(
        pred[..., 0].numpy().astype(np.float64), target[..., 0].numpy().astype(np.float64),
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255.0,
    )
    value = masked_ssim(pred, target, torch.ones(H, W, 1))
    assert value < 0.95
    assert value == pytest.approx(expected, abs=1e-4)


def test_ssim_ignores_an_error_far_outside_the_mask() -> None:
    target = texture(0)
    pred = target.clone()
    pred[24:30, 24:30] += 100.0  # every 11x11 window touching it is centred >= 19 px from the mask
    mask = box_mask(slice(5, 10), slice(5, 10))
    assert masked_ssim(pred, target, mask) == pytest.approx(1.0, abs=1e-6)
    # noise just beside the mask reaches it through the window: the check above is not vacuous
    near = target.clone()
    near[10:16, 10:16] = texture(1, (6, 6, D))
    assert masked_mae(near, target, mask) == 0.0
    assert masked_ssim(near, target, mask) < 0.999


def test_ssim_leaves_out_mask_pixels_within_five_pixels_of_the_border() -> None:
    target = texture(0)
    pred = target.clone()
    pred[0:2, 24:30] += 100.0  # an error on the image border, inside the mask
    mask = box_mask(slice(0, 5), slice(None))  # a band along the border ...
    mask |= box_mask(slice(16, 22), slice(4, 10))  # ... and a block far from the error
    assert masked_mae(pred, target, mask) > 0  # the error is in the mask for MAE
    assert masked_ssim(pred, target, mask) == pytest.approx(1.0, abs=1e-6)  # but not where SSIM is defined
    with pytest.raises(ValueError, match="5 pixels"):
        masked_ssim(pred, target, box_mask(slice(0, 5), slice(None)))


def test_ssim_runs_slice_by_slice() -> None:
    target = texture(0)
    pred = target.clone()
    pred[..., 1] = (pred[..., 1] + texture(2, (H, W)) * 0.5).clamp(0, 255)  # only slice 1 differs
    mask_0 = torch.zeros(H, W, D, dtype=torch.bool)
    mask_0[..., 0] = True
    # a 3D window would carry slice 1's error into slice 0
    assert masked_ssim(pred, target, mask_0) == pytest.approx(1.0, abs=1e-6)
    slice_1 = masked_ssim(pred[..., 1:], target[..., 1:], torch.ones(H, W, 1))
    assert slice_1 < 0.95
    mask_1 = ~mask_0
    assert masked_ssim(pred, target, mask_1) == pytest.approx(slice_1, abs=1e-6)
    # equal valid areas in both slices: the mean of the two slice means
    assert masked_ssim(pred, target, torch.ones(H, W, D)) == pytest.approx((1.0 + slice_1) / 2, abs=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, H, W, D), (H, W, D), (H, W)], ids=["batch-channel", "volume", "slice"])
def test_accepts_volumes_with_leading_unit_dimensions_and_single_slices(shape: tuple[int, ...]) -> None:
    target = texture(0, (H, W, D))
    pred = (target + texture(1, (H, W, D)) * 0.3).clamp(0, 255)
    mask = box_mask(slice(6, 26), slice(6, 26))
    if len(shape) == 2:  # a single slice is the D = 1 volume of its first slice
        target, pred, mask = target[..., 0], pred[..., 0], mask[..., 0]
    expected = synthesis_metrics(pred.reshape(H, W, -1), target.reshape(H, W, -1), mask.reshape(H, W, -1))
    got = synthesis_metrics(pred.reshape(shape), target.reshape(shape), mask.reshape(shape))
    assert got == pytest.approx(expected)
    assert all(math.isfinite(v) for v in got.values())


def test_shape_mismatch_and_empty_mask_are_value_errors() -> None:
    image = texture(0)
    with pytest.raises(ValueError, match="shapes differ"):
        masked_mae(image, image[:, :-1], torch.ones(H, W, D))
    with pytest.raises(ValueError, match="shapes differ"):
        masked_psnr(image, image, torch.ones(H, W, D + 1))
    for metric in (masked_mae, masked_psnr, masked_ssim, synthesis_metrics):
        with pytest.raises(ValueError, match="empty"):
            metric(image, image, torch.zeros(H, W, D))


def test_identity_baseline_mae_on_real_data_is_the_numpy_mean(brain_npz: Path) -> None:
    """T1 taken as the CT of one patient, inside the CT head mask: the masked MAE is the plain mean |t1 - ct|."""
    from pipelines.data.brain_mr_ct import head_mask

    with np.load(brain_npz) as archive:
        patient = archive["patient"]
        indices = np.flatnonzero(patient == patient.min())
        indices = indices[np.argsort(archive["slice"][indices])]
        ct = np.moveaxis(archive["ct"][indices], 0, -1)  # (H, W, D) uint8
        t1 = np.moveaxis(archive["t1"][indices], 0, -1)
    mask = np.stack([head_mask(ct[..., k]) for k in range(ct.shape[-1])], axis=-1)
    assert 0.05 < mask.mean() < 0.95

    expected = np.abs(t1.astype(np.float64) - ct.astype(np.float64))[mask].mean()  # uint8 subtraction would wrap
    assert masked_mae(torch.from_numpy(t1), torch.from_numpy(ct), torch.from_numpy(mask)) == pytest.approx(
        expected, rel=1e-5
    )
