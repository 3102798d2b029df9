"""Train and evaluate segmentation variants (U-Net, SegNet, the course baseline, recipe ablations) on the seed split
and on the 5 patient-level folds; print and write the comparison table.

    python benchmarks/segmentation.py --data work_data/sunnybrook --output runs/bench --jobs 2            # full
    python benchmarks/segmentation.py --data work_data/sunnybrook --output runs/bench_quick --quick       # minutes
    python benchmarks/segmentation.py ... --variants benchmarks/segmentation_ablations.json --rows "U-Net, no TTA"

A *variant* is a bundle plus config overrides (``benchmarks/segmentation_variants.json`` by default: the three
networks; ``benchmarks/segmentation_ablations.json``: recipe ablations). Every variant is trained on each split's
training patients, the best validation epoch is kept, and the split's held-out test patients are scored with the
bundle's evaluation (per-patient 3D Dice and HD95) and segmented once more with ``pipelines predict`` to time
inference per patient. Each (variant, split) prints one JSON line; the last line is the summary. ``<output>`` gets
``results.json`` and the Markdown table ``results.md``.

Finished runs are reused (a second call only re-reads them); a run folder made for another variant definition is
refused rather than silently mixed in.

MLflow (``--tracking-uri``, default ``MLFLOW_TRACKING_URI``, else ``<output>/mlruns.db``): each variant gets a
parent run ``<variant> cross-validation`` in its bundle's experiment, holding the summary metrics (``cv_dice_mean``,
``seed_dice``...); the training and evaluation runs of its splits are its children (``mlflow.parentRunId``). ``--quick`` (2 epochs, 4 patients per subset) is deterministic: two calls
with the same arguments print the same Dice.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import statistics
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from pipelines import api
from pipelines.io.console import tolerant_streams
from pipelines.data.datalist import split_items
from pipelines.io.atomic import atomic_write_json, atomic_write_text
from pipelines.tracking import default_tracking_uri

HERE = Path(__file__).resolve().parent
DEFAULT_VARIANTS = HERE / "segmentation_variants.json"
logger = logging.getLogger("benchmarks.segmentation")


def slug(name: str) -> str:
    """A folder name for a variant name (``"U-Net, no TTA"`` -> ``u-net_no_tta``)."""
    return re.sub(r"[^a-z0-9-]+", "_", name.lower()).strip("_")


def parse_rows(text: str, known: list[str]) -> list[str]:
    """Split ``--rows`` at its commas into variant names, where a name may hold commas itself.

    At each position the longest run of comma-separated pieces that is a ``known`` name is taken
    (``"U-Net, no TTA,SegNet"`` -> ``["U-Net, no TTA", "SegNet"]``); a piece that starts no known name is kept alone
    so that :func:`load_variants` names it as unknown.
    """
    pieces, names, start = text.split(","), [], 0
    while start < len(pieces):
        end = next((e for e in range(len(pieces), start, -1) if ",".join(pieces[start:e]).strip() in known), start + 1)
        names.append(",".join(pieces[start:end]).strip())
        start = end
    return names


def load_variants(path: Path, names: list[str] | str | None = None) -> list[dict[str, Any]]:
    """Read the variant list (``[{"name", "bundle", "overrides"?}]``), optionally keeping only ``names`` (a list,
    or ``--rows`` text for :func:`parse_rows`)."""
    variants = json.loads(Path(path).read_text(encoding="utf-8"))
    for v in variants:
        v.setdefault("overrides", {})
    if isinstance(names, str):
        names = parse_rows(names, [v["name"] for v in variants])
    if names:
        unknown = set(names) - {v["name"] for v in variants}
        if unknown:
            raise SystemExit(f"{path}: no variant named {', '.join(sorted(unknown))}")
        variants = [v for v in variants if v["name"] in names]
    return variants


def time_inference(variant: dict[str, Any], data: Path, checkpoint: Path, split: str, max_cases: int | None,
                   output: Path) -> float:
    """Seconds per patient for ``pipelines predict`` (load, resample, 4-flip TTA, invert, write) on the test cases."""
    items = split_items(data / "datalist.json", split, "test", max_cases)
    with tempfile.TemporaryDirectory() as tmp:
        for item in items:
            os.symlink(item["image"], Path(tmp) / Path(item["image"]).name)
        start = time.perf_counter()
        report = api.predict(variant["bundle"], tmp, output, checkpoint=checkpoint, overwrite=True,
                             overrides=variant["overrides"])
        elapsed = time.perf_counter() - start
    if not report.ok:
        raise RuntimeError(f"prediction failed for {sorted(report.failed)}")
    return elapsed / len(items)


def run_split(variant: dict[str, Any], data: Path, output: Path, split: str, epochs: int | None,
              max_cases: int | None, tracking_uri: str | None = None, parent_run_id: str | None = None
              ) -> dict[str, Any]:
    """Train (or resume, or reuse) one variant on one split, evaluate on its test patients; return the row. The
    training and evaluation are tracked at ``tracking_uri`` as children of ``parent_run_id``."""
    tracking = {"tracking_uri": tracking_uri, "tags": {"mlflow.parentRunId": parent_run_id} if parent_run_id else None}
    run_dir = output / f"{slug(variant['name'])}_{split}"
    definition = {"variant": variant, "epochs": epochs, "max_cases": max_cases}
    stamp, done = run_dir / "variant.json", run_dir / "row.json"
    if stamp.exists() and json.loads(stamp.read_text(encoding="utf-8")) != definition:
        raise SystemExit(f"{run_dir}: made for another variant definition; delete it or use another --output")
    if done.exists():
        return json.loads(done.read_text(encoding="utf-8"))
    atomic_write_json(stamp, definition)
    finished = run_dir / "train_summary.json"  # written by api.train once the whole schedule has run
    if finished.exists():
        train = json.loads(finished.read_text(encoding="utf-8"))
    else:
        resume = (run_dir / "models" / "checkpoint.pt").exists()
        train = api.train(variant["bundle"], data, run_dir, epochs=epochs, fold=split, resume=resume,
                          max_cases=max_cases, overrides=variant["overrides"], **tracking)
    checkpoint = run_dir / "models" / "model.pt"
    metrics = api.evaluate(variant["bundle"], data, checkpoint, run_dir / "evaluation", fold=split,
                           max_cases=max_cases, overrides=variant["overrides"], **tracking)
    inference_s = time_inference(variant, data, checkpoint, split, max_cases, run_dir / "predictions")
    network = torch.load(checkpoint, map_location="cpu", weights_only=True)
    summary = metrics["summary"]
    row = {
        "variant": variant["name"],
        "bundle": variant["bundle"],
        "split": split,
        "test_cases": summary["n_cases"],
        "dice_mean": summary["dice"]["mean"],
        "dice_std": summary["dice"]["std"],
        "hd95_mm_mean": summary["hd95_mm"]["mean"],
        "hd95_px_mean": summary["hd95_px"]["mean"],
        "cases": metrics["cases"],
        "parameters": sum(t.numel() for k, t in network.items() if not k.endswith(("running_mean", "running_var",
                                                                                    "num_batches_tracked"))),
        "best_val_dice": train["best_val_dice"],
        "best_epoch": train["best_epoch"],
        "epochs": train["epochs"],
        "train_images_per_s": train["images_per_s"],
        "train_time_s": train["train_time_s"],
        "train_wall_s": train["wall_time_s"],
        "inference_s_per_patient": inference_s,
    }
    atomic_write_json(done, row)
    return row


def start_parent_runs(tracking_uri: str, variants: list[dict[str, Any]], splits: list[str]) -> dict[str, str]:
    """One MLflow run ``<variant> cross-validation`` per variant, in its bundle's experiment; name -> run id."""
    import mlflow

    from pipelines.tracking import experiment_id
    from pipelines.tracking_tags import git_commit

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    parents = {}
    for variant in variants:
        tags = {"pipelines.command": "benchmark", "pipelines.bundle": variant["bundle"],
                "pipelines.git_commit": git_commit(), "pipelines.host": platform.node(),
                "pipelines.pid": str(os.getpid())}
        run = client.create_run(experiment_id(client, variant["bundle"]),
                                run_name=f"{variant['name']} cross-validation", tags=tags)
        client.log_param(run.info.run_id, "splits", ",".join(splits))
        client.log_param(run.info.run_id, "overrides", json.dumps(variant["overrides"], sort_keys=True)[:500])
        parents[variant["name"]] = run.info.run_id
    return parents


