"""Finding and reading the images a user gives to ``predict``: NIfTI, NRRD, MetaImage and DICOM series.

:func:`discover_inputs` turns a file or folder into a list of :class:`ImageInput`; :func:`to_nifti` makes each one a
validated NIfTI file that MONAI's ``LoadImaged`` reads, converting NRRD and MetaImage with SimpleITK and DICOM series
with :mod:`pipelines.io.dicom_cine` (a cardiac cine becomes a 4D (x, y, z, t) NIfTI, not a stack of all its images).
:func:`validate_nifti` rejects files a model cannot use (truncated, 2D, 4D unless allowed, NaN, constant) with a
one-line :class:`~pipelines.errors.InputError` instead of a traceback deep inside a transform; :func:`read_nifti`
reads any NIfTI file (a label map) with the same one-line errors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import SpatialImage

from pipelines.errors import InputError
from pipelines.io.atomic import atomic_path
from pipelines.io.dicom_cine import read_series
from pipelines.io.dicom_cine import write_nifti as write_dicom_nifti

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = ["ImageInput", "discover_inputs", "to_nifti", "validate_nifti", "read_nifti", "spatial_shape"]

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")
SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
DICOM_SUFFIX = ".dcm"
EXPECTED = "(expected .nii, .nii.gz, .nrrd, .mha, .mhd or a DICOM series)"


@dataclass(frozen=True)
class ImageInput:
    """One image to predict on.

    Args:
        name: output stem, a safe file name unique among the inputs (``case1`` for ``case1.nii.gz``).
        source: the image file, or for a DICOM series the folder holding it.
        kind: ``"nifti"``, ``"sitk"`` (NRRD or MetaImage) or ``"dicom"``.
        series_id: the DICOM Series Instance UID (``None`` for other kinds).
    """

    name: str
    source: Path
    kind: str
    series_id: str | None = None


def discover_inputs(path: str | Path) -> list[ImageInput]:
    """List the images in a file or folder.

    A file gives one input, chosen by its suffix; a single ``.dcm`` file gives the DICOM series it belongs to. A
    folder gives every supported image file below it (recursively, hidden files and folders skipped) and every DICOM
    series found by GDCM in it or its subfolders. Names are made unique by appending ``_2``, ``_3``...

    Args:
        path: an image file, a DICOM file, or a folder.

    Returns:
        The inputs, in a deterministic order (sorted by source path, then series id).

    Raises:
        InputError: the path is missing, is an unsupported file, or is a folder holding no usable image.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_dir():
        found = _scan_folder(path)
        if not found:
            raise InputError(path, f"no supported images in folder {EXPECTED}")
    else:
        found = [_file_input(path)]
    return _with_unique_names(found)


def to_nifti(inp: ImageInput, work_dir: Path) -> Path:
    """Return a validated NIfTI file for ``inp``, converting it into ``work_dir`` when it is not NIfTI already.

    NRRD and MetaImage are read with SimpleITK and written with ``SimpleITK.WriteImage``, which converts ITK's LPS
    physical space to NIfTI's RAS and keeps origin, spacing and direction. A DICOM series is read with
    :func:`pipelines.io.dicom_cine.read_series`: one image per slice position gives a 3D NIfTI, a cardiac cine a 4D
    (x, y, z, t) NIfTI, both with the series' (oblique) geometry. NIfTI inputs and DICOM series may be 4D (a cine);
    other formats must be 3D. Only the voxels and the geometry are written: no DICOM tags are carried over, so
    patient identifiers (name, ID, birth date...) never reach the NIfTI file or anything derived from it.

    Args:
        inp: an input from :func:`discover_inputs`.
        work_dir: folder for converted files (``<work_dir>/<name>.nii.gz``); created if missing.

    Returns:
        The NIfTI path: ``inp.source`` for NIfTI inputs, else the converted file.

    Raises:
        InputError: the image cannot be read, or fails :func:`validate_nifti` (the message names ``inp.source``).
    """
    if inp.kind == "nifti":
        validate_nifti(inp.source, allow_4d=True)
        return inp.source
    out = Path(work_dir) / f"{inp.name}.nii.gz"
    if inp.kind == "dicom":
        series = read_series(inp.source, inp.series_id)
        write_dicom_nifti(series, out)
        _validate_converted(inp, out, allow_4d=True)
        return out
    import SimpleITK as sitk  # imported where needed: training and NIfTI-only runs never load ITK

    image = _read_sitk(inp)
    if image.GetNumberOfComponentsPerPixel() > 1:
        raise InputError(
            inp.source,
            f"{image.GetNumberOfComponentsPerPixel()} values per voxel (colour or vector image); "
            "expected a grey-scale volume",
        )
    with atomic_path(out, overwrite=True, suffix=".nii.gz") as tmp:
        sitk.WriteImage(image, str(tmp))
    _validate_converted(inp, out, allow_4d=False)
    return out


