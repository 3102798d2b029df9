"""Train and evaluate a segmentation bundle on the seed split and on the 5 patient-level folds; print the figures.

    python benchmarks/segmentation.py --data work_data/sunnybrook --output runs/bench            # full schedule
    python benchmarks/segmentation.py --data work_data/sunnybrook --output runs/bench --quick    # minutes
    python benchmarks/segmentation.py ... --jobs 2    # two splits at a time, one thread each (faster on 2 cores)

Each split prints one JSON line (mean per-patient myocardium Dice and HD95 on its test patients, training
throughput and wall time); the last line is the summary: the seed split's test Dice and the cross-validated
mean ± std over the folds (each fold's test patients are scored by the model that never saw them). Everything is
also written to ``<output>/results.json`` and a Markdown table ``<output>/results.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from pipelines import api
from pipelines.io.atomic import atomic_write_json, atomic_write_text


def run_split(bundle: str, data: Path, output: Path, split: str, epochs: int | None, max_cases: int | None) -> dict:
    run_dir = output / f"{bundle}_{split}"
    resume = (run_dir / "models" / "checkpoint.pt").exists()
    earlier = run_dir / "train_summary.json"
    earlier_summary = json.loads(earlier.read_text(encoding="utf-8")) if resume and earlier.exists() else {}
    train = api.train(bundle, data, run_dir, epochs=epochs, fold=split, resume=resume, max_cases=max_cases)
    if earlier_summary and train["epochs"] == earlier_summary.get("epochs"):
        train = earlier_summary  # the run was complete already: keep the figures measured when it trained
    start = time.perf_counter()
    metrics = api.evaluate(bundle, data, run_dir / "models" / "model.pt", run_dir / "evaluation", fold=split,
                           max_cases=max_cases)
    eval_time = time.perf_counter() - start
    summary = metrics["summary"]
    return {
        "bundle": bundle,
        "split": split,
        "test_cases": summary["n_cases"],
        "dice_mean": summary["dice"]["mean"],
        "dice_std": summary["dice"]["std"],
        "hd95_mm_mean": summary["hd95_mm"]["mean"],
        "hd95_px_mean": summary["hd95_px"]["mean"],
        "dice_by_group": {g: v["dice"]["mean"] for g, v in summary["by_group"].items()},
        "best_val_dice": train["best_val_dice"],
        "best_epoch": train["best_epoch"],
        "epochs": train["epochs"],
        "train_images_per_s": train["images_per_s"],
        "train_time_s": train["train_time_s"],
        "train_wall_s": train["wall_time_s"],
        "eval_wall_s": eval_time,
    }


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)


def markdown(rows: list[dict], summary: dict) -> str:
    lines = [
        "| split | test patients | Dice (mean ± std) | HD95 mm | HD95 px | epochs | train images/s | train wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['split']} | {r['test_cases']} | {r['dice_mean']:.3f} ± {r['dice_std']:.3f} | "
            f"{r['hd95_mm_mean']:.2f} | {r['hd95_px_mean']:.2f} | {r['epochs']} | {r['train_images_per_s']:.0f} | "
            f"{r['train_wall_s']:.0f} |"
        )
    if "cv_dice_mean" in summary:
        lines.append(
            f"\n5-fold cross-validation, mean ± std over folds of the per-fold mean patient Dice: "
            f"**{summary['cv_dice_mean']:.3f} ± {summary['cv_dice_std']:.3f}**; over all {summary['cv_patients']} "
            f"patients: {summary['cv_patient_dice_mean']:.3f} ± {summary['cv_patient_dice_std']:.3f}."
        )
    lines.append(f"\nHardware: {summary['hardware']}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="lv_segmentation_unet")
    parser.add_argument("--data", type=Path, required=True, help="prepared Sunnybrook folder")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--splits", default="seed,0,1,2,3,4")
    parser.add_argument("--epochs", type=int, help="override the bundle's schedule")
    parser.add_argument("--quick", action="store_true", help="2 epochs on 4 patients per subset")
    parser.add_argument("--jobs", type=int, default=1, help="splits trained at once, sharing the CPU threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    epochs, max_cases = (2, 4) if args.quick else (args.epochs, None)
    splits = args.splits.split(",")
    threads = max(1, torch.get_num_threads() // args.jobs)
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=_init_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(run_split, args.bundle, args.data, args.output, s, epochs, max_cases) for s in splits]
        for future in futures:
            row = future.result()
            rows.append(row)
            print(json.dumps(row), flush=True)
    hardware = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{args.jobs} training job(s) at a time with {threads} thread(s) each"
    )
    summary: dict = {"bundle": args.bundle, "hardware": hardware, "quick": args.quick}
    seed = [r for r in rows if r["split"] == "seed"]
    if seed:
        summary["seed_test_dice"] = seed[0]["dice_mean"]
    folds = [r for r in rows if r["split"] != "seed"]
    if len(folds) > 1:
        means = [r["dice_mean"] for r in folds]
        summary["cv_dice_mean"] = statistics.mean(means)
        summary["cv_dice_std"] = statistics.stdev(means)
        per_patient = []
        for r in folds:
            metrics = json.loads((args.output / f"{args.bundle}_{r['split']}" / "evaluation" / "metrics" /
                                  "metrics.json").read_text(encoding="utf-8"))
            per_patient += [c["dice"] for c in metrics["cases"]]
        summary["cv_patients"] = len(per_patient)
        summary["cv_patient_dice_mean"] = statistics.mean(per_patient)
        summary["cv_patient_dice_std"] = statistics.stdev(per_patient)
    print(json.dumps({"summary": summary}), flush=True)
    atomic_write_json(args.output / "results.json", {"rows": rows, "summary": summary})
    atomic_write_text(args.output / "results.md", markdown(rows, summary))


if __name__ == "__main__":
    main()
