"""Sampling from trained generative bundles (``pipelines synthesize``)."""

from pipelines.generate.synthesizer import SUMMARY_FILE, Synthesizer

__all__ = ["SUMMARY_FILE", "Synthesizer"]
