"""Reading a DICOM MR series, plain 3D stack or cardiac cine, into an (x, y, z, t) array with its NIfTI affine.

SimpleITK's ``ImageSeriesReader`` sorts every image of a series by position and stacks them all as slices, so a
cine of 12 positions x 20 phases comes out as 240 slices 0.46 mm apart. :func:`read_series` instead groups the images
by ``ImagePositionPatient``, orders the positions along the slice normal and each position's images by
``TriggerTime``, and returns a :class:`DicomSeries`: a 3D volume (one image per position) or a 4D cine (x, y, z, t).
:func:`write_nifti` writes it. Tags are read with SimpleITK (``ImageFileReader.ReadImageInformation``), so pydicom
is not a runtime dependency; no tag except geometry and timing is used, so patient identifiers never reach the NIfTI.

Geometry (DICOM PS3.3 C.7.6.2.1.1). With ``r`` the row cosine (direction of increasing column index) and ``c`` the
column cosine of ``ImageOrientationPatient``, ``n = r x c`` the slice normal, ``PixelSpacing = (dr, dc)`` (between
rows, between columns), ``dz`` the median distance between consecutive positions along ``n`` and ``P0`` the first
position, voxel ``(i, j, k)`` = (column, row, position) lies at ``P0 + i*dc*r + j*dr*c + k*dz*n`` in LPS; the NIfTI
(RAS) affine is that matrix with its first two rows negated, exactly what ``SimpleITK.WriteImage`` writes for the
same 3D stack.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from pipelines.errors import InputError
from pipelines.io.atomic import atomic_path

__all__ = ["DicomSeries", "series_files", "read_series", "write_nifti", "write_array"]

logger = logging.getLogger(__name__)

# Tags, as SimpleITK (GDCM) names them.
SERIES_UID = "0020|000e"
POSITION = "0020|0032"
ORIENTATION = "0020|0037"
PIXEL_SPACING = "0028|0030"
TRIGGER_TIME = "0018|1060"
INSTANCE_NUMBER = "0020|0013"
NOMINAL_INTERVAL = "0018|1062"  # R-R interval, ms
HEART_RATE = "0018|1088"  # beats per minute
ROWS = "0028|0010"
COLUMNS = "0028|0011"
SPACING_BETWEEN_SLICES = "0018|0088"
SLICE_THICKNESS = "0018|0050"

SAME_POSITION_MM = 0.01  # positions closer than this are one slice position
OFF_LINE_MM = 0.1  # largest distance of a position from the line through the first one along the normal
SPACING_TOLERANCE = 0.1  # relative deviation of a gap between positions from the median gap


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series as an array and its geometry.

    Args:
        array: voxels, ``(x, y, z)`` for one image per position or ``(x, y, z, t)`` for a cine; x = column, y =
            row, z = position along the slice normal, t = cardiac phase. Rescale slope/intercept applied.
        affine: 4x4 NIfTI (RAS, mm) affine of the spatial axes.
        trigger_times_ms: ``(positions, phases)`` trigger time of each image, NaN where the tag is absent.
        num_phases: images per position (1 for a plain 3D stack).
        num_positions: slice positions.
        files: ``files[position][phase]``, the DICOM file of each image.
        series_uid: the Series Instance UID.
        phase_interval_ms: mean R-R interval / phases (``NominalInterval``, else ``HeartRate``), 0 if unknown or
            for a single phase.
    """

    array: np.ndarray
    affine: np.ndarray
    trigger_times_ms: np.ndarray
    num_phases: int
    num_positions: int
    files: tuple[tuple[Path, ...], ...]
    series_uid: str
    phase_interval_ms: float

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along x, y, z (column spacing, row spacing, distance between positions)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    def phase(self, index: int) -> np.ndarray:
        """The 3D ``(x, y, z)`` volume of phase ``index`` (0-based, in trigger-time order)."""
        return self.array if self.array.ndim == 3 else self.array[..., index]


@dataclass(frozen=True)
class _Image:
    path: Path
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    matrix: tuple[int, int]
    trigger_time: float | None
    instance_number: int | None
    rr_interval_ms: float | None


