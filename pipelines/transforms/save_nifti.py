"""A MONAI dictionary transform that writes a prediction as NIfTI with exactly the geometry of the input file.

MONAI's ``SaveImaged`` rebuilds the header from the MetaTensor's affine, which can drift from the input's (qform/sform
codes, float rounding, RAS/LPS conversion). :class:`SaveNiftiLikeInputd` instead reuses the input file's own NIfTI
header, so a viewer overlays the segmentation on the image voxel for voxel.

Used in bundle configs as::

    {"_target_": "pipelines.transforms.save_nifti.SaveNiftiLikeInputd", "keys": "pred", "output_dir": "@output_dir"}
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_numpy
from nibabel.filebasedimages import ImageFileError

from pipelines.errors import InputError, PipelineError
from pipelines.io.atomic import atomic_path

__all__ = ["SaveNiftiLikeInputd", "write_like"]

logger = logging.getLogger(__name__)


class SaveNiftiLikeInputd(MapTransform):
    """Write ``d[key]`` to ``<output_dir>/<name>_<output_postfix>.nii.gz`` with the reference file's header.

    The prediction must already be on the reference file's voxel grid (undo any resampling or reorientation with
    ``Invertd`` first): its spatial shape must equal the file's. The written image has the reference's affine,
    qform/sform and their codes, pixdim and shape; only the data type and scaling differ. The written path is
    stored as a string in ``d[f"{key}_path"]``.

    Args:
        keys: keys of the channel-first predictions ``(C, X, Y, Z)`` to write, e.g. ``"pred"``.
        output_dir: folder for the output files; created if missing.
        reference_key: key of the MetaTensor loaded by ``LoadImaged`` whose ``meta["filename_or_obj"]`` is the
            reference NIfTI file.
        name_key: key of the output name; if absent from the item, the reference file's name without suffixes.
        output_postfix: appended to the name as ``_<postfix>``; empty for none.
        dtype: numpy data type written, e.g. ``"uint8"`` for labels or ``"float32"`` for probabilities. Integer
            types round the values first, so ``0.9999`` becomes ``1``, not ``0``.
        channel: write only this channel (e.g. the myocardium probability); if None, the prediction must have a
            single channel (e.g. the output of ``AsDiscreted(argmax=True)``).
        overwrite: replace existing output files; if False, an existing file raises
            :class:`~pipelines.errors.OutputExistsError` and is left untouched.
        allow_missing_keys: skip keys missing from the item instead of raising.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str,
        reference_key: str = "image",
        name_key: str = "name",
        output_postfix: str = "seg",
        dtype: str = "uint8",
        channel: int | None = None,
        overwrite: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.reference_key = reference_key
        self.name_key = name_key
        self.output_postfix = output_postfix
        self.dtype = np.dtype(dtype)  # fail at construction, not after a whole inference run
        self.channel = channel
        self.overwrite = overwrite

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Write every key's prediction and return the item with ``<key>_path`` entries added."""
        d = dict(data)
        reference_path, reference, name = self.reference_of(d)
        for key in self.key_iterator(d):
            out_path = self.output_path(name, key)
            voxels = self._voxels(d[key], key)
            if voxels.shape != reference.shape[:3]:
                raise ValueError(
                    f"{key}: prediction shape {voxels.shape} differs from reference {reference_path} shape "
                    f"{reference.shape[:3]}; invert spatial transforms before saving"
                )
            write_like(voxels, reference, out_path, overwrite=self.overwrite)
            logger.info("wrote %s", out_path)
            d[f"{key}_path"] = str(out_path)
        return d

    def output_path(self, name: str, key: Hashable = "pred", suffix: str = ".nii.gz") -> Path:
        """``<output_dir>/<name>_<output_postfix><suffix>``, refusing names that would leave ``output_dir``.

        Args:
            name: the output stem, e.g. a case id.
            key: the key being written, only used in the error message.
            suffix: the end of the file name.

        Raises:
            PipelineError: ``name`` is empty or contains ``/``, ``\\`` or ``..``.
        """
        if not name or "/" in name or "\\" in name or ".." in name:
            raise PipelineError(f"{key}: output name {name!r} is not a plain file name; refusing to write it")
        stem = f"{name}_{self.output_postfix}" if self.output_postfix else name
        return self.output_dir / f"{stem}{suffix}"

    def reference_of(self, d: Mapping[Hashable, Any]) -> tuple[Path, nib.Nifti1Image, str]:
        """The reference file of item ``d``, its NIfTI image (header; voxels read lazily) and the output name."""
        reference_path = self._reference_path(d)
        name = str(d[self.name_key]) if self.name_key in d else _stem(reference_path)
        return reference_path, _load_reference(reference_path), name

    def _reference_path(self, d: Mapping[Hashable, Any]) -> Path:
        """The file ``d[reference_key]`` was loaded from."""
        meta = getattr(d.get(self.reference_key), "meta", None)
        if not meta or "filename_or_obj" not in meta:
            raise ValueError(
                f"{self.reference_key!r} must be a MetaTensor loaded by LoadImaged (with meta['filename_or_obj'])"
            )
        return Path(str(meta["filename_or_obj"]))

    def _voxels(self, prediction: Any, key: Hashable) -> np.ndarray:
        """The 3D array to write: the chosen (or only) channel, cast to ``dtype``."""
        array = convert_to_numpy(prediction)
        if self.channel is not None:
            array = array[self.channel]
        elif array.shape[0] == 1:
            array = array[0]
        else:
            raise ValueError(
                f"{key}: prediction has {array.shape[0]} channels (shape {array.shape}); "
                "set channel=, or take the argmax first"
            )
        if np.issubdtype(self.dtype, np.integer):
            array = np.rint(array)
        return array.astype(self.dtype)


def _load_reference(path: Path) -> nib.Nifti1Image:
    """The reference NIfTI image (header only; nibabel reads voxels lazily)."""
    try:
        reference = nib.load(path)
    except (ImageFileError, OSError) as exc:
        raise InputError(path, "reference image is not a readable NIfTI file") from exc
    # Nifti2Image subclasses Nifti1Image; other formats nibabel reads (Analyze, MGH, .hdr/.img pairs) have no
    # single-file NIfTI header to copy.
    if not isinstance(reference, nib.Nifti1Image):
        raise InputError(path, "reference image is not a single-file NIfTI image (.nii or .nii.gz)")
    return reference


def write_like(voxels: np.ndarray, reference: nib.Nifti1Image, path: Path, overwrite: bool) -> None:
    """Write ``voxels`` atomically to ``path`` with ``reference``'s header, changing only type and scaling."""
    header = reference.header.copy()
    header.set_data_dtype(voxels.dtype)
    header.set_slope_inter(1, 0)  # store the labels themselves, not scaled copies of them
    header["cal_min"] = header["cal_max"] = 0  # the image's display window means nothing for labels
    # The affine equals the header's best affine, so nibabel leaves qform, sform and their codes as they are.
    image = type(reference)(voxels, reference.affine, header=header)
    with atomic_path(path, overwrite=overwrite, suffix=".nii.gz") as tmp:
        nib.save(image, tmp)


def _stem(path: Path) -> str:
    """``path``'s file name without its ``.nii``/``.nii.gz`` suffix."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem
