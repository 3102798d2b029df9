"""Losses MONAI lacks: the (conditional) VAE's evidence lower bound, and deep supervision over stacked heads."""

from pipelines.losses.deep_supervision import StackedDeepSupervisionLoss
from pipelines.losses.vae import VAELoss, VAELossTerms, kl_divergence

__all__ = ["StackedDeepSupervisionLoss", "VAELoss", "VAELossTerms", "kl_divergence"]