def series_files(folder: str | Path, series_uid: str | None = None) -> list[Path]:
    """The files of one DICOM series in ``folder`` (not its subfolders), as GDCM finds them.

    Args:
        folder: the folder holding the series.
        series_uid: the Series Instance UID; ``None`` for the folder's only series.

    Raises:
        InputError: no DICOM series in the folder, or several and ``series_uid`` is ``None``.
    """
    import SimpleITK as sitk  # imported where needed: training and NIfTI-only runs never load ITK

    folder = Path(folder)
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM warns about every non-DICOM file
    try:
        if series_uid is None:
            uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
            if len(uids) > 1:
                raise InputError(folder, f"{len(uids)} DICOM series in the folder; name the one to read")
            series_uid = uids[0] if uids else None
        names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid) if series_uid else ()
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)
    if not names:
        raise InputError(folder, "no DICOM series found")
    return [Path(name) for name in names]


def read_series(folder: str | Path, series_uid: str | None = None, files: Sequence[Path] | None = None) -> DicomSeries:
    """Read one DICOM series (a 3D stack or a cine) from ``folder``.

    Positions are ordered by their projection on the slice normal ``n = r x c``; the images of one position by
    ``TriggerTime`` (by ``InstanceNumber`` when no image has a trigger time; logged).

    Args:
        folder: the folder holding the series; named in every error.
        series_uid: the Series Instance UID; ``None`` for the folder's only series.
        files: the series' files, when already known (skips the folder scan).

    Returns:
        The series: a 3D array for one image per position, else 4D ``(x, y, z, t)``.

    Raises:
        InputError: the series cannot be read, has a single image, mixed matrix sizes, pixel spacings or
            orientations, a position with fewer or more phases than another, two images of one position with one
            trigger time, positions off one line along the normal, or gaps between positions more than 10% away from
            their median.
    """
    folder = Path(folder)
    paths = list(files) if files is not None else series_files(folder, series_uid)
    images, uid = _read_headers(folder, paths)
    if len(images) < 2:
        raise InputError(folder, "a single DICOM image, not a series (need several slice positions or phases)")
    _check_uniform(folder, images)
    normal = np.cross(images[0].orientation[:3], images[0].orientation[3:])
    positions = _group_by_position(images, normal)
    ordered = [_order_phases(folder, group, k) for k, group in enumerate(positions)]
    counts = sorted({len(group) for group in ordered})
    if len(counts) > 1:
        raise InputError(
            folder, f"missing phases: slice positions hold different numbers of images ({', '.join(map(str, counts))})"
        )
    offsets = np.array([float(group[0].position @ normal) for group in ordered])
    slice_spacing = _slice_spacing(folder, ordered, offsets, normal)

    array = _read_pixels(folder, ordered)
    affine = _affine(images[0], ordered[0][0].position, normal, slice_spacing)
    trigger = np.array([[np.nan if im.trigger_time is None else im.trigger_time for im in g] for g in ordered])
    num_phases = counts[0]
    rr = [im.rr_interval_ms for im in images if im.rr_interval_ms]
    interval = float(np.mean(rr)) / num_phases if rr and num_phases > 1 else 0.0
    logger.info(
        "read DICOM series %s from %s: %d positions x %d phases, %s", uid, folder, len(ordered), num_phases, array.shape
    )
    return DicomSeries(
        array=array,
        affine=affine,
        trigger_times_ms=trigger,
        num_phases=num_phases,
        num_positions=len(ordered),
        files=tuple(tuple(im.path for im in g) for g in ordered),
        series_uid=uid,
        phase_interval_ms=interval,
    )


def write_nifti(series: DicomSeries, path: str | Path, overwrite: bool = True) -> Path:
    """Write ``series`` as NIfTI (int16 when its values are integers that fit, else float32), atomically.

    ``pixdim[4]`` is ``series.phase_interval_ms`` (0 when unknown), units mm and ms. Only voxels and geometry are
    written: no DICOM tag reaches the file.
    """
    return write_array(series.array, series.affine, path, time_step_ms=series.phase_interval_ms, overwrite=overwrite)


