"""A MONAI dictionary transform that draws an occlusion sensitivity map over the input image, one PNG per slice.

Used after ``Invertd`` in ``configs/explain.json``, beside :class:`~pipelines.transforms.SaveNiftiLikeInputd` (which
writes the same map as NIfTI)::

    {"_target_": "pipelines.transforms.SaveOcclusionFiguresd", "keys": "pred", "output_dir": "@output_dir"}
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.utils import convert_to_numpy

from pipelines.transforms.save_nifti import SaveNiftiLikeInputd
from pipelines.visualize.figures import occlusion_figure, save_figure

__all__ = ["SaveOcclusionFiguresd", "slice_suffix"]

logger = logging.getLogger(__name__)


def slice_suffix(index: int, depth: int) -> str:
    """``_z<index>.png``, the index zero-padded to the width of ``depth - 1`` so that file names sort by slice."""
    return f"_z{index:0{len(str(max(depth - 1, 0)))}d}.png"


class SaveOcclusionFiguresd(SaveNiftiLikeInputd):
    """Write ``<output_dir>/<name>_<output_postfix>_z<k>.png`` for every slice ``k`` of the input volume.

    Each PNG (see :func:`pipelines.visualize.occlusion_figure`) shows the input file's slice ``k`` (its own voxels,
    windowed at the volume's 0.5th-99.5th percentiles) with the predicted contour, and the sensitivity map over it
    with a colour bar. Each slice has its own colour scale, ``±max|sensitivity|`` of the slice, so that every
    slice shows where its own prediction comes from; compare values across slices with the colour bars or the
    NIfTI map. The reference file, the output name and the refusal to overwrite work as in
    :class:`~pipelines.transforms.SaveNiftiLikeInputd`; the written paths are stored in ``d[f"{key}_figures"]``.

    Args:
        keys: keys of the channel-first maps ``(C, X, Y, Z)`` on the reference file's voxel grid (after ``Invertd``).
        output_dir: folder for the PNGs; created if missing.
        reference_key: key of the MetaTensor loaded by ``LoadImaged`` from the reference NIfTI file.
        name_key: key of the output name; if absent from the item, the reference file's name without suffixes.
        output_postfix: appended to the name as ``_<postfix>``.
        sensitivity_channel: channel of the sensitivity map.
        probability_channel: channel of the scored class's probability (contour at 0.5); None for no contour.
        overwrite: replace existing PNGs; if False, an existing one raises
            :class:`~pipelines.errors.OutputExistsError`.
        allow_missing_keys: skip keys missing from the item instead of raising.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str,
        reference_key: str = "image",
        name_key: str = "name",
        output_postfix: str = "occlusion",
        sensitivity_channel: int = 0,
        probability_channel: int | None = 1,
        overwrite: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(
            keys, output_dir, reference_key=reference_key, name_key=name_key, output_postfix=output_postfix,
            overwrite=overwrite, allow_missing_keys=allow_missing_keys,
        )
        self.sensitivity_channel = sensitivity_channel
        self.probability_channel = probability_channel

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Draw every key's map and return the item with ``<key>_figures`` entries added."""
        d = dict(data)
        reference_path, reference, name = self.reference_of(d)
        voxels = np.asanyarray(reference.dataobj, dtype=np.float32)
        voxels = voxels.reshape(voxels.shape[:3])  # drop trailing dimensions of length 1
        window = tuple(np.percentile(voxels, [0.5, 99.5]))
        depth = voxels.shape[2]
        for key in self.key_iterator(d):
            maps = convert_to_numpy(d[key])
            sensitivity = maps[self.sensitivity_channel]
            if sensitivity.shape != voxels.shape:
                raise ValueError(
                    f"{key}: map shape {sensitivity.shape} differs from reference {reference_path} shape "
                    f"{voxels.shape}; invert spatial transforms before drawing"
                )
            masks = maps[self.probability_channel] > 0.5 if self.probability_channel is not None else None
            paths = []
            for k in range(depth):
                fig = occlusion_figure(
                    voxels[..., k], sensitivity[..., k], None if masks is None else masks[..., k],
                    window=window, title=f"{name}, slice z={k} of {depth}",
                )
                path = self.output_path(name, key, suffix=slice_suffix(k, depth))
                paths.append(str(save_figure(fig, path, overwrite=self.overwrite)))
            logger.info("wrote %d figures %s ...", depth, paths[0] if paths else "")
            d[f"{key}_figures"] = paths
        return d
