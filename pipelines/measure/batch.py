"""Measure every case in a folder, carrying on past a case that fails: :func:`find_cases`, :func:`measure_batch`.

A batch folder may hold, in any mix:

- ``<case>_ed*.nii[.gz]`` and ``<case>_es*.nii[.gz]`` pairs directly in the folder (e.g. ``p7_ed.nii.gz`` with
  ``p7_es.nii.gz``, or ``p7_ED_seg.nii.gz`` with ``p7_ES_seg.nii.gz``; the match ignores case);
- ``<case>_4d*.nii[.gz]`` or ``<case>_cine*.nii[.gz]`` 4D label maps directly in the folder;
- the ACDC layout, at most three levels down: ``patientXXX/`` folders with ``Info.cfg`` (ED and ES frame numbers)
  and the expert labels ``patientXXX_frameNN_gt.nii.gz`` of those frames, so that ACDC's reference labels are
  measured by the same code as predictions (``pipelines measure --batch ../shared/data/acdc --output DIR``).

Other files are ignored (listed in the log). A case that fails (a bad label map, an ED without its ES, outputs that
exist) is logged and reported; the others are measured and written.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.batch import failure_reason
from pipelines.errors import InputError, PipelineError
from pipelines.measure.run import measure_cine, measure_pair

__all__ = ["CaseFiles", "BatchResult", "find_cases", "measure_batch"]

logger = logging.getLogger(__name__)

_FLAT = re.compile(r"^(?P<case>.+?)_(?P<kind>ed|es|4d|cine)(?:_[^.]*)?\.nii(?:\.gz)?$", re.IGNORECASE)


@dataclass(frozen=True)
class CaseFiles:
    """The label maps of one case of a batch.

    Args:
        case: the case name.
        ed: the ED frame (pairs), or None.
        es: the ES frame (pairs), or None.
        cine: the 4D label map (cines), or None.
        ed_frame: the ED frame number known from elsewhere (ACDC's ``Info.cfg``), or None.
        es_frame: likewise for ES.
    """

    case: str
    ed: Path | None = None
    es: Path | None = None
    cine: Path | None = None
    ed_frame: int | None = None
    es_frame: int | None = None

    @property
    def source(self) -> str:
        """The file (or the pair) named in reports."""
        return str(self.cine or self.ed or self.es)


@dataclass
class BatchResult:
    """The files written, the cases measured, and the inputs that failed with their one-line reasons."""

    written: list[Path] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    summaries: list[dict] = field(default_factory=list)


def _flat_cases(folder: Path, failed: dict[str, str]) -> list[CaseFiles]:
    pairs: dict[str, dict[str, Path]] = {}
    cases: list[CaseFiles] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        match = _FLAT.match(path.name)
        if match is None:
            if re.search(r"\.nii(\.gz)?$", path.name, re.IGNORECASE):
                logger.warning("%s: ignored (not <case>_ed*, <case>_es*, <case>_4d* or <case>_cine*)", path)
            continue
        kind = match["kind"].lower()
        if kind in ("4d", "cine"):
            cases.append(CaseFiles(match["case"], cine=path))
        elif kind in pairs.setdefault(match["case"], {}):
            failed[str(path)] = str(InputError(path, f"second {kind.upper()} file of case {match['case']}"))
        else:
            pairs[match["case"]][kind] = path
    for case, files in pairs.items():
        if "ed" in files and "es" in files:
            cases.append(CaseFiles(case, ed=files["ed"], es=files["es"]))
        else:
            present, missing = ("ed", "ES") if "ed" in files else ("es", "ED")
            failed[str(files[present])] = str(InputError(files[present], f"no matching {missing} file in {folder}"))
    return cases


def _acdc_cases(folder: Path, failed: dict[str, str]) -> list[CaseFiles]:
    from pipelines.data.acdc import find_patients, read_info

    try:
        patients = find_patients(folder)
    except InputError:  # no ACDC layout here
        return []
    cases = []
    for patient in patients:
        try:
            info = read_info(patient / "Info.cfg")
        except PipelineError as exc:
            failed[str(patient / "Info.cfg")] = str(exc)
            continue
        ed, es = (patient / f"{patient.name}_frame{info[p]:02d}_gt.nii.gz" for p in ("ED", "ES"))
        cases.append(CaseFiles(patient.name, ed=ed, es=es, ed_frame=info["ED"], es_frame=info["ES"]))
    return cases


def find_cases(folder: str | Path) -> tuple[list[CaseFiles], dict[str, str]]:
    """The cases in ``folder`` (module docstring) and the files that cannot form a case, with the reason.

    Raises:
        InputError: ``folder`` is not a folder, or holds no case and no failed file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "no such folder")
    failed: dict[str, str] = {}
    cases = _flat_cases(folder, failed) + _acdc_cases(folder, failed)
    if not cases and not failed:
        raise InputError(folder, "no cases found (expected <case>_ed/_es pairs, <case>_4d files or ACDC patientXXX/)")
    return cases, failed


def measure_batch(
    folder: str | Path, output_dir: str | Path, overwrite: bool = False, basal_rv_min_ratio: float | None = None
) -> BatchResult:
    """Measure every case of ``folder`` into ``output_dir`` (one ``measures.csv``), carrying on past failures.

    Args:
        folder: the batch folder (module docstring).
        output_dir: the output folder.
        overwrite: replace existing outputs of the cases measured (rows of other cases are kept).
        basal_rv_min_ratio: apply the basal ES RV slice rule (:mod:`pipelines.measure.basal`) to every case.

    Returns:
        The :class:`BatchResult`; a case whose outputs exist (without ``overwrite``) counts as failed.

    Raises:
        InputError: ``folder`` is missing or holds no case.
    """
    from tqdm import tqdm

    cases, failed = find_cases(folder)
    result = BatchResult(failed=dict(failed))
    for reason in failed.values():
        logger.error("%s", reason)
    seen: set[str] = set()
    for files in tqdm(cases, desc="measuring", unit="case", disable=None):
        try:
            if files.case in seen:
                raise InputError(files.source, f"case name {files.case!r} is used by another input of the batch")
            seen.add(files.case)
            if files.cine is not None:
                summary = measure_cine(files.cine, output_dir, case=files.case, overwrite=overwrite,
                                       basal_rv_min_ratio=basal_rv_min_ratio)
            else:
                summary = measure_pair(files.ed, files.es, output_dir, case=files.case, overwrite=overwrite,
                                       ed_frame=files.ed_frame, es_frame=files.es_frame,
                                       basal_rv_min_ratio=basal_rv_min_ratio)
        except PipelineError as exc:
            result.failed[files.source] = str(exc)
            logger.error("%s", exc)
            continue
        except Exception as exc:  # a bug on one case: keep its traceback in the log, measure the others
            logger.exception("%s: unexpected failure", files.source)
            result.failed[files.source] = failure_reason(files.source, exc)
            continue
        result.done.append(files.source)
        result.written += summary["written"]
        result.summaries.append(summary)
    return result
