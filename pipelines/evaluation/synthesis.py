"""Image-synthesis metrics inside a mask: MAE, PSNR and SSIM of a synthetic CT against the real one.

All three are computed on the data's own intensity scale (``data_range``; 255 for the 8-bit display values of
``brain_mr_ct``), over the pixels of a head (body) mask ``M`` only, so that the air around the patient, which any
model gets right, does not inflate the figures. For a prediction ``p``, a target ``t`` and ``N = |M|`` pixels:

- ``MAE  = 1/N sum_M |p - t|`` (MONAI's ``MAEMetric`` on the masked pixels);
- ``PSNR = 10 log10(R^2 / MSE)``, ``MSE = 1/N sum_M (p - t)^2`` (MONAI's ``PSNRMetric``, ``max_val = R``);
- ``SSIM = 1/|M'| sum_M' ssim(p, t)``: the local SSIM map of Wang et al. 2004 (11x11 Gaussian window,
  sigma 1.5, ``k1`` = 0.01, ``k2`` = 0.03, MONAI's ``compute_ssim_and_cs``) computed per 2D slice and averaged over
  the mask pixels ``M'`` whose window lies inside the slice (the map is "valid", 5 pixels smaller on each side).

Volumes are ``(H, W, D)`` (or with leading channel / batch dimensions of size 1); SSIM runs slice by slice along
the last axis, since the slices of this data are 5 mm apart and not an isotropic 3D grid.
"""

from __future__ import annotations

import math

import torch
from monai.metrics import MAEMetric, PSNRMetric
from monai.metrics.regression import compute_ssim_and_cs

__all__ = ["SSIM_WINDOW", "masked_mae", "masked_psnr", "masked_ssim", "synthesis_metrics"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def _volumes(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(H, W, D) float tensors and a bool mask; leading dimensions of size 1 are dropped, (H, W) becomes (H, W, 1)."""
    tensors = [torch.as_tensor(v).detach().cpu() for v in (pred, target, mask)]
    for v in tensors:
        if v.ndim > 3 and any(size != 1 for size in v.shape[:-3]):
            raise ValueError(f"expected one volume (H, W, D) with leading dimensions of size 1, got {tuple(v.shape)}")
    tensors = [v.reshape(v.shape[-3:]) if v.ndim > 3 else v for v in tensors]
    if tensors[0].ndim == 2:
        tensors = [v[..., None] for v in tensors]
    p, t, m = tensors
    if not p.shape == t.shape == m.shape:
        raise ValueError(f"prediction, target and mask shapes differ: {tuple(p.shape)}, {tuple(t.shape)}, {tuple(m.shape)}")
    if not m.any():
        raise ValueError("the mask is empty")
    return p.float(), t.float(), m.bool()


def masked_mae(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean absolute error over the mask's pixels."""
    p, t, m = _volumes(pred, target, mask)
    return float(MAEMetric()(p[m].view(1, 1, -1), t[m].view(1, 1, -1)).item())


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over the mask's pixels (``inf`` for identical images)."""
    p, t, m = _volumes(pred, target, mask)
    if torch.equal(p[m], t[m]):
        return math.inf
    return float(PSNRMetric(max_val=data_range)(p[m].view(1, 1, -1), t[m].view(1, 1, -1)).item())


def masked_ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, data_range: float = 255.0) -> float:
    """Mean of the per-slice 2D SSIM maps over the mask pixels whose 11x11 window fits in the slice."""
    p, t, m = _volumes(pred, target, mask)
    if min(p.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"slices of {tuple(p.shape[:2])} pixels are smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window")
    # slices as a batch: (D, 1, H, W)
    p, t = (v.permute(2, 0, 1)[:, None] for v in (p, t))
    ssim_map, _ = compute_ssim_and_cs(
        p, t, spatial_dims=2, kernel_size=[SSIM_WINDOW] * 2, kernel_sigma=[SSIM_SIGMA] * 2, data_range=data_range
    )
    half = SSIM_WINDOW // 2
    inner = m.permute(2, 0, 1)[:, None, half:-half, half:-half]  # the map is "valid": 2 * half smaller per axis
    if not inner.any():
        raise ValueError("the mask has no pixel at least 5 pixels from the image border")
    return float(ssim_map[inner].mean().item())


def synthesis_metrics(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, data_range: float = 255.0
) -> dict[str, float]:
    """``{"mae", "psnr", "ssim"}`` of one case, on the ``data_range`` scale, inside ``mask``."""
    return {
        "mae": masked_mae(pred, target, mask),
        "psnr": masked_psnr(pred, target, mask, data_range),
        "ssim": masked_ssim(pred, target, mask, data_range),
    }
