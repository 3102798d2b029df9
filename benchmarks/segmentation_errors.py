"""Where the segmentation errors lie: slice Dice by ring size and stack position, the area ratio, and the Dice a
one-pixel error of the reference itself would score (see :mod:`pipelines.evaluation.slice_errors` for the maths).

    python benchmarks/segmentation_errors.py --data work_data/sunnybrook \\
        --predictions runs/bench2/u-net_0/predictions runs/bench2/u-net_1/predictions ...

``--predictions`` takes folders of ``<case>_seg.nii.gz`` label maps (``pipelines predict``, or the ``predictions/``
folder of each ``benchmarks/segmentation.py`` run); each case is scored against the prepared dataset's label. A case
predicted in two folders is refused: the 5 cross-validation folds' test predictions cover each patient once.
``--subsets`` keeps only the cases of some subsets of one ``--split`` (for example how a model fits its own
training patients, from one ``pipelines predict`` over the whole image folder):

    pipelines predict lv_segmentation_unet --input work_data/sunnybrook/images --output runs/pred_all
    python benchmarks/segmentation_errors.py --data work_data/sunnybrook --predictions runs/pred_all --subsets train

Prints a markdown table, and writes the figures as JSON with ``--output``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from pipelines.data.datalist import load_datalist, split_items
from pipelines.errors import InputError
from pipelines.evaluation.slice_errors import (
    ErrorSides, area_ratio, error_sides, perturbation_dice, pooled_dice, slice_records, stratified_dice,
)
from pipelines.io.atomic import atomic_write_json
from pipelines.io.console import tolerant_streams

SUFFIX = "_seg.nii.gz"


def _mask(path: Path) -> np.ndarray:
    try:
        return np.asarray(nib.load(path).dataobj) > 0
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise InputError(path, f"not a readable NIfTI label map ({exc})") from exc


def collect(data: Path, folders: list[Path], cases: set[str] | None = None) -> dict[str, Any]:
    """Score every ``<case>_seg.nii.gz`` of ``folders`` (only those of ``cases`` when given) against the dataset's
    labels; return the report."""
    datalist = load_datalist(data)
    labels = {c["case_id"]: Path(datalist["_root"]) / c["label"] for c in datalist["cases"] if "label" in c}
    seen: dict[str, Path] = {}
    records, perturbations, pooled, sides = [], [], [], ErrorSides()
    for folder in folders:
        files = sorted(folder.glob(f"*{SUFFIX}"))
        if not files:
            raise InputError(folder, f"no *{SUFFIX} predictions")
        for path in files:
            case = path.name[: -len(SUFFIX)]
            if cases is not None and case not in cases:
                continue
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
            sides = sides + error_sides(prediction, reference, case)
    if not seen:
        raise InputError(folders[0], "none of the predicted cases is in the chosen subsets")
    return {
        "cases": len(seen),
        "slices": len(records),
        "case_dice": float(np.mean(pooled)),
        "area_ratio": area_ratio(records),
        "strata": stratified_dice(records),
        "reference_perturbations": {k: float(np.mean([p[k] for p in perturbations])) for k in perturbations[0]},
        "error_sides": vars(sides),
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
    return "\n".join(lines + ["", sides_table(report["error_sides"])])


def sides_table(sides: dict[str, int]) -> str:
    """False positives and misses by side of the reference ring, as percentages of the reference area."""
    ref = max(sides["reference"], 1)

    def row(name: str, keys: tuple[str, str, str]) -> str:
        cells = [f"{100 * sides[k] / ref:.1f}%" for k in keys] + [f"{100 * sum(sides[k] for k in keys) / ref:.1f}%"]
        return f"| {name} | " + " | ".join(cells) + " |"

    return "\n".join([
        f"Errors by side of the ring, in % of the reference area ({sides['closed_slices']} closed rings, "
        f"{sides['open_slices']} open ones):", "",
        "| error | cavity / inner edge | outside / outer edge | on open rings | total |", "|---|---|---|---|---|",
        row("false positives", ("fp_cavity", "fp_outside", "fp_open_ring")),
        row("misses", ("fn_inner", "fn_outer", "fn_open_ring")),
    ])


def main() -> None:
    tolerant_streams()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared Sunnybrook folder (datalist.json, labels/)")
    parser.add_argument("--predictions", type=Path, nargs="+", required=True, help="folders of <case>_seg.nii.gz")
    parser.add_argument("--output", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--subsets", help="score only these comma-separated subsets of --split (train, validation, "
                        "test); default: every predicted case")
    parser.add_argument("--split", default="seed", help="'seed' or a fold 0-4, for --subsets (default: seed)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        cases = None
        if args.subsets:
            cases = {item["case_id"] for subset in args.subsets.split(",")
                     for item in split_items(args.data, args.split, subset.strip(), check_files=False)}
        report = collect(args.data, args.predictions, cases)
    except InputError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.output:
        atomic_write_json(args.output, report)
    print(table(report))


if __name__ == "__main__":
    main()
