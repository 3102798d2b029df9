"""A 4D cine (x, y, z, t) as 3D frames and back: what lets a 3D bundle predict on a whole cine.

:func:`split_frames` writes each time frame of a 4D NIfTI file as a 3D NIfTI file with the cine's spatial header
(affine, qform/sform and their codes, in-plane and slice spacing); a bundle predicts on those as on any 3D frame.
:func:`merge_frames` stacks the per-frame outputs back along t in frame order and writes one 4D file with the cine's
own header (its affine and its time step), so a viewer overlays the 4D labels on the 4D image voxel for voxel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from pipelines.errors import InputError

__all__ = ["is_cine", "split_frames", "merge_frames"]

logger = logging.getLogger(__name__)


def is_cine(path: str | Path) -> bool:
    """Whether the NIfTI file at ``path`` holds several time frames: 4 dimensions, the fourth longer than 1."""
    shape = nib.load(path).shape
    return len(shape) == 4 and shape[3] > 1


def _spatial_image(cine: nib.Nifti1Image, voxels: np.ndarray) -> nib.Nifti1Image:
    """A 3D image of ``voxels`` carrying ``cine``'s spatial header (dim 3, the time step dropped)."""
    header = cine.header.copy()
    header.set_data_shape(voxels.shape)
    header.set_data_dtype(voxels.dtype)
    header.set_slope_inter(1, 0)
    return type(cine)(voxels, cine.affine, header=header)


def split_frames(cine_path: str | Path, folder: str | Path, stem: str) -> list[Path]:
    """Write frame ``k`` of the 4D file ``cine_path`` as ``<folder>/<stem>_t<kkk>.nii.gz``; return the paths.

    The frames keep the cine's stored intensities (after its scaling slope and intercept) and spatial geometry.

    Raises:
        InputError: ``cine_path`` is not a 4D NIfTI file with at least two frames.
    """
    cine = nib.load(cine_path)
    if len(cine.shape) != 4 or cine.shape[3] < 2:
        raise InputError(cine_path, f"expected a 4D cine (x, y, z, t) with several frames, got shape {cine.shape}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    voxels = np.asanyarray(cine.dataobj)
    paths = []
    for k in range(cine.shape[3]):
        frame = np.ascontiguousarray(voxels[..., k])
        path = folder / f"{stem}_t{k:03d}.nii.gz"
        nib.save(_spatial_image(cine, frame), path)
        paths.append(path)
    logger.info("%s: %d frames of %s", cine_path, len(paths), "x".join(str(s) for s in cine.shape[:3]))
    return paths


def merge_frames(
    frame_files: Sequence[str | Path], reference: str | Path, output: str | Path, overwrite: bool = False
) -> Path:
    """Stack 3D ``frame_files`` (in order) along t into ``output``, with the 4D ``reference`` file's header.

    The data type is the frames' (uint8 labels stay uint8); the affine, qform/sform, spacing and time step are the
    reference's. Written atomically: ``output`` appears complete or not at all.

    Raises:
        InputError: the frames do not match the reference's spatial shape or number of frames.
    """
    from pipelines.transforms.save_nifti import write_like

    cine = nib.load(reference)
    if len(cine.shape) != 4 or cine.shape[3] != len(frame_files):
        raise InputError(reference, f"{len(frame_files)} frames to merge for a cine of shape {cine.shape}")
    frames = [np.asanyarray(nib.load(f).dataobj) for f in frame_files]
    for path, frame in zip(frame_files, frames):
        if frame.shape != cine.shape[:3]:
            raise InputError(path, f"frame shape {frame.shape} differs from the cine's {cine.shape[:3]}")
    write_like(np.stack(frames, axis=-1), cine, Path(output), overwrite=overwrite)
    return Path(output)
