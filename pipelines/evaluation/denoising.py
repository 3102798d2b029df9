"""Denoising metrics of one volume: PSNR over the whole volume and SSIM averaged over its 2D slices.

For a denoised (or noisy) volume ``p`` and the clean one ``t``, both on the intensity scale ``[0, R]`` (``R`` = 1
for images normalised to [0, 1]) and ``N`` voxels:

- ``PSNR = 10 log10(R^2 / MSE)``, ``MSE = 1/N sum (p - t)^2`` (MONAI's ``PSNRMetric``, ``max_val = R``);
- ``SSIM = 1/D sum_k SSIM(p_k, t_k)`` over the ``D`` slices ``k`` along the last axis, each the mean of the local
  SSIM map of Wang et al. 2004 (11x11 Gaussian window, sigma 1.5, k1 = 0.01, k2 = 0.03; MONAI's ``SSIMMetric``,
  ``data_range = R``). SSIM is 2D because the short-axis slices are 6-10 mm apart: not an isotropic 3D grid.

No mask: the Sunnybrook crops are centred on the heart and nearly all tissue.
"""

from __future__ import annotations

import torch
from monai.data import MetaTensor
from monai.metrics import PSNRMetric, SSIMMetric

__all__ = ["denoising_metrics", "as_volume"]


def as_volume(image: torch.Tensor) -> torch.Tensor:
    """An ``(H, W, D)`` float tensor from ``(H, W, D)``, ``(1, H, W, D)``, ``(1, 1, H, W, D)`` or a 2D ``(H, W)``
    / ``(1, H, W)`` slice (which becomes ``(H, W, 1)``)."""
    v = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
    v = v.detach().cpu().float()
    while v.ndim > 3 and v.shape[0] == 1:
        v = v[0]
    if v.ndim == 3 and v.shape[0] == 1 and tuple(image.shape)[-3] == 1:  # a (1, H, W) slice
        v = v[0]
    if v.ndim == 2:
        v = v[..., None]
    if v.ndim != 3:
        raise ValueError(f"expected one volume (H, W, D) with leading dimensions of size 1, got {tuple(image.shape)}")
    return v


def denoising_metrics(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> dict[str, float]:
    """``{"psnr", "ssim"}`` of one volume against the clean one (see the module docstring).

    Args:
        pred: the denoised (or noisy) volume, ``(H, W, D)`` with optional leading dimensions of size 1.
        target: the clean volume, same shape.
        data_range: ``R``, the intensity range of the clean images.
    """
    p, t = as_volume(pred), as_volume(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction and target shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    psnr = PSNRMetric(max_val=data_range)(p[None, None], t[None, None])
    slices_p, slices_t = p.permute(2, 0, 1)[:, None], t.permute(2, 0, 1)[:, None]  # (D, 1, H, W)
    ssim = SSIMMetric(spatial_dims=2, data_range=data_range)(slices_p, slices_t)
    return {"psnr": float(psnr.mean().item()), "ssim": float(ssim.mean().item())}