def finish_parent_runs(tracking_uri: str, parents: dict[str, str], summary: dict[str, dict[str, Any]] | None,
                       status: str = "FINISHED") -> None:
    """Log each variant's numeric summary (``cv_dice_by_group`` as ``cv_dice_<group>``) into its parent run and
    end the runs with ``status``."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    for name, run_id in parents.items():
        values = dict((summary or {}).get(name, {}))
        values.update({f"cv_dice_{re.sub(r'[^A-Za-z0-9]+', '_', g)}": v
                       for g, v in values.pop("cv_dice_by_group", {}).items()})
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                client.log_metric(run_id, key, float(value))
        client.set_terminated(run_id, status)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: seed-split test Dice; over the folds, the mean ± std of the per-fold mean patient Dice, the
    mean ± std over all cross-validated patients, Dice per diagnostic group, HD95, and the costs."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        seed = [r for r in mine if r["split"] == "seed"]
        folds = [r for r in mine if r["split"] != "seed"]
        s: dict[str, Any] = {"bundle": mine[0]["bundle"], "parameters": mine[0]["parameters"],
                             "epochs": mine[0]["epochs"],
                             "train_wall_s": statistics.mean(r["train_wall_s"] for r in mine),
                             "inference_s_per_patient": statistics.mean(r["inference_s_per_patient"] for r in mine)}
        if seed:
            s["seed_dice"], s["seed_dice_std"] = seed[0]["dice_mean"], seed[0]["dice_std"]
            s["seed_hd95_mm"] = seed[0]["hd95_mm_mean"]
        if folds:
            s["cv_splits"] = [r["split"] for r in folds]
            s["cv_dice_mean"], s["cv_dice_std"] = _mean_std([r["dice_mean"] for r in folds])
            cases = [c for r in folds for c in r["cases"]]
            s["cv_patients"] = len(cases)
            s["cv_patient_dice_mean"], s["cv_patient_dice_std"] = _mean_std([c["dice"] for c in cases])
            s["cv_hd95_mm"] = statistics.mean(c["hd95_mm"] for c in cases if c["hd95_mm"] is not None)
            groups: dict[str, list[float]] = defaultdict(list)
            for c in cases:
                groups[c["group"]].append(c["dice"])
            s["cv_dice_by_group"] = {g: statistics.mean(v) for g, v in sorted(groups.items())}
        out[name] = s
    return out


def _pm(s: dict[str, Any], key: str) -> str:
    return f"{s[key + '_mean']:.3f} ± {s[key + '_std']:.3f}" if key + "_mean" in s else "-"


def markdown(summary: dict[str, dict[str, Any]], hardware: str) -> str:
    """The comparison table (one row per variant) and the per-group table."""
    lines = [
        "| variant | seed-split test Dice | CV Dice, folds mean ± std | CV Dice, all patients | CV HD95 mm "
        "| parameters | train wall s / split | inference s / patient |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        seed = f"{s['seed_dice']:.3f} ± {s['seed_dice_std']:.3f}" if "seed_dice" in s else "-"
        hd = f"{s['cv_hd95_mm']:.2f}" if "cv_hd95_mm" in s else "-"
        lines.append(f"| {name} | {seed} | {_pm(s, 'cv_dice')} | {_pm(s, 'cv_patient_dice')} | {hd} | "
                     f"{s['parameters']:,} | {s['train_wall_s']:.0f} | {s['inference_s_per_patient']:.2f} |")
    grouped = {n: s for n, s in summary.items() if "cv_dice_by_group" in s}
    if grouped:
        groups = sorted({g for s in grouped.values() for g in s["cv_dice_by_group"]})
        lines += ["", "Cross-validated Dice per diagnostic group (mean over the group's patients):", "",
                  "| variant | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
        for name, s in grouped.items():
            by = s["cv_dice_by_group"]
            lines.append(f"| {name} | " + " | ".join(f"{by[g]:.3f}" if g in by else "-" for g in groups) + " |")
    lines.append(f"\nHardware: {hardware}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    tolerant_streams()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared Sunnybrook folder")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--variants", type=Path, default=DEFAULT_VARIANTS, help="JSON list of variants")
    parser.add_argument("--rows", help="comma-separated variant names to run (default: all in --variants); names "
                        "that hold commas themselves are matched whole")
    parser.add_argument("--splits", default="seed,0,1,2,3,4")
    parser.add_argument("--epochs", type=int, help="override every variant's schedule")
    parser.add_argument("--quick", action="store_true", help="2 epochs on 4 patients per subset")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, sharing the CPU threads")
    parser.add_argument("--tracking-uri", help="MLflow store of every run (default: $MLFLOW_TRACKING_URI, else "
                        "<output>/mlruns.db)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    variants = load_variants(args.variants, args.rows)
    epochs, max_cases = (2, 4) if args.quick else (args.epochs, None)
    threads = max(1, torch.get_num_threads() // args.jobs)
    splits = args.splits.split(",")
    args.output.mkdir(parents=True, exist_ok=True)
    tracking_uri = args.tracking_uri or default_tracking_uri(args.output)
    parents = start_parent_runs(tracking_uri, variants, splits)
    rows = []
    try:
        with ProcessPoolExecutor(max_workers=args.jobs, initializer=_init_worker, initargs=(threads,)) as pool:
            futures = [pool.submit(run_split, v, args.data, args.output, s, epochs, max_cases, tracking_uri,
                                   parents[v["name"]])
                       for v in variants for s in splits]
            for future in futures:
                row = future.result()
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "cases"}), flush=True)
    except BaseException as exc:
        finish_parent_runs(tracking_uri, parents, None, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    hardware = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
                f"{args.jobs} training job(s) at a time with {threads} thread(s) each")
    summary = summarise(rows)
    finish_parent_runs(tracking_uri, parents, summary)
    print(json.dumps({"summary": summary, "hardware": hardware, "quick": args.quick}), flush=True)
    atomic_write_json(args.output / "results.json", {"rows": rows, "summary": summary, "hardware": hardware,
                                                     "quick": args.quick})
    atomic_write_text(args.output / "results.md", markdown(summary, hardware))


if __name__ == "__main__":
    main()
