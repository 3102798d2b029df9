"""Sampling from trained generative bundles (``pipelines synthesize``)."""

from pipelines.generate.synthesizer import SUMMARY_FILE, Synthesizer
from pipelines.generate.class_images import ClassImageSynthesizer
from pipelines.generate.gan import GANSynthesizer
from pipelines.generate.pairs import PairSynthesizer

__all__ = ["ClassImageSynthesizer", "GANSynthesizer", "PairSynthesizer", "SUMMARY_FILE", "Synthesizer"]
