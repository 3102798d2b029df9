"""Cardiac function from the full-field segmentation against the experts', on held-out ACDC patients.

    python benchmarks/cardiac_function.py --data work_data/acdc --output runs/cardiac_function

For the ``--subset`` patients of ``--split`` (default: the test patients of fold 0, never used for training or
checkpoint selection) it runs ``pipelines predict cardiac_sax_segmentation --uncertainty`` on both frames (ED, ES),
then compares, per patient:

* the segmentation: Dice and HD95 per class (RV cavity, LV myocardium, LV cavity) on the input's grid;
* the measures of the predicted and of the expert label maps, computed by the same code
  (:func:`pipelines.measure.measure_frames`): LVEF, LVEDV, LVESV, LV mass, RVEF, RVEDV: mean absolute error, bias
  and 95% limits of agreement (Bland-Altman), Pearson r, overall and per diagnosis group. The predicted labels are
  measured as ``pipelines predict --measure`` measures them, with the basal end-systolic RV slice rule
  (:mod:`pipelines.measure.basal`, ``--trim-basal-rv``, 0 turns it off), and also without it
  (``agreement_untrimmed``); the expert labels always as they are;
* the model's per-patient uncertainty (mean normalised entropy of the flip-averaged softmax over the voxels it
  labels as heart, averaged over ED and ES) as a detector of the worst cases: AUROC for "LV myocardium Dice below
  0.80" and for "LVEF error above 5 points" per patient, and per frame for "the worst class's Dice below 0.85",
  with the numbers of cases behind each.

Writes ``per_patient.csv``, ``agreement.json`` and ``bland_altman.png`` under ``--output`` (predictions in
``predictions/``, reused when present), and prints the figures as JSON lines and a markdown table. Several
``--checkpoint`` files are scored as one ensemble (:class:`pipelines.networks.ProbabilityEnsemble`, the mean of the
members' softmax; weights written to ``<output>/ensemble.pt``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import api
from pipelines.data.datalist import split_items
from pipelines.evaluation.agreement import bland_altman, class_scores, uncertainty_auroc
from pipelines.io.atomic import atomic_write_json, atomic_write_text
from pipelines.io.console import tolerant_streams
from pipelines.io.atomic import atomic_torch_save
from pipelines.measure import load_labels, measure_frames
from pipelines.measure.basal import DEFAULT_MIN_RATIO
from pipelines.measure.uncertainty import frame_uncertainty
from pipelines.networks.ensemble import ensemble_weights

logger = logging.getLogger("benchmarks.cardiac_function")

BUNDLE = "cardiac_sax_segmentation"
CLASSES = {1: "rv", 2: "myo", 3: "lv"}
#: measure -> (label in tables, unit)
MEASURES = {
    "lv_ef_pct": ("LVEF", "%"),
    "lv_edv_ml": ("LVEDV", "mL"),
    "lv_esv_ml": ("LVESV", "mL"),
    "lv_mass_g": ("LV mass", "g"),
    "rv_ef_pct": ("RVEF", "%"),
    "rv_edv_ml": ("RVEDV", "mL"),
}
BAD_MYO_DICE = 0.80
BAD_LVEF_ERROR = 5.0
BAD_FRAME_DICE = 0.85  # per frame: the worst of the three classes' Dice


def predict_frames(items: list[dict[str, Any]], folder: Path, checkpoint: str | None, overrides: dict) -> None:
    """``pipelines predict --uncertainty`` on every item's image, as ``<case_id>_seg`` / ``_uncertainty``."""
    todo = [i for i in items if not (folder / f"{i['case_id']}_uncertainty.nii.gz").is_file()]
    if not todo:
        return
    with tempfile.TemporaryDirectory() as links:
        for item in todo:
            (Path(links) / f"{item['case_id']}.nii.gz").symlink_to(item["image"])
        report = api.predict(BUNDLE, links, folder, checkpoint=checkpoint, uncertainty=True, overwrite=True,
                             overrides=overrides)
    if not report.ok:
        raise SystemExit(f"prediction failed: {report.failed}")


