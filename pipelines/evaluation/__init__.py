"""Metrics per case: segmentation (Dice, 95th-percentile Hausdorff distance) and synthesis (masked MAE, PSNR,
SSIM), and their summaries; generated images scored by in-domain networks (class consistency, Frechet distance,
two-sample test, mask plausibility)."""

from pipelines.evaluation.metrics import CaseScores, case_scores, foreground_mask, summarise
from pipelines.evaluation.generative import (
    class_consistency, classifier_features, frechet_distance, load_classifier, per_class_accuracy, predict_classes,
)
from pipelines.evaluation.synthesis import synthesis_metrics

__all__ = [
    "CaseScores", "case_scores", "class_consistency", "classifier_features", "foreground_mask", "frechet_distance",
    "load_classifier", "per_class_accuracy", "predict_classes", "summarise", "synthesis_metrics",
]
