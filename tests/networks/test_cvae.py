"""The conditional VAE: shapes, the condition changes the output, eval mode is deterministic, gradients flow."""

from __future__ import annotations

import pytest
import torch

from pipelines.losses import VAELoss
from pipelines.networks.cvae import ConditionalVAE


def _net(latent: int = 8) -> ConditionalVAE:
    torch.manual_seed(0)
    return ConditionalVAE(2, (1, 64, 64), num_classes=6, latent_size=latent, channels=(4, 8, 8, 8),
                          strides=(2, 2, 2, 2))


@pytest.mark.parametrize("batch,latent", [(1, 8), (3, 16)])
def test_shapes_and_range(batch: int, latent: int) -> None:
    net = _net(latent)
    x, y = torch.rand(batch, 1, 64, 64), torch.randint(0, 6, (batch,))
    reconstruction, mu, logvar, z = net(x, y)
    assert reconstruction.shape == x.shape and mu.shape == logvar.shape == z.shape == (batch, latent)
    assert 0 <= reconstruction.min() and reconstruction.max() <= 1
    assert net.generate(torch.randn(batch, latent), y).shape == x.shape


def test_the_condition_changes_encoder_and_decoder() -> None:
    net = _net().eval()
    x, z = torch.rand(2, 1, 64, 64), torch.randn(2, 8)
    with torch.no_grad():
        a, b = net.generate(z, torch.tensor([0, 0])), net.generate(z, torch.tensor([3, 3]))
        mu_a, _ = net.encode_condition(x, torch.tensor([0, 0]))
        mu_b, _ = net.encode_condition(x, torch.tensor([5, 5]))
    assert not torch.allclose(a, b) and not torch.allclose(mu_a, mu_b)


def test_eval_reconstructs_from_the_mean_and_training_samples() -> None:
    net = _net()
    x, y = torch.rand(2, 1, 64, 64), torch.tensor([1, 2])
    net.eval()
    with torch.no_grad():
        first, mu, _, z = net(x, y)
        again = net(x, y)[0]
    assert torch.equal(z, mu) and torch.equal(first, again)
    net.train()
    with torch.no_grad():
        _, mu, _, z = net(x, y)
    assert not torch.equal(z, mu)  # z = mu + s * eps


def test_gradients_reach_every_parameter() -> None:
    net = _net()
    x, y = torch.rand(4, 1, 64, 64), torch.tensor([0, 1, 2, 5])
    reconstruction, mu, logvar, _ = net(x, y)
    VAELoss()(reconstruction, x, mu, logvar).loss.backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
