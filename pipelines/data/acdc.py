"""ACDC (Automated Cardiac Diagnosis Challenge) in its official layout -> a checked datalist with patient-level folds.

Source: Bernard et al., "Deep Learning Techniques for Automatic MRI Cardiac Multi-structures Segmentation and
Diagnosis: Is the Problem Solved?", IEEE TMI 2018 (research use; registration required for the download). Run:
``pipelines data acdc [--source DIR] --output DIR``.

Layout read (the official download, or any folder holding ``patientXXX/`` folders below it)::

    <source>/[database/]training/patientXXX/patientXXX_frameNN.nii.gz      one frame (x, y, z), full field of view
    <source>/[database/]training/patientXXX/patientXXX_frameNN_gt.nii.gz   0 bg, 1 RV cavity, 2 LV myocardium, 3 LV cavity
    <source>/[database/]training/patientXXX/patientXXX_4d.nii.gz           the whole cine (optional)
    <source>/[database/]training/patientXXX/Info.cfg                       ED: n, ES: n, Group: DCM|HCM|MINF|NOR|RV, ...

The volumes are not copied: the datalist names the source files by absolute path, after checking every pair
(readable, 3D, the label on the image's grid, label values in {0, 1, 2, 3}); a label map whose grid differs from
its image's is refused by name. Every frame is one datalist case (``patient002_ed``, ``patient002_es``), and every
split keeps the two frames of a patient together.

Splits: the patients are dealt into 5 folds stratified by diagnosis group (:func:`stratified_folds`); for fold k the
test patients are fold k, a validation subset of ``n_val`` patients (stratified) is carved out of the others for
checkpoint selection, and the rest train. ``seed`` is fold 0 under another name, so that commands without
``--fold`` train and score on fold 0.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipelines.data.datalist import datalist_target
from pipelines.data.sources import DATA_ENV
from pipelines.data.splits import split_cases, stratified_folds
from pipelines.data.validate import check_pair
from pipelines.errors import InputError, PipelineError
from pipelines.io.atomic import atomic_write_json

__all__ = ["GROUPS", "LABELS", "find_patients", "read_info", "convert", "prepare"]

logger = logging.getLogger(__name__)

LABELS = {"0": "background", "1": "RV cavity", "2": "LV myocardium", "3": "LV cavity"}
LABEL_VALUES = (0, 1, 2, 3)
GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")
GROUP_NAMES = {
    "DCM": "dilated cardiomyopathy",
    "HCM": "hypertrophic cardiomyopathy",
    "MINF": "previous myocardial infarction",
    "NOR": "normal",
    "RV": "abnormal right ventricle",
}
PATIENT_DIR = re.compile(r"^patient\d{3}$")


def find_patients(source: str | Path) -> list[Path]:
    """The ``patientXXX`` folders (holding an ``Info.cfg``) at most three levels below ``source``, sorted by name.

    Raises:
        InputError: ``source`` is missing or holds no patient folder.
    """
    root = Path(source)
    if not root.is_dir():
        raise InputError(root, "no such folder (expected the ACDC layout: training/patientXXX/...)")
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):  # depth-bounded, so links cannot loop
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < 3 else []
        folder = Path(dirpath)
        if PATIENT_DIR.match(folder.name) and (folder / "Info.cfg").is_file():
            found.append(folder)
            dirnames[:] = []
    if not found:
        raise InputError(root, "no patientXXX/Info.cfg folders found (expected the ACDC layout)")
    return sorted(found, key=lambda p: p.name)


def read_info(info_file: Path) -> dict[str, Any]:
    """Parse an ACDC ``Info.cfg`` (``key: value`` lines); ``ED`` and ``ES`` as ints, ``Group`` checked.

    Raises:
        InputError: a line that is not ``key: value``, ED/ES missing or not integers, or an unknown group.
    """
    info: dict[str, Any] = {}
    for number, line in enumerate(info_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise InputError(info_file, f"line {number} is not 'key: value': {line.strip()!r}")
        info[key.strip()] = value.strip()
    for key in ("ED", "ES"):
        if not str(info.get(key, "")).isdigit():
            raise InputError(info_file, f"{key} frame missing or not an integer ({info.get(key)!r})")
        info[key] = int(info[key])
    if info.get("Group") not in GROUPS:
        raise InputError(info_file, f"unknown diagnosis group {info.get('Group')!r} (expected one of {', '.join(GROUPS)})")
    return info


def _frame_cases(patient_dir: Path) -> list[dict[str, Any]]:
    """The ED and ES cases of one patient, each pair checked (:func:`check_pair`)."""
    import nibabel as nib

    pid = patient_dir.name
    info = read_info(patient_dir / "Info.cfg")
    cine = patient_dir / f"{pid}_4d.nii.gz"
    cases = []
    for phase in ("ED", "ES"):
        image = patient_dir / f"{pid}_frame{info[phase]:02d}.nii.gz"
        label = patient_dir / f"{pid}_frame{info[phase]:02d}_gt.nii.gz"
        for path in (image, label):
            if not path.is_file():
                raise InputError(path, f"missing ({phase} frame {info[phase]} of {patient_dir / 'Info.cfg'})")
        check_pair(image, label, LABEL_VALUES)
        header = nib.load(image).header
        zooms = [round(float(z), 4) for z in header.get_zooms()[:3]]
        cases.append(
            {
                "case_id": f"{pid}_{phase.lower()}",
                "patient": pid,
                "frame": phase.lower(),
                "frame_number": info[phase],
                "image": str(image.resolve()),
                "label": str(label.resolve()),
                "num_slices": int(header.get_data_shape()[2]),
                "shape": [int(s) for s in header.get_data_shape()[:3]],
                "spacing_mm": zooms,
                "category": GROUPS.index(info["Group"]),
                "category_name": info["Group"],
                **({"image_4d": str(cine.resolve())} if cine.is_file() else {}),
            }
        )
    return cases


def _expand(patients: Iterable[str], by_patient: dict[str, list[str]]) -> list[str]:
    return [case for patient in sorted(patients) for case in by_patient[patient]]


def convert(
    source: str | Path, output_dir: str | Path, n_folds: int = 5, n_val: int = 8, seed: int = 0, overwrite: bool = False
) -> Path:
    """Check the ACDC patients under ``source`` and write ``<output_dir>/datalist.json``; return its path.

    Args:
        source: a folder in the official ACDC layout (see the module docstring).
        output_dir: where the datalist goes; an existing one is an error unless ``overwrite``.
        n_folds: number of patient-level folds, stratified by diagnosis group.
        n_val: validation patients carved (stratified) out of each split's training patients.
        seed: seed of the fold assignment and of the validation subsets.
        overwrite: replace an existing datalist.

    Raises:
        InputError: naming the file, for a missing frame, a broken ``Info.cfg``, or a label map that does not fit
            its image (grid or values).
    """
    from tqdm import tqdm

    output_dir = Path(output_dir)
    datalist_path = datalist_target(output_dir, overwrite)
    patients = find_patients(source)
    cases: list[dict[str, Any]] = []
    for patient_dir in tqdm(patients, desc="checking ACDC patients", unit="patient", disable=None):
        cases.extend(_frame_cases(patient_dir))
    groups = {c["patient"]: c["category"] for c in cases}
    by_patient: dict[str, list[str]] = {}
    for case in cases:
        by_patient.setdefault(case["patient"], []).append(case["case_id"])
    folds = stratified_folds(groups, n_folds=n_folds, seed=seed)
    for case in cases:
        case["fold"] = folds[case["patient"]]
    splits: dict[str, dict[str, list[str]]] = {}
    for k in range(n_folds):
        test = [p for p in groups if folds[p] == k]
        by_subset = split_cases(sorted(groups), test, groups, n_val, seed + k)
        splits[f"fold{k}"] = {subset: _expand(ids, by_patient) for subset, ids in by_subset.items()}
    splits["seed"] = splits["fold0"]
    datalist = {
        "name": "acdc",
        "description": "ACDC short-axis cine MR, full field of view; one case per ED or ES frame (slices along axis 2).",
        "citation": "Bernard et al., Deep Learning Techniques for Automatic MRI Cardiac Multi-structures Segmentation "
        "and Diagnosis: Is the Problem Solved?, IEEE TMI 2018",
        "licence": "research use; cite the paper",
        "source": str(Path(source).resolve()),
        "labels": LABELS,
        "categories": {str(i): g for i, g in enumerate(GROUPS)},
        "category_names": GROUP_NAMES,
        "seed": seed,
        "cases": cases,
        "splits": splits,
    }
    atomic_write_json(datalist_path, datalist, overwrite=overwrite)
    logger.info("checked %d ACDC patients (%d frames); wrote %s", len(groups), len(cases), datalist_path)
    return datalist_path


def default_source() -> Path:
    """``acdc`` in the first ``PIPELINES_DATA`` folder holding it, else ``../shared/data/acdc`` beside the repo."""
    folders = [Path(f) for f in os.environ.get(DATA_ENV, "").split(os.pathsep) if f]
    folders.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    for folder in folders:
        if (folder / "acdc").is_dir():
            return folder / "acdc"
    raise PipelineError(
        "acdc: not found; ACDC is a registered download (https://www.creatis.insa-lyon.fr/Challenge/acdc/), "
        f"so pass --source DIR (the folder holding training/) or set {DATA_ENV} to a folder holding acdc/"
    )


def prepare(output_dir: str | Path, source: str | Path | None = None, overwrite: bool = False, **kwargs: Any) -> Path:
    """Check the ACDC folder (``source``, else :func:`default_source`) and write the datalist; return its path."""
    return convert(Path(source) if source else default_source(), output_dir, overwrite=overwrite, **kwargs)