def _validate_converted(inp: ImageInput, out: Path, allow_4d: bool) -> None:
    """:func:`validate_nifti` on a converted file, with errors naming the user's input."""
    try:
        validate_nifti(out, allow_4d=allow_4d)
    except InputError as exc:
        # The user knows their file, not our scratch copy of it.
        raise InputError(inp.source, exc.problem) from exc
    logger.info("converted %s (%s) to %s", inp.source, inp.kind, out)


def validate_nifti(path: str | Path, allow_4d: bool = False) -> tuple[SpatialImage, np.ndarray]:
    """Check that ``path`` is a NIfTI file holding one finite, non-constant 3D volume; return it and its voxels.

    A 4D image whose trailing dimensions are all 1 counts as 3D. A volume with a single slice counts as 2D.

    Args:
        path: the NIfTI file.
        allow_4d: also accept a series of 3D volumes ``(x, y, z, t)`` with ``t > 1`` (a cardiac cine).

    Returns:
        The image (header and affine) and its voxel array, so that callers need not read the file again.

    Raises:
        InputError: the file is missing, unreadable, not 3D (nor 4D when allowed), empty, holds NaN/Inf, or is
            constant.
    """
    path = Path(path)
    image = _load(path)
    _check_shape(path, tuple(int(n) for n in image.shape), allow_4d=allow_4d)
    voxels = _voxels(path, image)
    _check_values(path, voxels)
    return image, voxels


def read_nifti(path: str | Path) -> tuple[SpatialImage, np.ndarray]:
    """Read a NIfTI file (any shape and values, e.g. a label map) and return the image and its voxels.

    Raises:
        InputError: the file is missing, or is not a readable NIfTI file (including a truncated one).
    """
    path = Path(path)
    image = _load(path)
    return image, _voxels(path, image)


def _load(path: Path) -> SpatialImage:
    """The image with its header; nibabel reads the voxels lazily."""
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        return nib.load(path)
    except (ImageFileError, OSError, EOFError, zlib.error, ValueError) as exc:
        raise InputError(path, "not a readable NIfTI file") from exc


def _voxels(path: Path, image: SpatialImage) -> np.ndarray:
    try:
        return np.asanyarray(image.dataobj)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        # Truncated gzip streams and short files only fail once the voxels are read.
        raise InputError(path, "not a readable NIfTI file") from exc


def _check_shape(path: Path, shape: tuple[int, ...], allow_4d: bool = False) -> None:
    """Raise :class:`InputError` unless ``shape`` is a 3D volume (or, if allowed, a 4D series of them) with at least
    one voxel and several slices."""
    spatial = spatial_shape(shape)
    if len(spatial) > 3 and not (allow_4d and len(spatial) == 4):
        expected = "a 3D volume or a 4D series (x, y, z, t)" if allow_4d else "one 3D volume"
        raise InputError(path, f"{len(spatial)}D image (shape {shape}); give {expected}")
    if 0 in spatial:
        raise InputError(path, f"image has no voxels (shape {shape})")
    if len(spatial) < 3 or 1 in spatial[:3]:
        raise InputError(path, f"2D image (shape {shape}); expected a 3D volume (slices along z)")


