"""A case's uncertainty from the model's voxel-wise uncertainty map, next to its measures.

``pipelines predict cardiac_sax_segmentation --uncertainty`` writes ``<name>_uncertainty.nii.gz``: the normalised
entropy ``H = -sum_c p_c log p_c / log C`` of the flip-averaged softmax at every voxel (0 certain, 1 uniform). A
case's uncertainty is its mean over the voxels the model labels as heart (labels 1-3) in a frame,

    u_frame = mean_{v : label(v) > 0} H(v),      u_case = (u_ED + u_ES) / 2,

so that a large, confidently labelled background does not dilute it. A frame with no heart label scores 1.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["frame_uncertainty"]


def frame_uncertainty(labels: str | Path, uncertainty: str | Path, frame: int | None = None) -> float:
    """Mean uncertainty over the heart voxels of a 3D label map, or of frame ``frame`` (0-based) of a 4D one."""
    seg = np.asarray(nib.load(labels).dataobj)
    entropy = np.asarray(nib.load(uncertainty).dataobj, dtype=np.float64)
    if frame is not None:
        seg, entropy = seg[..., frame], entropy[..., frame]
    heart = seg > 0
    return float(entropy[heart].mean()) if heart.any() else 1.0
