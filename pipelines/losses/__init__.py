"""Losses MONAI lacks: the (conditional) VAE's evidence lower bound."""

from pipelines.losses.vae import VAELoss, VAELossTerms, kl_divergence

__all__ = ["VAELoss", "VAELossTerms", "kl_divergence"]
