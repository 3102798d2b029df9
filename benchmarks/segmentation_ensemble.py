"""Score an ensemble of trained segmentation models against each of its members, on the same patients.

    python benchmarks/segmentation_ensemble.py --data work_data/sunnybrook --bundle lv_segmentation_unet \\
        --checkpoints bundles/lv_segmentation_unet/models/model.pt runs/seeds/u-net_0_2_0_recipe_seed_1_seed/models/model.pt \\
        --split seed --subsets validation,test --output runs/ensemble

The ensemble is :class:`pipelines.networks.ProbabilityEnsemble`: the mean of the members' softmax probabilities
(the bundle's flip test-time augmentation then averages over members and flips alike). Its weights are written once,
as ``<output>/ensemble.pt``, so that ``pipelines evaluate`` / ``pipelines predict`` can use them with the
``network_def`` override this script prints. Every subset is scored with the bundle's own evaluation (per-patient
3D Dice, HD95), for each member alone and for the ensemble; the validation patients are the ones to decide by, the
test patients the ones to report. The members' masks from ``pipelines predict`` on the last subset are also compared
with each other and with the reference (:func:`member_agreement`): how much of the error they share. One JSON line
per (model, subset) and one for the agreement; ``<output>/results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser

from pipelines import api
from pipelines.data.datalist import split_items
from pipelines.evaluation.slice_errors import pooled_dice
from pipelines.io.atomic import atomic_torch_save, atomic_write_json, atomic_write_text
from pipelines.io.console import tolerant_streams
from pipelines.networks.ensemble import ensemble_weights

logger = logging.getLogger("benchmarks.segmentation_ensemble")


def ensemble_network_def(bundle: str, members: int) -> dict[str, Any]:
    """The ``network_def`` override of an ensemble of ``members`` copies of the bundle's own ``network_def``."""
    bundle_dir = api.resolve_bundle(bundle)
    parser = ConfigParser()
    parser.read_config(api.config_files(bundle_dir, ["train.json"]))
    member = parser.get("network_def")
    if member is None:
        raise SystemExit(f"{bundle_dir}: its train.json has no network_def to ensemble")
    return {"_target_": "pipelines.networks.ProbabilityEnsemble", "members": [member] * members}


def score(bundle: str, data: Path, checkpoint: Path, output: Path, split: str, subset: str,
          overrides: dict[str, Any] | None, max_cases: int | None = None) -> dict[str, Any]:
    """The bundle's evaluation of ``checkpoint`` on ``subset``; reuses a finished ``metrics.json``."""
    done = output / "metrics" / "metrics.json"
    if not done.exists():
        api.evaluate(bundle, data, checkpoint, output, fold=split, subset=subset, max_cases=max_cases,
                     overrides=overrides)
    metrics = json.loads(done.read_text(encoding="utf-8"))
    summary = metrics["summary"]
    return {"dice_mean": summary["dice"]["mean"], "dice_std": summary["dice"]["std"],
            "hd95_mm_mean": summary["hd95_mm"]["mean"], "cases": summary["n_cases"],
            "per_case": {c["case_id"]: c["dice"] for c in metrics["cases"]}}


def member_agreement(bundle: str, data: Path, checkpoints: list[Path], output: Path, split: str, subset: str,
                     max_cases: int | None) -> dict[str, float]:
    """How alike the members' masks are: the per-patient Dice between every two members' ``pipelines predict``
    masks, averaged over patients and pairs, next to the members' mean Dice against the reference labels.

    Members that agree far better with each other than with the reference make the same errors, which no average of
    them can remove.
    """
    items = split_items(data / "datalist.json", split, subset, max_cases)
    folders = [output / subset / f"member_{m + 1}" / "predictions" for m in range(len(checkpoints))]
    for folder, checkpoint in zip(folders, checkpoints):
        if all((folder / f"{item['case_id']}_seg.nii.gz").is_file() for item in items):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            for item in items:
                os.symlink(item["image"], Path(tmp) / Path(item["image"]).name)
            report = api.predict(bundle, tmp, folder, checkpoint=checkpoint, overwrite=True)
        if not report.ok:
            raise SystemExit(f"{checkpoint}: prediction failed for {sorted(report.failed)}")

    def mask(path: str | Path) -> np.ndarray:
        return np.asarray(nib.load(path).dataobj) > 0

    between, to_reference = [], []
    for item in items:
        masks = [mask(folder / f"{item['case_id']}_seg.nii.gz") for folder in folders]
        reference = mask(item["label"])
        between += [pooled_dice(a, b) for a, b in itertools.combinations(masks, 2)]
        to_reference += [pooled_dice(m, reference) for m in masks]
    return {"subset": subset, "patients": len(items), "dice_between_members": float(np.mean(between)),
            "dice_members_to_reference": float(np.mean(to_reference))}


