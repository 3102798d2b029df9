"""Sampling from trained generative bundles (``pipelines synthesize``)."""

from pipelines.generate.synthesizer import SUMMARY_FILE, Synthesizer
from pipelines.generate.class_images import ClassImageSynthesizer
from pipelines.generate.gan import GANSynthesizer
from pipelines.generate.pairs import PairSynthesizer
from pipelines.generate.mask_conditioned import MaskConditionedSynthesizer

__all__ = ["ClassImageSynthesizer", "GANSynthesizer", "MaskConditionedSynthesizer", "PairSynthesizer", "SUMMARY_FILE", "Synthesizer"]
