"""Inferers that MONAI lacks: test-time flip ensembling around any MONAI inferer."""

from pipelines.inferers.flip import FlipEnsembleInferer

__all__ = ["FlipEnsembleInferer"]
