"""Sunnybrook Cardiac Data as distributed (DICOM cines + expert contour files) -> NIfTI frames, label maps, datalist.

Source: Radau et al., "Evaluation Framework for Algorithms Segmenting Short Axis Cardiac MRI", The MIDAS Journal,
2009 (public domain). There is no download: the files must be on disk. Run:
``pipelines data sunnybrook_dicom [--source DIR] --output DIR``.

Layout read (the original public release, 45 studies; the shared sample holds one)::

    <source>/SCD_DeidentifiedImages/SCD00000NN/CINESAX/IM-0001-NNNN.dcm          the short-axis cine (one series)
    <source>/SCD_ManualContours/SC-HF-I-01/contours-manual/IRCCI-expert/IM-0001-NNNN-{i,o}contour-manual.txt
    <source>/scd_patientdata*.csv                                                optional: OriginalID -> PatientID

Matching a contour folder (``SC-HF-I-01``) to an image study (``SCD0000101``): the release's ``scd_patientdata``
table when a CSV export of it (columns ``PatientID``, ``OriginalID``) lies in ``<source>`` or one folder below;
else a DICOM tag of the study (PatientID, PatientName, Study/Series description, comments) that holds the original
id; else, when there is exactly one study and one contour folder (the sample), the two are paired. The DICOM tags of
the sample hold only ``SCD0000101``, so the 45-study release needs the CSV (exported from its spreadsheet).

Contour files name their image ``IM-0001-NNNN``: in the release that is the DICOM file name, and in the sample
``NNNN`` is also the ``InstanceNumber``. The file name is used; the InstanceNumber only when no file has that name.

Frames: end-diastole (ED) is the phase holding the epicardial (``o``) contours, end-systole (ES) the other phase
holding endocardial (``i``) contours, found per slice position and taken at the most common phase where slices
disagree. Label maps follow ACDC: 3 LV cavity (inside ``i``), 2 LV myocardium (inside ``o``, not inside ``i``), 0
background, 255 unlabelled (a slice without contours, or the part of an ED slice outside an endocardium drawn
without its epicardium). ES has no epicardium, so ES maps are 3 inside ``i``, 0 elsewhere on contoured slices
(``labels_drawn: [3]``); the RV is never contoured. Polygons are rasterised on pixel centres with (x, y) = (column,
row). Expert volumes: voxel count x voxel volume (column spacing x row spacing x distance between positions), over
the labelled slices, in mL. The dataset is for external checks only: its one split ``external`` tests every case.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.data.datalist import datalist_target
from pipelines.data.sources import DATA_ENV
from pipelines.errors import InputError, PipelineError
from pipelines.io.atomic import atomic_write_json
from pipelines.io.dicom_cine import DicomSeries, read_series, write_array, write_nifti

__all__ = [
    "LABELS", "UNLABELLED", "Study", "default_source", "find_studies", "read_contour", "rasterise", "convert",
    "prepare",
]

logger = logging.getLogger(__name__)

SAMPLE_FOLDER = "sunnybrook_dicom_sample"
IMAGES_DIR = "SCD_DeidentifiedImages"
CONTOURS_DIR = "SCD_ManualContours"
CINE_FOLDER = "CINESAX"
EXPERT_FOLDER = "IRCCI-expert"
CAVITY, MYOCARDIUM, BACKGROUND, UNLABELLED = 3, 2, 0, 255
LABELS = {"0": "background", "2": "LV myocardium", "3": "LV cavity", "255": "unlabelled (no expert contour)"}
CONTOUR_FILE = re.compile(r"^(?P<image>.*?(?P<number>\d+))-(?P<kind>[io])contour-manual\.txt$", re.IGNORECASE)
ID_TAGS = ("0010|0020", "0010|0010", "0010|1000", "0008|1030", "0008|103e", "0020|4000", "0020|0010")
CITATION = (
    "Radau et al., Evaluation Framework for Algorithms Segmenting Short Axis Cardiac MRI, The MIDAS Journal, 2009"
)


@dataclass(frozen=True)
class Study:
    """One study: its cine folder and its expert contour folder.

    Args:
        patient_id: the image study's folder name (``SCD0000101``), used as case id.
        original_id: the contour folder's name (``SC-HF-I-01``).
        cine_folder: the folder of the cine short-axis DICOM series.
        contour_folder: the folder of the expert contour files.
        matched_by: how the two were paired (``scd_patientdata CSV``, ``DICOM tag ...``, ``only study``).
    """

    patient_id: str
    original_id: str
    cine_folder: Path
    contour_folder: Path
    matched_by: str


def default_source() -> Path:
    """``sunnybrook_dicom_sample`` in the first ``PIPELINES_DATA`` folder holding it, else in ``../shared/data``."""
    folders = [Path(f) for f in os.environ.get(DATA_ENV, "").split(os.pathsep) if f]
    folders.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    for folder in folders:
        if (folder / SAMPLE_FOLDER).is_dir():
            return folder / SAMPLE_FOLDER
    raise PipelineError(
        f"{SAMPLE_FOLDER}: not found; the Sunnybrook DICOM data has no download here, so pass --source DIR (the "
        f"folder holding {IMAGES_DIR}/ and {CONTOURS_DIR}/) or set {DATA_ENV} to a folder holding {SAMPLE_FOLDER}/"
    )


def _norm_id(text: str) -> str:
    """``SC-HF-I-01`` and ``sc-hf-i-1`` -> ``SC-HF-I-1`` (upper case, no leading zeros in numbers)."""
    return re.sub(r"\d+", lambda m: str(int(m.group())), text.strip().upper())


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _cine_folder(study_dir: Path) -> Path:
    for sub in _subfolders(study_dir):
        if sub.name.upper() == CINE_FOLDER:
            return sub
    raise InputError(study_dir, f"no {CINE_FOLDER} folder (the cine short-axis series) in this study")


def _contour_folder(case_dir: Path) -> Path:
    """``contours-manual/IRCCI-expert`` (or the only folder of contour files under ``contours-manual``)."""
    manual = case_dir / "contours-manual"
    expert = manual / EXPERT_FOLDER
    if expert.is_dir():
        return expert
    readers = [p for p in _subfolders(manual) if any(p.glob("*contour-manual.txt"))] if manual.is_dir() else []
    if len(readers) != 1:
        raise InputError(case_dir, f"no contours-manual/{EXPERT_FOLDER} folder of expert contours")
    return readers[0]


def _csv_mapping(source: Path) -> tuple[dict[str, str], Path] | None:
    """``{normalised OriginalID: PatientID}`` from a ``scd_patientdata*.csv`` in ``source`` or a folder below."""
    candidates = sorted(
        p for p in [*source.glob("*.csv"), *source.glob("*/*.csv")] if p.name.lower().startswith("scd_patientdata")
    )
    if not candidates:
        return None
    path = candidates[0]
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel  # type: ignore[assignment]
    rows = list(csv.DictReader(text.splitlines(), dialect=dialect))
    keys = {re.sub(r"[^a-z]", "", k.lower()): k for k in (rows[0].keys() if rows else []) if k}
    if "patientid" not in keys or "originalid" not in keys:
        raise InputError(path, "expected columns PatientID and OriginalID (the scd_patientdata table)")
    mapping = {
        _norm_id(row[keys["originalid"]]): row[keys["patientid"]].strip()
        for row in rows
        if row.get(keys["originalid"]) and row.get(keys["patientid"])
    }
    return mapping, path


def _tag_ids(cine_folder: Path) -> set[str]:
    """Normalised words of the identifying tags of the first DICOM file of ``cine_folder``."""
    import SimpleITK as sitk

    if not cine_folder.is_dir():
        return set()
    files = sorted(p for p in cine_folder.iterdir() if p.is_file() and not p.name.startswith("."))
    reader = sitk.ImageFileReader()
    for path in files[:1]:
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return set()
        keys = set(reader.GetMetaDataKeys())
        words = " ".join(reader.GetMetaData(k) for k in ID_TAGS if k in keys)
        return {_norm_id(w) for w in re.split(r"[\s^\\]+", words) if w}
    return set()


def find_studies(source: str | Path) -> list[Study]:
    """Pair every expert contour folder under ``source`` with its image study (see the module docstring).

    Raises:
        InputError: ``source`` lacks the layout, a study has no cine folder, or a contour folder cannot be matched to
            exactly one image study.
    """
    source = Path(source)
    images_root, contours_root = source / IMAGES_DIR, source / CONTOURS_DIR
    for folder in (images_root, contours_root):
        if not folder.is_dir():
            raise InputError(folder, f"missing (expected the Sunnybrook layout: {IMAGES_DIR}/, {CONTOURS_DIR}/)")
    study_dirs = {p.name: p for p in _subfolders(images_root)}
    contour_dirs = _subfolders(contours_root)
    if not contour_dirs:
        raise InputError(contours_root, "no contour folders (expected SC-*/contours-manual/IRCCI-expert)")
    table = _csv_mapping(source)
    tag_ids = {} if table else {name: _tag_ids(d / CINE_FOLDER) for name, d in study_dirs.items()}
    studies = []
    for case_dir in contour_dirs:
        original = case_dir.name
        if table:
            patient, how = table[0].get(_norm_id(original)), f"{table[1].name} (OriginalID -> PatientID)"
        else:
            hits = [name for name, ids in tag_ids.items() if _norm_id(original) in ids]
            patient, how = (hits[0], "DICOM tag") if len(hits) == 1 else (None, "")
            if patient is None and len(study_dirs) == 1 and len(contour_dirs) == 1:
                patient, how = next(iter(study_dirs)), "only study and only contour folder"
        if patient is None or patient not in study_dirs:
            where = f"{patient} is not in {images_root}" if patient else "no scd_patientdata CSV row or DICOM tag"
            raise InputError(
                case_dir,
                f"cannot match this contour folder to an image study ({where}); put the release's scd_patientdata "
                f"table as CSV (columns PatientID, OriginalID) in {source}",
            )
        studies.append(Study(patient, original, _cine_folder(study_dirs[patient]), _contour_folder(case_dir), how))
        logger.info("%s <- %s (matched by %s)", patient, original, how)
    unused = sorted(set(study_dirs) - {s.patient_id for s in studies})
    if unused:
        logger.warning("image studies without expert contours skipped: %s", ", ".join(unused))
    return sorted(studies, key=lambda s: s.patient_id)


def read_contour(path: str | Path) -> np.ndarray:
    """The ``(N, 2)`` polygon of a contour file: one ``x y`` pair (column, row, in pixels) a line.

    Raises:
        InputError: a line is not two numbers, or the polygon has fewer than 3 points.
    """
    path = Path(path)
    points = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError
            points.append((float(fields[0]), float(fields[1])))
        except ValueError:
            raise InputError(path, f"line {number}: expected two numbers 'x y', got {line.strip()[:40]!r}") from None
    if len(points) < 3:
        raise InputError(path, f"{len(points)} points; a contour needs at least 3")
    return np.array(points)


def rasterise(points: np.ndarray, shape_xy: tuple[int, int]) -> np.ndarray:
    """Boolean ``(x, y)`` mask of the pixels whose centres lie inside the polygon ``points`` (x = column, y = row)."""
    from skimage.draw import polygon

    rows, columns = polygon(points[:, 1], points[:, 0], shape=(shape_xy[1], shape_xy[0]))
    mask = np.zeros(shape_xy, dtype=bool)
    mask[columns, rows] = True
    return mask


class _ImageIndex:
    """Finds the ``(position, phase)`` of the image a contour file names: by file name, else by InstanceNumber."""

    def __init__(self, series: DicomSeries) -> None:
        self.series = series
        self.by_name = {
            path.stem.upper(): (k, t) for k, files in enumerate(series.files) for t, path in enumerate(files)
        }
        self._by_number: dict[int, tuple[int, int]] | None = None

    def find(self, contour: Path, image_name: str, number: int) -> tuple[int, int, str]:
        if image_name.upper() in self.by_name:
            return (*self.by_name[image_name.upper()], "file name")
        if number in self.by_number:
            return (*self.by_number[number], "InstanceNumber")
        folder = self.series.files[0][0].parent
        raise InputError(contour, f"names image {image_name}, which is not in the series of {folder}")

    @property
    def by_number(self) -> dict[int, tuple[int, int]]:
        import SimpleITK as sitk

        if self._by_number is None:
            reader, found = sitk.ImageFileReader(), {}
            for k, files in enumerate(self.series.files):
                for t, path in enumerate(files):
                    reader.SetFileName(str(path))
                    reader.ReadImageInformation()
                    if "0020|0013" in reader.GetMetaDataKeys():
                        found[int(float(reader.GetMetaData("0020|0013")))] = (k, t)
            self._by_number = found
        return self._by_number


def _read_contours(study: Study, series: DicomSeries) -> tuple[dict[tuple[int, int], dict[str, np.ndarray]], set[str]]:
    """``{(position, phase): {"i": polygon, "o": polygon}}`` and how image numbers were matched."""
    contours: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    how: set[str] = set()
    index = _ImageIndex(series)
    for path in sorted(study.contour_folder.glob("*contour-manual.txt")):
        match = CONTOUR_FILE.match(path.name)
        if match is None:
            logger.info("%s: not an i/o contour (papillary muscle?); ignored", path)
            continue
        k, t, matched = index.find(path, match["image"], int(match["number"]))
        how.add(matched)
        contours.setdefault((k, t), {})[match["kind"].lower()] = read_contour(path)
    if not contours:
        raise InputError(study.contour_folder, "no i/o contour files (IM-...-icontour-manual.txt)")
    return contours, how


def _frame_phases(
    study: Study, contours: dict[tuple[int, int], dict[str, np.ndarray]], num_positions: int
) -> dict[str, tuple[int, dict[int, int], str]]:
    """For ``ed`` and ``es``: the (modal) phase, ``{position: phase}`` of the contoured positions, how it was found."""
    ed: dict[int, int] = {}
    for (k, t), kinds in sorted(contours.items()):
        if "o" in kinds:
            _set_phase(ed, k, t, study, "epicardial contours on two phases")
    if not ed:
        raise InputError(study.contour_folder, "no epicardial (o) contours, so no end-diastolic phase")
    ed_phase = Counter(ed.values()).most_common(1)[0][0]
    es: dict[int, int] = {}
    for (k, t), kinds in sorted(contours.items()):
        if "i" not in kinds:
            continue
        if t == ed.get(k, ed_phase):
            ed.setdefault(k, t)  # an ED endocardium drawn without its epicardium
            continue
        _set_phase(es, k, t, study, "endocardial contours on three phases")
    if not es:
        raise InputError(study.contour_folder, "no endocardial (i) contours outside end-diastole, so no end-systole")
    es_phase = Counter(es.values()).most_common(1)[0][0]
    found = {}
    for frame, per_slice, phase, rule in (
        ("ed", ed, ed_phase, "phase of the epicardial (o) contours"),
        ("es", es, es_phase, "phase of the endocardial (i) contours other than end-diastole"),
    ):
        differing = sorted(k for k, t in per_slice.items() if t != phase)
        if differing:
            logger.warning("%s %s: slice positions %s contoured at another phase than %d", study.patient_id,
                           frame, differing, phase)
        found[frame] = (phase, per_slice, f"{rule}, at {len(per_slice)} of {num_positions} slice positions")
    return found


def _set_phase(per_slice: dict[int, int], position: int, phase: int, study: Study, clash: str) -> None:
    """``per_slice[position] = phase``, refusing a second, different phase at one position."""
    if per_slice.get(position, phase) != phase:
        raise InputError(study.contour_folder, f"{clash} at slice position {position}")
    per_slice[position] = phase


def _label_frame(
    series: DicomSeries, contours: dict[tuple[int, int], dict[str, np.ndarray]], per_slice: dict[int, int], frame: str
) -> np.ndarray:
    """The ``(x, y, z)`` uint8 label map of one frame (see the module docstring for the values)."""
    shape_xy = series.array.shape[:2]
    labels = np.full((*shape_xy, series.num_positions), UNLABELLED, dtype=np.uint8)
    for k, t in per_slice.items():
        kinds = contours[(k, t)]
        inner = rasterise(kinds["i"], shape_xy) if "i" in kinds else np.zeros(shape_xy, dtype=bool)
        if frame == "ed" and "o" in kinds:
            plane = np.where(rasterise(kinds["o"], shape_xy), MYOCARDIUM, BACKGROUND)
        elif frame == "ed":
            plane = np.full(shape_xy, UNLABELLED)  # no epicardium: the myocardium's extent is unknown
        else:
            plane = np.full(shape_xy, BACKGROUND)
        plane[inner] = CAVITY
        labels[:, :, k] = plane
    return labels


def _frame_image(series: DicomSeries, phase: int, per_slice: dict[int, int]) -> np.ndarray:
    """The 3D frame: each contoured position at its contoured phase, the others at ``phase``."""
    if series.array.ndim == 3:
        return series.array
    phases = [per_slice.get(k, phase) for k in range(series.num_positions)]
    return np.stack([series.array[:, :, k, t] for k, t in enumerate(phases)], axis=-1)


def _convert_study(study: Study, output_dir: Path, overwrite: bool) -> list[dict[str, Any]]:
    series = read_series(study.cine_folder)
    if series.num_phases < 2:
        raise InputError(study.cine_folder, "one image per slice position; expected a cine (ED and ES phases)")
    contours, matched_by = _read_contours(study, series)
    frames = _frame_phases(study, contours, series.num_positions)
    pid = study.patient_id
    image_4d = f"images/{pid}_4d.nii.gz"
    write_nifti(series, output_dir / image_4d, overwrite=overwrite)
    voxel_ml = float(np.prod(series.spacing_mm)) / 1000.0
    cases = []
    for frame, (phase, per_slice, rule) in frames.items():
        labels = _label_frame(series, contours, per_slice, frame)
        image, label = f"images/{pid}_{frame}.nii.gz", f"labels/{pid}_{frame}.nii.gz"
        write_array(_frame_image(series, phase, per_slice), series.affine, output_dir / image, overwrite=overwrite)
        write_array(labels, series.affine, output_dir / label, overwrite=overwrite, dtype=np.uint8)
        drawn = [MYOCARDIUM, CAVITY] if frame == "ed" else [CAVITY]
        case = {
            "case_id": f"{pid}_{frame}",
            "patient": pid,
            "original_id": study.original_id,
            "frame": frame,
            "phase_index": int(phase),
            "phase_found_by": rule,
            "labels_drawn": drawn,
            "image": image,
            "label": label,
            "image_4d": image_4d,
            "num_slices": series.num_positions,
            "num_phases": series.num_phases,
            "labelled_slices": sorted(int(k) for k in per_slice),
            "spacing_mm": [round(v, 4) for v in series.spacing_mm],
            "lv_cavity_ml": round(float((labels == CAVITY).sum()) * voxel_ml, 2),
            "lv_myocardium_ml": round(float((labels == MYOCARDIUM).sum()) * voxel_ml, 2) if frame == "ed" else None,
            "contour_image_match": sorted(matched_by),
            "study_match": study.matched_by,
        }
        if any(t != phase for t in per_slice.values()):
            case["slice_phase_index"] = {str(k): int(t) for k, t in sorted(per_slice.items())}
        cases.append(case)
    logger.info(
        "%s: ED phase %d (cavity %.1f mL), ES phase %d (cavity %.1f mL)",
        pid, cases[0]["phase_index"], cases[0]["lv_cavity_ml"], cases[1]["phase_index"], cases[1]["lv_cavity_ml"],
    )
    return cases


def convert(source: str | Path, output_dir: str | Path, overwrite: bool = False) -> Path:
    """Convert every contoured study under ``source`` into ``images/``, ``labels/`` and ``datalist.json``.

    Args:
        source: a folder in the Sunnybrook layout (see the module docstring).
        output_dir: where to write; an existing datalist is an error unless ``overwrite``.
        overwrite: replace existing outputs.

    Returns:
        The path of the written datalist.

    Raises:
        InputError: naming the file or folder, for a layout, series or contour problem.
    """
    from tqdm import tqdm

    output_dir = Path(output_dir)
    datalist_path = datalist_target(output_dir, overwrite)
    cases: list[dict[str, Any]] = []
    for study in tqdm(find_studies(source), desc="converting Sunnybrook studies", unit="study", disable=None):
        cases.extend(_convert_study(study, output_dir, overwrite))
    case_ids = [c["case_id"] for c in cases]
    datalist = {
        "name": "sunnybrook_dicom",
        "description": "Sunnybrook Cardiac Data from its DICOM cines and expert contours; one case per ED or ES "
        "frame (x = column, y = row, z = slice position); for external checks only, never training.",
        "citation": CITATION,
        "licence": "public domain",
        "source": str(Path(source).resolve()),
        "labels": LABELS,
        "unlabelled_value": UNLABELLED,
        "cases": cases,
        "splits": {"external": {"train": [], "validation": [], "test": case_ids}},
    }
    atomic_write_json(datalist_path, datalist, overwrite=overwrite)
    logger.info("wrote %d Sunnybrook frames and %s", len(cases), datalist_path)
    return datalist_path


def prepare(output_dir: str | Path, source: str | Path | None = None, overwrite: bool = False) -> Path:
    """Convert the Sunnybrook DICOM folder (``source``, else :func:`default_source`); return the datalist path."""
    if source is not None and not (Path(source) / IMAGES_DIR).is_dir() and (Path(source) / SAMPLE_FOLDER).is_dir():
        source = Path(source) / SAMPLE_FOLDER
    return convert(Path(source) if source is not None else default_source(), output_dir, overwrite=overwrite)
