"""Interpreting segmentation networks: occlusion sensitivity maps and the sanity checks that they mean something."""

from pipelines.interpret.occlusion import (
    OcclusionMode,
    OcclusionResult,
    OcclusionSliceInferer,
    ScoreKind,
    SegmentationScore,
    occlusion_fill,
    occlusion_sensitivity,
    patch_starts,
)

__all__ = [
    "OcclusionMode",
    "OcclusionResult",
    "OcclusionSliceInferer",
    "ScoreKind",
    "SegmentationScore",
    "occlusion_fill",
    "occlusion_sensitivity",
    "patch_starts",
]
