"""Measure one case from label-map files and write its outputs: :func:`measure_pair` and :func:`measure_cine`.

Each call writes, in ``output_dir``: ``<case>.json`` (every figure, the QC flags with their rules, the voxel size,
the excluded slices), ``<case>_bullseye.png``, for a cine ``<case>_volume_curve.png``, and then the case's row of
``measures.csv`` (added to the rows already there). Existing outputs of the case are an
:class:`~pipelines.errors.OutputExistsError` before anything is read, unless ``overwrite``. ``predict`` can call
these on its own label maps::

    from pipelines.measure import measure_cine
    summary = measure_cine("out/patient001_4d_seg.nii.gz", "out/measures", case="patient001")
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import InputError, OutputExistsError
from pipelines.measure.case import clean_frame, measure_frames
from pipelines.measure.figures import bullseye_figure, volume_curve_figure
from pipelines.measure.labels import LV, RV, LabelMap, check_same_grid, load_labels, unlabelled_slices
from pipelines.measure.qc import flag
from pipelines.measure.report import CSV_NAME, append_rows, case_outputs, csv_row, read_rows, write_case_json
from pipelines.measure.volumes import ed_es_frames, frame_volumes_ml
from pipelines.visualize.figures import save_figure

__all__ = ["default_case_name", "check_case_outputs", "measure_pair", "measure_cine"]

logger = logging.getLogger(__name__)

_NIFTI_SUFFIX = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
# trailing parts of a label map's file name that say what it is rather than whose it is
_NAME_TAILS = re.compile(r"_(gt|seg|segmentation|label|labels|pred|prediction|frame\d+|ed|es|4d|cine)$", re.IGNORECASE)
_FRAME_NUMBER = re.compile(r"frame(\d+)", re.IGNORECASE)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def default_case_name(path: str | Path) -> str:
    """The case name of a label-map file: its name without ``.nii[.gz]`` and trailing ``_gt``, ``_seg``,
    ``_frameNN``, ``_ed``, ``_es``, ``_4d``... parts (``patient002_frame01_gt.nii.gz`` -> ``patient002``)."""
    stem = _NIFTI_SUFFIX.sub("", Path(path).name)
    name = stem
    while (shorter := _NAME_TAILS.sub("", name)) != name and shorter:
        name = shorter
    return name or stem


def _frame_number(path: Path) -> int | None:
    match = _FRAME_NUMBER.search(Path(path).name)
    return int(match.group(1)) if match else None


def check_case_outputs(output_dir: Path, case: str, cine: bool, overwrite: bool) -> list[Path]:
    """The case's output files (:func:`~pipelines.measure.report.case_outputs`), after checking the name and, unless
    ``overwrite``, that neither they nor the case's row of ``measures.csv`` exist.

    Raises:
        InputError: the case name is not a plain file name.
        OutputExistsError: an output of the case exists and ``overwrite`` is False.
    """
    if not _SAFE_NAME.match(case):
        raise InputError(case, "case name must be letters, digits, '.', '_' or '-' (and not start with '.')")
    outputs = case_outputs(output_dir, case, cine)
    if not overwrite:
        for path in outputs:
            if path.exists():
                raise OutputExistsError(path)
        if any(row["case"] == case for row in read_rows(output_dir / CSV_NAME)):
            raise OutputExistsError(f"{output_dir / CSV_NAME} (case {case})")
    return outputs


def _require_lv(frame: np.ndarray, path: Path, what: str) -> None:
    if not np.any(frame == LV):
        raise InputError(path, f"no LV cavity (label 3) in {what}; cannot measure")


def _write(
    output_dir: Path, case: str, outputs: list[Path], document: dict[str, Any], overwrite: bool,
    curve: tuple[np.ndarray, np.ndarray, int, int] | None = None,
) -> dict[str, Any]:
    """Write the case's JSON and figures, then its CSV row; return the summary of :func:`measure_pair`."""
    segments = {s["segment"]: s["mean_mm"] for s in document["wall_thickness"]["segments"]}
    write_case_json(outputs[0], document, overwrite=overwrite)
    save_figure(bullseye_figure(segments, f"{case}: ED wall thickness (AHA segments)"), outputs[1], overwrite=overwrite)
    if curve is not None:
        save_figure(volume_curve_figure(*curve, title=f"{case}: cavity volumes"), outputs[2], overwrite=overwrite)
    row = csv_row(case, document)
    csv_path = append_rows(output_dir / CSV_NAME, [row], overwrite=overwrite)
    codes = row["qc_flags"]
    logger.info("%s: LVEF %.1f %%, LVEDV %.1f mL%s", case, document["measures"]["lv_ef_pct"],
                document["measures"]["lv_edv_ml"], f" (QC: {codes})" if codes else "")
    return {"case": case, "row": row, "measures": document["measures"], "qc_flags": codes.split(";") if codes else [],
            "written": [*outputs, csv_path]}


def _document(case: str, inputs: dict[str, str], label_map: LabelMap, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "case": case,
        "inputs": inputs,
        "voxel_size_mm": list(label_map.spacing_mm),
        "voxel_volume_ml": label_map.voxel_volume_ml,
        "ed_frame": result.get("ed_frame"),
        "es_frame": result.get("es_frame"),
        "measures": result["measures"],
        "qc_flags": result["qc_flags"],
        "excluded_slices": result["excluded_slices"],
        "basal_rv_trim": result["basal_rv_trim"],
        "mid_slices": result["mid_slices"],
        "wall_thickness": result["thickness"],
        **({"volume_curve": result["volume_curve"]} if "volume_curve" in result else {}),
        "conventions": "see docs/measure.md: volumes = voxel count x voxel volume; thickness at each epicardial "
                       "point = distance to the nearest LV cavity voxel; AHA origin = anterior RV insertion",
    }