def write_array(
    array: np.ndarray,
    affine: np.ndarray,
    path: str | Path,
    time_step_ms: float = 0.0,
    overwrite: bool = True,
    dtype: type | None = None,
) -> Path:
    """Write a 3D or 4D array as NIfTI with ``affine`` as qform and sform (scanner-anatomical), atomically.

    Args:
        array: ``(x, y, z)`` or ``(x, y, z, t)`` voxels.
        affine: 4x4 RAS affine.
        path: the ``.nii.gz`` file.
        time_step_ms: ``pixdim[4]`` of a 4D array.
        overwrite: replace an existing file.
        dtype: stored type; ``None`` picks int16 for integer values within its range, else float32.
    """
    if dtype is None:
        dtype = np.int16 if _fits_int16(array) else np.float32
    image = nib.Nifti1Image(np.asarray(array).astype(dtype), affine)
    image.header.set_xyzt_units("mm", "msec")
    image.set_qform(affine, code=1)  # scanner-anatomical
    image.set_sform(affine, code=1)
    if array.ndim == 4:
        zooms = image.header.get_zooms()
        image.header.set_zooms((*zooms[:3], float(time_step_ms)))
    with atomic_path(path, overwrite=overwrite, suffix=".nii.gz") as tmp:
        nib.save(image, tmp)
    return Path(path)


def _fits_int16(array: np.ndarray) -> bool:
    if array.size == 0:
        return True
    if np.issubdtype(array.dtype, np.integer) or np.array_equal(array, np.round(array)):
        info = np.iinfo(np.int16)
        return bool(array.min() >= info.min and array.max() <= info.max)
    return False


def _numbers(text: str | None) -> list[float] | None:
    if text is None or not text.strip():
        return None
    try:
        return [float(v) for v in text.strip().split("\\")]
    except ValueError:
        return None