def markdown(rows: list[dict[str, Any]], subsets: list[str], hardware: str, agreement: dict[str, float]) -> str:
    lines = ["| model | " + " | ".join(f"{s} Dice (mean ± std) | {s} HD95 mm" for s in subsets) + " |",
             "|---|" + "---|---|" * len(subsets)]
    for name in dict.fromkeys(r["model"] for r in rows):
        cells = []
        for s in subsets:
            r = next(r for r in rows if r["model"] == name and r["subset"] == s)
            cells += [f"{r['dice_mean']:.3f} ± {r['dice_std']:.3f}", f"{r['hd95_mm_mean']:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(f"\nOn the {agreement['subset']} patients the members' masks agree with each other at a Dice of "
                 f"{agreement['dice_between_members']:.3f} (per patient, mean over pairs) and with the reference at "
                 f"{agreement['dice_members_to_reference']:.3f}.")
    return "\n".join(lines) + f"\n\nHardware: {hardware}.\n"


def main() -> None:
    tolerant_streams()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared Sunnybrook folder")
    parser.add_argument("--bundle", default="lv_segmentation_unet")
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True, help="the members' weights (model.pt)")
    parser.add_argument("--split", default="seed", help="the split the members were trained on")
    parser.add_argument("--subsets", default="validation,test")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--max-cases", type=int, help="score only the first N patients of each subset (smoke runs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if len(args.checkpoints) < 2:
        raise SystemExit("--checkpoints: an ensemble needs at least two members")
    subsets = args.subsets.split(",")
    args.output.mkdir(parents=True, exist_ok=True)
    weights = args.output / "ensemble.pt"
    members = [str(p.resolve()) for p in args.checkpoints]
    # the folder's scores are reused by a later call, so it is tied to what they were computed for
    definition = {"bundle": args.bundle, "members": members, "split": args.split, "max_cases": args.max_cases}
    stamp = args.output / "members.json"
    if stamp.exists() and json.loads(stamp.read_text(encoding="utf-8")) != definition:
        raise SystemExit(f"{args.output}: made for other members or options; delete it or use another --output")
    atomic_write_json(stamp, definition)
    if not weights.exists():
        atomic_torch_save({"model": ensemble_weights(args.checkpoints)}, weights)
    network_def = ensemble_network_def(args.bundle, len(members))
    models = [(f"member {m + 1} ({p.parent.parent.name if p.name == 'model.pt' else p.name})", p, None)
              for m, p in enumerate(args.checkpoints)]
    models.append((f"ensemble of {len(members)}", weights, {"network_def": network_def}))
    rows = []
    for subset in subsets:
        for m, (name, checkpoint, overrides) in enumerate(models):
            folder = args.output / subset / ("ensemble" if overrides else f"member_{m + 1}")
            row = {"model": name, "subset": subset,
                   **score(args.bundle, args.data, checkpoint, folder, args.split, subset, overrides, args.max_cases)}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "per_case"}), flush=True)
    agreement = member_agreement(args.bundle, args.data, args.checkpoints, args.output, args.split, subsets[-1],
                                 args.max_cases)
    print(json.dumps(agreement), flush=True)
    hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    result = {"bundle": args.bundle, "split": args.split, "members": members, "rows": rows, "hardware": hardware,
              "network_def_override": network_def, "agreement": agreement}
    atomic_write_json(args.output / "results.json", result)
    atomic_write_text(args.output / "results.md", markdown(rows, subsets, hardware, agreement))
    print(json.dumps({"network_def_override": network_def}), flush=True)


if __name__ == "__main__":
    main()