def measure_pair(
    ed_path: str | Path,
    es_path: str | Path,
    output_dir: str | Path,
    case: str | None = None,
    overwrite: bool = False,
    ed_frame: int | None = None,
    es_frame: int | None = None,
    basal_rv_min_ratio: float | None = None,
) -> dict[str, Any]:
    """Measure a case given as two 3D label maps (ED and ES frames) and write its outputs.

    Args:
        ed_path: the end-diastolic label map ``(x, y, z)``.
        es_path: the end-systolic label map, on the same grid.
        output_dir: the output folder (created if needed).
        case: the case name (default :func:`default_case_name` of ``ed_path``).
        overwrite: replace the case's existing outputs and row.
        ed_frame: the ED frame number for the table (default: the ``frameNN`` of the file name, if any).
        es_frame: likewise for ES.
        basal_rv_min_ratio: apply the basal ES RV slice rule (:mod:`pipelines.measure.basal`) with this ratio;
            ``None`` (default) measures the labels as they are.

    Returns:
        ``case``, ``row`` (the CSV row as strings), ``measures`` (numbers), ``qc_flags`` (codes), ``written``.

    Raises:
        InputError: naming the file, for a bad label map (:func:`~pipelines.measure.labels.load_labels`), grids that
            differ, or no LV cavity in the ED frame.
        OutputExistsError: an output of the case exists and ``overwrite`` is False.
    """
    ed_path, es_path, output_dir = Path(ed_path), Path(es_path), Path(output_dir)
    case = case or default_case_name(ed_path)
    outputs = check_case_outputs(output_dir, case, cine=False, overwrite=overwrite)
    ed, es = load_labels(ed_path, 3), load_labels(es_path, 3)
    check_same_grid(ed, es)
    excluded_ed, excluded_es = unlabelled_slices(ed.labels), unlabelled_slices(es.labels)
    _require_lv(clean_frame(ed.labels, excluded_ed), ed_path, "the ED frame")
    result = measure_frames(ed.labels, es.labels, ed.spacing_mm, ed.affine, excluded_ed, excluded_es,
                            basal_rv_min_ratio=basal_rv_min_ratio)
    result["ed_frame"] = ed_frame if ed_frame is not None else _frame_number(ed_path)
    result["es_frame"] = es_frame if es_frame is not None else _frame_number(es_path)
    inputs = {"ed": str(ed_path), "es": str(es_path)}
    return _write(output_dir, case, outputs, _document(case, inputs, ed, result), overwrite)


def measure_cine(
    labels_4d_path: str | Path, output_dir: str | Path, case: str | None = None, overwrite: bool = False,
    basal_rv_min_ratio: float | None = None,
) -> dict[str, Any]:
    """Measure a case given as a 4D label map ``(x, y, z, t)`` and write its outputs.

    The LV and RV cavity volumes of every frame are computed (unlabelled slices excluded per frame); ED is the frame
    of largest and ES the frame of smallest LV cavity volume among the frames that hold one
    (:func:`~pipelines.measure.volumes.ed_es_frames`), and the pair is measured as by :func:`measure_pair`. Frames
    are numbered from 1 in the outputs (as ACDC's ``frameNN`` files).

    Args:
        labels_4d_path: the cine's label map.
        output_dir: the output folder.
        case: the case name (default :func:`default_case_name` of the file).
        overwrite: replace the case's existing outputs and row.
        basal_rv_min_ratio: as :func:`measure_pair`; applied to the ES frame only (the volume curve is the labels'
            as they are).

    Returns:
        As :func:`measure_pair`.

    Raises:
        InputError: naming the file, for a bad label map or no frame with an LV cavity.
        OutputExistsError: an output of the case exists and ``overwrite`` is False.
    """
    path, output_dir = Path(labels_4d_path), Path(output_dir)
    case = case or default_case_name(path)
    outputs = check_case_outputs(output_dir, case, cine=True, overwrite=overwrite)
    cine = load_labels(path, 4)
    frames = cine.labels.shape[3]
    excluded = [unlabelled_slices(cine.labels[..., t]) for t in range(frames)]
    cleaned = np.stack([clean_frame(cine.labels[..., t], excluded[t]) for t in range(frames)], axis=-1)
    lv = frame_volumes_ml(cleaned, LV, cine.voxel_volume_ml)
    rv = frame_volumes_ml(cleaned, RV, cine.voxel_volume_ml)
    _require_lv(cleaned, path, "any frame")
    ed, es = ed_es_frames(lv)
    result = measure_frames(cine.labels[..., ed], cine.labels[..., es], cine.spacing_mm, cine.affine,
                            excluded[ed], excluded[es], basal_rv_min_ratio=basal_rv_min_ratio)
    empty = [t + 1 for t in range(frames) if lv[t] == 0]
    if empty:
        result["qc_flags"].append(flag("empty_frames", f"frames {empty} hold no LV cavity"))
    result["ed_frame"], result["es_frame"] = ed + 1, es + 1
    result["volume_curve"] = {
        "frame": list(range(1, frames + 1)), "lv_ml": lv.tolist(), "rv_ml": rv.tolist(),
        "excluded_slices": {str(t + 1): excluded[t] for t in range(frames) if excluded[t]},
    }
    document = _document(case, {"cine": str(path)}, cine, result)
    return _write(output_dir, case, outputs, document, overwrite, curve=(lv, rv, ed, es))