def _read_headers(folder: Path, paths: Sequence[Path]) -> tuple[list[_Image], str]:
    """The geometry and timing tags of every file; raise :class:`InputError` for a missing geometry tag."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    images, uids = [], set()
    for path in paths:
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise InputError(path, "not a readable DICOM file") from exc
        keys = set(reader.GetMetaDataKeys())

        def tag(key: str, keys: set[str] = keys) -> str | None:
            return reader.GetMetaData(key) if key in keys else None

        position, orientation = _numbers(tag(POSITION)), _numbers(tag(ORIENTATION))
        spacing = _numbers(tag(PIXEL_SPACING))
        if position is None or len(position) != 3 or orientation is None or len(orientation) != 6:
            raise InputError(path, "no ImagePositionPatient / ImageOrientationPatient; cannot place the image")
        if spacing is None or len(spacing) != 2:
            raise InputError(path, "no PixelSpacing; cannot place the image")
        size = reader.GetSize()
        trigger, instance = _numbers(tag(TRIGGER_TIME)), _numbers(tag(INSTANCE_NUMBER))
        rr, rate = _numbers(tag(NOMINAL_INTERVAL)), _numbers(tag(HEART_RATE))
        rr_ms = rr[0] if rr and rr[0] > 0 else (60000.0 / rate[0] if rate and rate[0] > 0 else None)
        uids.add((tag(SERIES_UID) or "").strip())
        images.append(
            _Image(
                path=Path(path),
                position=np.array(position),
                orientation=np.array(orientation),
                pixel_spacing=(spacing[0], spacing[1]),
                matrix=(int(size[1]), int(size[0])),  # (rows, columns)
                trigger_time=trigger[0] if trigger else None,
                instance_number=int(instance[0]) if instance else None,
                rr_interval_ms=rr_ms,
            )
        )
    if len(uids) > 1:
        raise InputError(folder, f"files of {len(uids)} DICOM series given as one")
    return images, uids.pop() if uids else ""


def _check_uniform(folder: Path, images: list[_Image]) -> None:
    first = images[0]
    matrices = sorted({im.matrix for im in images})
    if len(matrices) > 1:
        shown = ", ".join(f"{r}x{c}" for r, c in matrices)
        raise InputError(folder, f"mixed matrix sizes in one series ({shown} rows x columns)")
    spacings = sorted({tuple(round(v, 4) for v in im.pixel_spacing) for im in images})
    if len(spacings) > 1:
        raise InputError(folder, f"mixed pixel spacings in one series ({', '.join(map(str, spacings))} mm)")
    if any(np.abs(im.orientation - first.orientation).max() > 1e-4 for im in images):
        raise InputError(folder, "mixed image orientations in one series")


def _group_by_position(images: list[_Image], normal: np.ndarray) -> list[list[_Image]]:
    """Images grouped by position (within ``SAME_POSITION_MM``), groups ordered along ``normal``."""
    groups: list[list[_Image]] = []
    for im in images:
        for group in groups:
            if np.linalg.norm(group[0].position - im.position) < SAME_POSITION_MM:
                group.append(im)
                break
        else:
            groups.append([im])
    groups.sort(key=lambda group: float(group[0].position @ normal))
    return groups


def _order_phases(folder: Path, group: list[_Image], index: int) -> list[_Image]:
    """The images of one position in phase order: by trigger time, else by instance number."""
    if len(group) == 1:
        return group
    if all(im.trigger_time is not None for im in group):
        times = [im.trigger_time for im in group]
        if len(set(times)) < len(times):
            raise InputError(folder, f"duplicated phase: two images at slice position {index} share a TriggerTime")
        return sorted(group, key=lambda im: im.trigger_time)  # type: ignore[arg-type, return-value]
    if all(im.instance_number is not None for im in group):
        numbers = [im.instance_number for im in group]
        if len(set(numbers)) < len(numbers):
            raise InputError(folder, f"duplicated phase: two images at slice position {index} share an InstanceNumber")
        logger.warning("%s: no TriggerTime at slice position %d; phases ordered by InstanceNumber", folder, index)
        return sorted(group, key=lambda im: im.instance_number)  # type: ignore[arg-type, return-value]
    raise InputError(folder, f"cannot order the phases at slice position {index}: no TriggerTime or InstanceNumber")


def _slice_spacing(folder: Path, ordered: list[list[_Image]], offsets: np.ndarray, normal: np.ndarray) -> float:
    """The median gap between positions; refuse positions off one line or unevenly spaced."""
    first = ordered[0][0].position
    for group in ordered[1:]:
        delta = group[0].position - first
        off_line = float(np.linalg.norm(delta - (delta @ normal) * normal))
        if off_line > OFF_LINE_MM:
            raise InputError(
                folder, f"slice positions are not on one line along the slice normal ({off_line:.2f} mm off it)"
            )
    if len(ordered) == 1:
        # One position (a single-slice cine): the slab thickness is the only spacing there is.
        tags = [SPACING_BETWEEN_SLICES, SLICE_THICKNESS]
        return _single_slice_thickness(ordered[0][0].path, tags)
    gaps = np.diff(offsets)
    median = float(np.median(gaps))
    worst = float(np.max(np.abs(gaps - median)))
    if worst > SPACING_TOLERANCE * median:
        raise InputError(
            folder,
            f"non-uniform slice spacing: gaps of {gaps.min():.2f} to {gaps.max():.2f} mm between positions "
            f"(median {median:.2f} mm)",
        )
    return median


def _single_slice_thickness(path: Path, tags: list[str]) -> float:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    keys = set(reader.GetMetaDataKeys())
    for key in tags:
        value = _numbers(reader.GetMetaData(key)) if key in keys else None
        if value and value[0] > 0:
            return value[0]
    return 1.0


def _read_pixels(folder: Path, ordered: list[list[_Image]]) -> np.ndarray:
    """``(x, y, z[, t])`` voxels; GDCM applies RescaleSlope/Intercept (float output when they are not integers)."""
    import SimpleITK as sitk

    num_phases = len(ordered[0])
    rows, columns = ordered[0][0].matrix
    array: np.ndarray | None = None
    for k, group in enumerate(ordered):
        for t, im in enumerate(group):
            try:
                image = sitk.ReadImage(str(im.path), imageIO="GDCMImageIO")
            except RuntimeError as exc:
                raise InputError(im.path, "cannot read the DICOM pixels") from exc
            if image.GetNumberOfComponentsPerPixel() > 1:
                raise InputError(im.path, "colour DICOM image; expected grey-scale MR")
            pixels = sitk.GetArrayViewFromImage(image).reshape(rows, columns)  # (row, column)
            if array is None:
                dtype = np.float32 if np.issubdtype(pixels.dtype, np.floating) else np.int32
                array = np.zeros((columns, rows, len(ordered), num_phases), dtype=dtype)
            array[:, :, k, t] = pixels.T
    assert array is not None
    if _fits_int16(array):
        array = array.astype(np.int16)
    elif not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    return array[..., 0] if num_phases == 1 else array


def _affine(first: _Image, origin: np.ndarray, normal: np.ndarray, slice_spacing: float) -> np.ndarray:
    """The RAS affine of voxel (column, row, position); see the module docstring."""
    row_cosine, column_cosine = first.orientation[:3], first.orientation[3:]
    row_spacing, column_spacing = first.pixel_spacing
    lps = np.eye(4)
    lps[:3, 0] = row_cosine * column_spacing
    lps[:3, 1] = column_cosine * row_spacing
    lps[:3, 2] = normal * slice_spacing
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
