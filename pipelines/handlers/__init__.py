"""Ignite handlers that MONAI lacks: atomic checkpoints, per-case metric reports, training figures."""

from pipelines.handlers.case_metrics import CaseMetrics
from pipelines.handlers.checkpoint import AtomicCheckpoint, BestMetricState, RNGState
from pipelines.handlers.figures import OverlayGrid, TrainingCurves
from pipelines.handlers.throughput import Throughput

__all__ = ["AtomicCheckpoint", "BestMetricState", "CaseMetrics", "OverlayGrid", "RNGState", "Throughput", "TrainingCurves"]
