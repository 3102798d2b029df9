"""Metrics per case: segmentation (Dice, 95th-percentile Hausdorff distance) and synthesis (masked MAE, PSNR,
SSIM), and their summaries."""

from pipelines.evaluation.metrics import CaseScores, case_scores, foreground_mask, summarise
from pipelines.evaluation.synthesis import synthesis_metrics

__all__ = ["CaseScores", "case_scores", "foreground_mask", "summarise", "synthesis_metrics"]