def score_patient(frames: dict[str, dict[str, Any]], folder: Path, trim: float) -> dict[str, Any]:
    """Segmentation scores, measures (predicted with the basal ES RV rule at ``trim`` and without it, expert) and
    uncertainty of one patient's ED / ES frames."""
    row: dict[str, Any] = {}
    maps = {}
    for frame, item in frames.items():
        pred = load_labels(folder / f"{item['case_id']}_seg.nii.gz", 3)
        ref = load_labels(item["label"], 3)
        maps[frame] = (pred, ref)
        for key, value in class_scores(pred.labels, ref.labels, ref.spacing_mm, CLASSES).items():
            row[f"{frame}_{key}"] = value
        row[f"{frame}_uncertainty"] = frame_uncertainty(
            folder / f"{item['case_id']}_seg.nii.gz", folder / f"{item['case_id']}_uncertainty.nii.gz"
        )
    for source, index, ratio in (("pred", 0, trim or None), ("pred_untrimmed", 0, None), ("ref", 1, None)):
        ed, es = maps["ed"][index], maps["es"][index]
        result = measure_frames(ed.labels, es.labels, ed.spacing_mm, ed.affine, basal_rv_min_ratio=ratio)
        for key in MEASURES:
            row[f"{source}_{key}"] = result["measures"][key]
        if source == "pred":
            row["rv_basal_trimmed_ml"] = result["measures"]["rv_basal_trimmed_ml"]
        if source != "pred_untrimmed":
            row[f"{source}_qc_flags"] = ";".join(f["code"] for f in result["qc_flags"])
    row["es_rv_ml_off_expert_slices"] = rv_off_expert_slices(*maps["es"])
    row["uncertainty"] = (row["ed_uncertainty"] + row["es_uncertainty"]) / 2
    row["myo_dice"] = (row["ed_dice_myo"] + row["es_dice_myo"]) / 2
    row["lvef_abs_error"] = abs(row["pred_lv_ef_pct"] - row["ref_lv_ef_pct"])
    return row


def rv_off_expert_slices(pred: Any, ref: Any) -> float:
    """Predicted RV cavity volume (mL) on the slices where the experts drew no RV cavity.

    At end-systole the tricuspid plane moves towards the apex, so the most basal slice often holds the right atrium,
    which ACDC's experts leave unlabelled: RV predicted there is the error this isolates (sum over slices ``z``
    with no expert RV voxel of the predicted RV voxel count, times the voxel volume).
    """
    empty = ~(ref.labels == 1).any(axis=(0, 1))
    return float((pred.labels[..., empty] == 1).sum() * ref.voxel_volume_ml)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Agreement overall and per group, mean Dice / HD95 per class and frame, and the uncertainty's AUROCs."""
    def agreement(subset: list[dict[str, Any]], source: str = "pred") -> dict[str, Any]:
        return {key: bland_altman([r[f"{source}_{key}"] for r in subset], [r[f"ref_{key}"] for r in subset])
                for key in MEASURES}

    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["group"]].append(row)
    segmentation = {
        f"{frame}_{metric}_{name}": float(np.nanmean([r[f"{frame}_{metric}_{name}"] for r in rows]))
        for frame in ("ed", "es") for metric in ("dice", "hd95_mm") for name in CLASSES.values()
    }
    flagged = [bool(r["pred_qc_flags"]) for r in rows]
    return {
        "patients": len(rows),
        "segmentation": segmentation,
        "agreement": agreement(rows),
        "agreement_by_group": {g: agreement(sub) for g, sub in sorted(groups.items())},
        "agreement_untrimmed": agreement(rows, "pred_untrimmed"),
        "basal_rv_trimmed": {
            "patients": int(sum(bool(r["rv_basal_trimmed_ml"]) for r in rows)),
            "mean_ml": float(np.mean([r["rv_basal_trimmed_ml"] or 0.0 for r in rows])),
        },
        "uncertainty_auroc": {
            f"myo_dice_below_{BAD_MYO_DICE:.2f}": uncertainty_auroc(
                [r["uncertainty"] for r in rows], [r["myo_dice"] < BAD_MYO_DICE for r in rows]),
            f"lvef_error_above_{BAD_LVEF_ERROR:g}": uncertainty_auroc(
                [r["uncertainty"] for r in rows], [r["lvef_abs_error"] > BAD_LVEF_ERROR for r in rows]),
            f"frame_worst_class_dice_below_{BAD_FRAME_DICE:.2f}": uncertainty_auroc(
                [r[f"{f}_uncertainty"] for r in rows for f in ("ed", "es")],
                [min(r[f"{f}_dice_{c}"] for c in CLASSES.values()) < BAD_FRAME_DICE for r in rows for f in ("ed", "es")]),
        },
        "qc_flagged_patients": int(sum(flagged)),
        "es_rv_off_expert_slices": {
            "mean_ml": float(np.mean([r["es_rv_ml_off_expert_slices"] for r in rows])),
            "patients_above_5_ml": int(sum(r["es_rv_ml_off_expert_slices"] > 5 for r in rows)),
        },
    }