def spatial_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` without trailing singleton dimensions beyond the third (``(64, 64, 9, 1)`` -> ``(64, 64, 9)``)."""
    spatial = tuple(int(n) for n in shape)
    while len(spatial) > 3 and spatial[-1] == 1:
        spatial = spatial[:-1]
    return spatial


def _check_values(path: Path, voxels: np.ndarray) -> None:
    """Raise :class:`InputError` if ``voxels`` hold NaN/Inf or a single value."""
    if np.issubdtype(voxels.dtype, np.inexact) and not np.isfinite(voxels).all():
        raise InputError(path, "contains NaN or Inf voxels")
    low, high = voxels.min(), voxels.max()
    if low == high:
        raise InputError(path, f"image is empty (all voxels are {low:g})")


def _image_suffix(path: Path) -> str | None:
    """The supported image suffix ``path`` ends with (lower case), or None."""
    lower = path.name.lower()
    for suffix in (*NIFTI_SUFFIXES, *SITK_SUFFIXES, DICOM_SUFFIX):
        if lower.endswith(suffix):
            return suffix
    return None


def _kind_of(suffix: str) -> str:
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    return "dicom" if suffix == DICOM_SUFFIX else "sitk"


def _file_input(path: Path) -> ImageInput:
    """The input for a single file (unnamed yet: ``name`` is the raw stem)."""
    suffix = _image_suffix(path)
    if suffix is None:
        raise InputError(path, f"not a supported image {EXPECTED}")
    if suffix == DICOM_SUFFIX:
        return _series_of_file(path)
    return ImageInput(name=path.name[: -len(suffix)], source=path, kind=_kind_of(suffix))


def _series_of_file(path: Path) -> ImageInput:
    """The DICOM series in ``path``'s folder that contains ``path``."""
    import SimpleITK as sitk  # imported where needed: training and NIfTI-only runs never load ITK
    folder = path.parent
    series = _series_in(folder)
    target = os.path.abspath(path)
    for inp in series:
        with _quiet_itk():
            names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), inp.series_id)
        if any(os.path.abspath(name) == target for name in names):
            return inp
    raise InputError(path, "not a readable DICOM file")


def _series_in(folder: Path) -> list[ImageInput]:
    """The DICOM series directly in ``folder``, named after the folder (plus a UID tail when there are several)."""
    import SimpleITK as sitk  # imported where needed: training and NIfTI-only runs never load ITK
    with _quiet_itk():
        series_ids = sorted(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    base = Path(os.path.abspath(folder)).name
    return [
        ImageInput(
            name=f"{base}_{series_id[-8:]}" if len(series_ids) > 1 else base,
            source=folder,
            kind="dicom",
            series_id=series_id,
        )
        for series_id in series_ids
    ]


def _scan_folder(root: Path) -> list[ImageInput]:
    """Every supported image file and DICOM series below ``root``, hidden entries skipped."""
    found: list[ImageInput] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        might_hold_dicom = False
        for filename in sorted(f for f in filenames if not f.startswith(".")):
            suffix = _image_suffix(folder / filename)
            if suffix is not None and suffix != DICOM_SUFFIX:
                found.append(_file_input(folder / filename))
            else:
                # DICOM files often have no suffix at all, so any other file may be one.
                might_hold_dicom = True
        if might_hold_dicom:
            found.extend(_series_in(folder))
    found.sort(key=lambda inp: (str(inp.source), inp.series_id or ""))
    return found


def _safe_name(raw: str) -> str:
    """``raw`` made into a plain file name: no separators, no ``..``, not hidden, not empty."""
    name = re.sub(r"[^\w.+-]", "_", raw)
    name = re.sub(r"\.{2,}", ".", name).lstrip(".")
    return name or "image"


def _with_unique_names(inputs: list[ImageInput]) -> list[ImageInput]:
    """Copies of ``inputs`` with safe names, ``_2``, ``_3``... appended on clashes (ignoring case, for macOS)."""
    taken: set[str] = set()
    named = []
    for inp in inputs:
        base = _safe_name(inp.name)
        name, n = base, 1
        while name.casefold() in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name.casefold())
        named.append(ImageInput(name=name, source=inp.source, kind=inp.kind, series_id=inp.series_id))
    return named


def _read_sitk(inp: ImageInput) -> sitk.Image:
    """Read a NRRD/MetaImage file with SimpleITK (DICOM series go through :mod:`pipelines.io.dicom_cine`)."""
    import SimpleITK as sitk  # imported where needed: training and NIfTI-only runs never load ITK
    try:
        return sitk.ReadImage(str(inp.source))
    except RuntimeError as exc:
        raise InputError(inp.source, f"cannot read image: {_short_reason(exc)}") from exc


def _short_reason(exc: Exception) -> str:
    """The last line of a SimpleITK/ITK error, without its ``sitk::ERROR:`` and source-location prefixes."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(exc).__name__
    reason = re.sub(r"^\w+::ERROR:\s*", "", reason)
    reason = re.sub(r"^\w+ \(0x[0-9a-fA-F]+\):\s*", "", reason)
    return reason


@contextlib.contextmanager
def _quiet_itk() -> Iterator[None]:
    """Silence ITK's stderr warnings (GDCM prints "No Series were found" for every non-DICOM folder)."""
    import SimpleITK as sitk  # imported where needed: training and NIfTI-only runs never load ITK
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)
