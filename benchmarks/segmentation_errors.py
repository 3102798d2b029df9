"""Where the segmentation errors lie: slice Dice by ring size and stack position, the area ratio, and the Dice a
one-pixel error of the reference itself would score (see :mod:`pipelines.evaluation.slice_errors` for the maths).

    python benchmarks/segmentation_errors.py --data work_data/sunnybrook \\
        --predictions runs/bench2/u-net_0/predictions runs/bench2/u-net_1/predictions ...

``--predictions`` takes folders of ``<case>_seg.nii.gz`` label maps (``pipelines predict``, or the ``predictions/``
folder of each ``benchmarks/segmentation.py`` run); each case is scored against the prepared dataset's label. A case
predicted in two folders is refused: the 5 cross-validation folds' test predictions cover each patient once.
Prints a markdown table, and writes the figures as JSON with ``--output``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from pipelines.data.datalist import load_datalist
from pipelines.errors import InputError
from pipelines.evaluation.slice_errors import (
    area_ratio, perturbation_dice, pooled_dice, slice_records, stratified_dice,
)
from pipelines.io.atomic import atomic_write_json
from pipelines.io.console import tolerant_streams

SUFFIX = "_seg.nii.gz"


def _mask(path: Path) -> np.ndarray:
    try:
        return np.asarray(nib.load(path).dataobj) > 0
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise InputError(path, f"not a readable NIfTI label map ({exc})") from exc


def collect(data: Path, folders: list[Path]) -> dict[str, Any]:
    """Score every ``<case>_seg.nii.gz`` of ``folders`` against the dataset's labels; return the report."""
    datalist = load_datalist(data)
    labels = {c["case_id"]: Path(datalist["_root"]) / c["label"] for c in datalist["cases"] if "label" in c}
    seen: dict[str, Path] = {}
    records, perturbations, pooled = [], [], []
    for folder in folders:
        files = sorted(folder.glob(f"*{SUFFIX}"))
        if not files:
            raise InputError(folder, f"no *{SUFFIX} predictions")
        for path in files:
            case = path.name[: -len(SUFFIX)]
            if case not in labels:
                raise InputError(path, f"case {case!r} is not in {data / 'datalist.json'}")
            if case in seen:
                raise InputError(path, f"case {case!r} was already predicted in {seen[case]}")
            seen[case] = path
            prediction, reference = _mask(path), _mask(labels[case])
            if prediction.shape != reference.shape:
                raise InputError(path, f"shape {prediction.shape} differs from the label's {reference.shape}")
            case_records = slice_records(case, prediction, reference)
            records += case_records
            perturbations.append(perturbation_dice(reference))
            pooled.append(pooled_dice(prediction, reference))
    return {
        "cases": len(seen),
        "slices": len(records),
        "case_dice": float(np.mean(pooled)),
        "area_ratio": area_ratio(records),
        "strata": stratified_dice(records),
        "reference_perturbations": {k: float(np.mean([p[k] for p in perturbations])) for k in perturbations[0]},
    }


def table(report: dict[str, Any]) -> str:
    """The report as markdown."""
    lines = [f"{report['cases']} patients, {report['slices']} slices with myocardium. Mean per-patient Dice "
             f"{report['case_dice']:.3f}; predicted / reference area {report['area_ratio']:.3f}.", "",
             "| stratum | third | slices | mean reference area (px) | mean slice Dice |", "|---|---|---|---|---|"]
    for name, thirds in report["strata"].items():
        for third, row in thirds.items():
            lines.append(f"| {name.replace('_', ' ')} | {third} | {row['slices']} | {row['reference_area_px']:.0f} "
                         f"| {row['dice']:.3f} |")
    lines += ["", "| the reference against itself | mean per-patient Dice |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {v:.3f} |" for k, v in report["reference_perturbations"].items()]
    return "\n".join(lines)


def main() -> None:
    tolerant_streams()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared Sunnybrook folder (datalist.json, labels/)")
    parser.add_argument("--predictions", type=Path, nargs="+", required=True, help="folders of <case>_seg.nii.gz")
    parser.add_argument("--output", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        report = collect(args.data, args.predictions)
    except InputError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.output:
        atomic_write_json(args.output, report)
    print(table(report))


if __name__ == "__main__":
    main()