def bland_altman_figure(rows: list[dict[str, Any]], summary: dict[str, Any], path: Path) -> None:
    """One Bland-Altman panel per measure: difference against mean, bias and limits of agreement drawn."""
    from matplotlib.figure import Figure

    from pipelines.visualize import save_figure

    fig = Figure(figsize=(13, 7.5))
    axes = fig.subplots(2, 3)
    for ax, (key, (label, unit)) in zip(axes.ravel(), MEASURES.items()):
        pred = np.array([r[f"pred_{key}"] for r in rows], float)
        ref = np.array([r[f"ref_{key}"] for r in rows], float)
        stats = summary["agreement"][key]
        for group in sorted({r["group"] for r in rows}):
            mask = np.array([r["group"] == group for r in rows])
            ax.scatter(((pred + ref) / 2)[mask], (pred - ref)[mask], s=22, label=group)
        for value, style in ((stats["bias"], "-"), (stats["loa_low"], "--"), (stats["loa_high"], "--")):
            if math.isfinite(value):
                ax.axhline(value, color="k", linestyle=style, linewidth=1)
        ax.set_title(f"{label}: bias {stats['bias']:+.1f}, LoA [{stats['loa_low']:.1f}, {stats['loa_high']:.1f}] {unit}",
                     fontsize=9)
        ax.set_xlabel(f"mean of predicted and expert ({unit})", fontsize=8)
        ax.set_ylabel(f"predicted - expert ({unit})", fontsize=8)
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle(f"Bland-Altman, {len(rows)} held-out ACDC patients (cardiac_sax_segmentation vs expert labels)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def markdown(summary: dict[str, Any]) -> str:
    lines = ["| measure | MAE | bias | 95% limits of agreement | r |", "|---|---|---|---|---|"]
    for key, (label, unit) in MEASURES.items():
        s = summary["agreement"][key]
        lines.append(f"| {label} ({unit}) | {s['mae']:.1f} | {s['bias']:+.1f} | {s['loa_low']:.1f} to "
                     f"{s['loa_high']:.1f} | {s['r']:.3f} |")
    lines += ["", "| group | patients | " + " | ".join(f"{MEASURES[k][0]} MAE" for k in MEASURES) + " |",
              "|---|---|" + "---|" * len(MEASURES)]
    for group, stats in summary["agreement_by_group"].items():
        n = stats["lv_ef_pct"]["n"]
        lines.append(f"| {group} | {n} | " + " | ".join(f"{stats[k]['mae']:.1f}" for k in MEASURES) + " |")
    untrimmed, trimmed = summary["agreement_untrimmed"], summary["basal_rv_trimmed"]
    lines += ["", f"Basal ES RV slice rule (ratio {summary['trim_basal_rv']:g}): applied to {trimmed['patients']} of "
              f"{summary['patients']} patients; without it RVEF MAE {untrimmed['rv_ef_pct']['mae']:.1f} (bias "
              f"{untrimmed['rv_ef_pct']['bias']:+.1f}), mean removed {trimmed['mean_ml']:.1f} mL per patient."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    tolerant_streams()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="prepared ACDC folder (pipelines data acdc)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--split", default="0", help="fold whose patients are scored (default 0)")
    parser.add_argument("--subset", default="test", choices=["test", "validation", "train"])
    parser.add_argument("--checkpoint", nargs="+", help="weights (default: the bundle's shipped models/model.pt); "
                        "several: their ensemble")
    parser.add_argument("--trim-basal-rv", type=float, default=DEFAULT_MIN_RATIO, metavar="RATIO",
                        help=f"basal ES RV slice rule for the predicted labels (default {DEFAULT_MIN_RATIO}; 0 off)")
    parser.add_argument("--max-patients", type=int, help="score only the first N patients (smoke runs)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="bundle config override for predict (e.g. validate#tta_inferer#flip_axes=[])")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pipelines.settings import parse_setting

    overrides = dict(parse_setting(text) for text in args.settings)
    output = Path(args.output)
    items = split_items(args.data, args.split, args.subset)
    by_patient: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for item in items:
        by_patient[item["patient"]][item["frame"]] = item
    patients = sorted(by_patient)[: args.max_patients]
    folder = output / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint[0] if args.checkpoint else None
    if args.checkpoint and len(args.checkpoint) > 1:
        # the bundle's configs build the ensemble these weights hold (pipelines.networks.ensemble.fit_to_weights)
        checkpoint = str(atomic_torch_save({"model": ensemble_weights(args.checkpoint)}, output / "ensemble.pt"))
    predict_frames([i for p in patients for i in by_patient[p].values()], folder, checkpoint, overrides)
    rows = []
    for patient in patients:
        row = {"patient": patient, "group": by_patient[patient]["ed"]["category_name"]}
        row.update(score_patient(by_patient[patient], folder, args.trim_basal_rv))
        rows.append(row)
    summary = {"split": args.split, "subset": args.subset, "checkpoint": args.checkpoint or "shipped",
               "trim_basal_rv": args.trim_basal_rv, **summarise(rows)}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(output / "per_patient.csv", buffer.getvalue())
    atomic_write_json(output / "agreement.json", summary)
    bland_altman_figure(rows, summary, output / "bland_altman.png")
    for key, stats in summary["agreement"].items():
        print(json.dumps({"measure": key, **stats}))
    print(json.dumps({"segmentation": summary["segmentation"]}))
    print(json.dumps({"uncertainty_auroc": summary["uncertainty_auroc"]}))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
