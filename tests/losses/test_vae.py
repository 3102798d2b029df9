"""The VAE loss on a case computed by hand, and its reductions."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.losses import VAELoss, kl_divergence


def _case() -> tuple[torch.Tensor, ...]:
    """One image of 2 pixels and a 2-dimensional latent, chosen so that every term is simple by hand."""
    target = torch.tensor([[0.5, 1.0]])
    reconstruction = torch.tensor([[0.5, 0.5]])
    mu = torch.tensor([[0.0, 1.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])  # s^2 = 1 and 4
    return reconstruction, target, mu, logvar


def test_kl_by_hand() -> None:
    _, _, mu, logvar = _case()
    # -1/2 [(1 + 0 - 0 - 1) + (1 + ln 4 - 1 - 4)] = 2 - ln 2
    assert kl_divergence(mu, logvar).tolist() == pytest.approx([2.0 - math.log(2.0)])
    assert kl_divergence(torch.zeros(3, 5), torch.zeros(3, 5)).tolist() == [0.0, 0.0, 0.0]  # q = prior


def test_bce_loss_by_hand() -> None:
    # BCE: pixel 1 -(0.5 ln 0.5 + 0.5 ln 0.5) = ln 2, pixel 2 -ln 0.5 = ln 2; sum 2 ln 2
    # beta 2: 2 ln 2 + 2 (2 - ln 2) = 4 exactly
    terms = VAELoss(beta=2.0)(*_case())
    assert terms.reconstruction.item() == pytest.approx(2 * math.log(2.0))
    assert terms.kl.item() == pytest.approx(2.0 - math.log(2.0))
    assert terms.loss.item() == pytest.approx(4.0)


def test_mse_and_batch_mean() -> None:
    reconstruction, target, mu, logvar = _case()
    assert VAELoss(reconstruction="mse")(*_case()).reconstruction.item() == pytest.approx(0.25)
    # a second, perfectly reconstructed image with q = prior: every term is halved by the batch mean
    batch = [torch.cat([t, t2]) for t, t2 in zip(_case(), (target, target, torch.zeros(1, 2), torch.zeros(1, 2)))]
    terms = VAELoss(beta=2.0, reconstruction="mse")(*batch)
    assert terms.reconstruction.item() == pytest.approx(0.125)
    assert terms.kl.item() == pytest.approx((2.0 - math.log(2.0)) / 2)
    with pytest.raises(ValueError, match="bce"):
        VAELoss(reconstruction="l1")
