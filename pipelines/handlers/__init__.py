"""Ignite handlers that MONAI lacks: atomic checkpoints and exact-resume state, per-case metric reports, training
figures, throughput, and an MLflow handler that survives a failing tracking server."""

from pipelines.handlers.case_metrics import CaseMetrics
from pipelines.handlers.checkpoint import AtomicCheckpoint, BestMetricState, RNGState, TransformRNGState
from pipelines.handlers.class_generation import (
    ClassConsistencyMetric, ClassSampleGrid, FrechetDistanceMetric, GenerationReport,
)
from pipelines.handlers.denoising import DenoisingGrid, DenoisingMetric, DenoisingReport
from pipelines.handlers.figures import OverlayGrid, TrainingCurves
from pipelines.handlers.mlflow_run import MLFlowRunHandler
from pipelines.handlers.synthesis import SynthesisGrid, SynthesisMetric, SynthesisReport
from pipelines.handlers.throughput import Throughput

__all__ = [
    "AtomicCheckpoint", "BestMetricState", "CaseMetrics", "ClassConsistencyMetric", "ClassSampleGrid",
    "FrechetDistanceMetric", "GenerationReport", "DenoisingGrid", "DenoisingMetric", "DenoisingReport", "MLFlowRunHandler", "OverlayGrid", "RNGState", "SynthesisGrid",
    "SynthesisMetric", "SynthesisReport", "Throughput", "TrainingCurves", "TransformRNGState",
]
