"""Denoising metrics of a volume: PSNR over the volume, SSIM per slice (MONAI's metrics)."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.evaluation.denoising import as_volume, denoising_metrics


def test_psnr_follows_the_mse_and_ssim_drops_with_noise() -> None:
    torch.manual_seed(0)
    clean = torch.rand(32, 32, 3)
    noisy = clean + 0.1 * torch.randn_like(clean)
    scores = denoising_metrics(noisy, clean)
    mse = float(((noisy - clean) ** 2).mean())
    assert scores["psnr"] == pytest.approx(10 * math.log10(1 / mse), abs=1e-3)
    assert 0 < scores["ssim"] < 1
    assert denoising_metrics(clean, clean)["ssim"] == pytest.approx(1.0)
    assert denoising_metrics(noisy[None, None], clean[None])["psnr"] == pytest.approx(scores["psnr"])


@pytest.mark.parametrize(("shape", "expected"), [((1, 16, 16), (16, 16, 1)), ((1, 1, 16, 16, 4), (16, 16, 4)),
                                                 ((16, 16), (16, 16, 1))])
def test_as_volume_shapes(shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    assert tuple(as_volume(torch.zeros(shape)).shape) == expected


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="differ"):
        denoising_metrics(torch.zeros(16, 16, 2), torch.zeros(16, 16, 3))
