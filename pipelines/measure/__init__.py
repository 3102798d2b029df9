"""Cardiac function from short-axis label maps: volumes, ejection fractions, LV mass, wall thickness, QC flags.

Labels follow ACDC: 0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity, 255 unlabelled slice (left out of
every measure and reported). Command line::

    pipelines measure --ed ED_LABELS --es ES_LABELS --output DIR [--case NAME]
    pipelines measure --cine LABELS_4D --output DIR [--case NAME]
    pipelines measure --batch DIR --output DIR

Modules, one job each: :mod:`.labels` (reading and checking label maps), :mod:`.volumes` (volumes, EF, mass, ED /
ES frames), :mod:`.thickness` (wall thickness by distance transform), :mod:`.aha` (base / apex, levels, RV
insertion, 16 segments), :mod:`.qc` (the QC rules and their codes), :mod:`.case` (all measures of one case),
:mod:`.report` (``measures.csv``, ``<case>.json``), :mod:`.figures` (bull's-eye, volume curve), :mod:`.run`
(one case from files to outputs), :mod:`.batch` (a folder of cases), :mod:`.tracking` (MLflow). The formulas and
conventions are in each module's docstring and in ``docs/measure.md``.

QC flags: the codes and rules are tabled in :mod:`.qc` (and :data:`.qc.QC_RULES`); ``measures.csv`` joins a case's
codes with ``;`` in its ``qc_flags`` column.
"""

from __future__ import annotations

from pipelines.measure.batch import BatchResult, CaseFiles, find_cases, measure_batch
from pipelines.measure.case import measure_frames, wall_thickness
from pipelines.measure.labels import LabelMap, load_labels
from pipelines.measure.qc import QC_RULES
from pipelines.measure.report import COLUMNS, CSV_NAME, append_rows, csv_row, read_rows
from pipelines.measure.run import default_case_name, measure_cine, measure_pair

__all__ = [
    "measure_pair", "measure_cine", "measure_batch", "find_cases", "measure_frames", "wall_thickness",
    "append_rows", "csv_row", "read_rows", "load_labels", "default_case_name", "LabelMap", "CaseFiles",
    "BatchResult", "QC_RULES", "COLUMNS", "CSV_NAME",
]
