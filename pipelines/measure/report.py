"""The tables and documents of ``pipelines measure``: ``measures.csv`` (one row per case) and ``<case>.json``.

``measures.csv`` is rewritten atomically each time rows are added (:func:`append_rows`), so that it is always
complete: a row of a case already in the table is replaced only when overwriting, else it is an
:class:`~pipelines.errors.OutputExistsError`; the rows of other cases are kept. Numbers are written as Python's
shortest round-trip ``repr`` (so ``float(cell)`` is the computed value exactly); an undefined value (an RV EF without
RV) is an empty cell; ``qc_flags`` are the flag codes joined with ``;``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.errors import InputError, OutputExistsError
from pipelines.io.atomic import atomic_write_json, atomic_write_text, json_safe

__all__ = ["CSV_NAME", "COLUMNS", "csv_row", "read_rows", "append_rows", "write_case_json", "case_outputs"]

CSV_NAME = "measures.csv"
COLUMNS = (
    "case", "lv_edv_ml", "lv_esv_ml", "lv_sv_ml", "lv_ef_pct", "lv_mass_g", "rv_edv_ml", "rv_esv_ml", "rv_ef_pct",
    "ed_frame", "es_frame", "rv_sv_ml", "wall_thickness_mean_mm", "wall_thickness_max_mm", "lv_slices",
    "rv_basal_trimmed_ml", "excluded_slices", "qc_flags",
)


def case_outputs(output_dir: Path, case: str, cine: bool) -> list[Path]:
    """The files a case writes besides its row of ``measures.csv``: JSON, bull's-eye, and (cine) volume curve."""
    files = [output_dir / f"{case}.json", output_dir / f"{case}_bullseye.png"]
    return files + ([output_dir / f"{case}_volume_curve.png"] if cine else [])


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def csv_row(case: str, result: Mapping[str, Any]) -> dict[str, str]:
    """The ``measures.csv`` row of a case from its :func:`~pipelines.measure.case.measure_frames` result (with
    ``ed_frame`` / ``es_frame`` added by the caller)."""
    values = {**result["measures"], "case": case, "ed_frame": result.get("ed_frame"),
              "es_frame": result.get("es_frame")}
    excluded = result["excluded_slices"]
    values["excluded_slices"] = len(excluded["ED"]) + len(excluded["ES"])
    values["qc_flags"] = ";".join(dict.fromkeys(f["code"] for f in result["qc_flags"]))
    return {column: _cell(values.get(column)) for column in COLUMNS}


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of an existing ``measures.csv`` (empty when there is none).

    Raises:
        InputError: the file exists but has no ``case`` column.
    """
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "case" not in reader.fieldnames:
            raise InputError(path, "not a measures table (no 'case' column); move it away or choose another output")
        return list(reader)


def append_rows(path: str | Path, rows: Sequence[Mapping[str, str]], overwrite: bool = False) -> Path:
    """Add ``rows`` (from :func:`csv_row`) to the table at ``path``, creating it if needed; return ``path``.

    Args:
        path: the ``measures.csv`` file.
        rows: the rows to add, keyed by :data:`COLUMNS`.
        overwrite: replace the row of a case already in the table (else that is an error and nothing is written).

    Raises:
        OutputExistsError: a case of ``rows`` is in the table already and ``overwrite`` is False.
    """
    path = Path(path)
    table = {row["case"]: row for row in read_rows(path)}
    for row in rows:
        if row["case"] in table and not overwrite:
            raise OutputExistsError(f"{path} (case {row['case']})")
    for row in rows:
        table[row["case"]] = dict(row)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({column: row.get(column, "") for column in COLUMNS} for row in table.values())
    return atomic_write_text(path, buffer.getvalue())


def write_case_json(path: Path, document: Mapping[str, Any], overwrite: bool = False) -> Path:
    """Write the case's document (NaN as ``null``) atomically; return ``path``."""
    return atomic_write_json(path, json_safe(dict(document)), overwrite=overwrite)
