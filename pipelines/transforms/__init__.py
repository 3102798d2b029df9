"""MONAI dictionary transforms that MONAI lacks: slice selection, neighbouring slices as channels, NIfTI writing
with the input's exact geometry, per-slice occlusion sensitivity figures."""

from pipelines.transforms.entropy import PredictiveEntropyd, normalised_entropy
from pipelines.transforms.rician import RicianNoised, rician_noise
from pipelines.transforms.save_figures import SaveOcclusionFiguresd
from pipelines.transforms.save_nifti import SaveNiftiLikeInputd
from pipelines.transforms.slice_context import RandReverseSliceContextd, SliceContextd, slice_context
from pipelines.transforms.slices import SelectSliced

__all__ = [
    "PredictiveEntropyd",
    "RandReverseSliceContextd",
    "RicianNoised",
    "SaveNiftiLikeInputd",
    "SaveOcclusionFiguresd",
    "SelectSliced",
    "SliceContextd",
    "normalised_entropy",
    "rician_noise",
    "slice_context",
]
