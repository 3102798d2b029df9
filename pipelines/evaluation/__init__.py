"""Segmentation metrics per case (Dice, 95th-percentile Hausdorff distance) and their summaries."""

from pipelines.evaluation.metrics import CaseScores, case_scores, foreground_mask, summarise

__all__ = ["CaseScores", "case_scores", "foreground_mask", "summarise"]
