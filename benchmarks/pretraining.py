"""Does initialising the segmentation U-Net's encoder from the denoising autoencoder help with few labelled patients?

    python benchmarks/pretraining.py --data work_data/sunnybrook --output runs/bench_pretraining --jobs 2
    python benchmarks/pretraining.py --data work_data/sunnybrook --output runs/bench_pretraining_quick --quick

For each number of labelled patients ``n`` (3 and 6) and each seed, ``n`` patients are drawn from the split's
training patients (stratified by diagnostic group, :func:`pipelines.data.splits.stratified_subset`, seeded), and
``lv_segmentation_unet`` is trained on them twice with the same seed, schedule and validation patients (the split's
5, for checkpoint selection): from scratch, and with its encoder (every down layer and the bottom of the MONAI UNet)
initialised from ``mr_denoising_ae``'s weights (:func:`pipelines.networks.transfer.load_encoder`), which were
learnt on the split's training patients' images without their labels. The
denoiser never saw the test patients. Both runs get the same number of optimisation steps, ``--iterations``
(default 320, about 20 % of the bundle's full-data schedule): ``epochs = ceil(iterations / batches per epoch)``.
The best validation checkpoint of each run is scored on the split's test patients with ``pipelines evaluate``
(per-patient 3D Dice, 4-flip test-time averaging).

Prints one JSON line per run and a summary line (mean ± std over seeds of the test Dice, and the mean paired
difference pretrained - scratch); writes ``<output>/results.json`` and ``<output>/results.md``. Finished runs are
reused; ``--finished-only`` summarises them without training the missing ones. ``--quick``: 3 patients, one
seed, 4 iterations (a smoke run of the script only).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from pipelines import api
from pipelines.data.datalist import split_items
from pipelines.data.splits import stratified_subset
from pipelines.io.atomic import atomic_write_json, atomic_write_text
from pipelines.io.console import tolerant_streams

BUNDLE = "lv_segmentation_unet"
DEFAULT_ENCODER = api.BUNDLES_DIR / "mr_denoising_ae" / "models" / "model.pt"
ARMS = ("scratch", "denoising AE encoder")
logger = logging.getLogger("benchmarks.pretraining")


def labelled_patients(data: Path, split: str, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` of the split's training patients, one diagnostic group after another, seeded."""
    items = split_items(data / "datalist.json", split, "train")
    chosen = set(stratified_subset({i["case_id"]: int(i["category"]) for i in items}, n, seed=seed))
    return [i for i in items if i["case_id"] in chosen]


def run_folder(output: Path, n: int, seed: int, arm: str) -> Path:
    """The run folder of one (patients, seed, arm)."""
    return output / f"n{n}_seed{seed}_{'scratch' if arm == ARMS[0] else 'pretrained'}"


def run_one(data: Path, output: Path, split: str, n: int, seed: int, arm: str, iterations: int, encoder: Path,
            batch_size: int) -> dict[str, Any]:
    """Train one arm on ``n`` patients with ``seed`` (or reuse the finished run), score the test patients."""
    run_dir = run_folder(output, n, seed, arm)
    done = run_dir / "row.json"
    if done.exists():
        return json.loads(done.read_text(encoding="utf-8"))
    items = labelled_patients(data, split, n, seed)
    batches = math.ceil(sum(int(i["num_slices"]) for i in items) / batch_size)
    epochs = math.ceil(iterations / batches)
    overrides: dict[str, Any] = {
        "seed": seed, "train#items": items, "batch_size": batch_size, "val_interval": max(1, epochs // 10),
    }
    if arm != ARMS[0]:
        overrides["network"] = {"_target_": "pipelines.networks.transfer.load_encoder", "network": "@network_def",
                                "checkpoint": str(encoder.resolve()), "device": "@device"}
    if (run_dir / "train_summary.json").exists():
        train = json.loads((run_dir / "train_summary.json").read_text(encoding="utf-8"))
    else:
        train = api.train(BUNDLE, data, run_dir, epochs=epochs, fold=split, overrides=overrides)
    metrics = api.evaluate(BUNDLE, data, run_dir / "models" / "model.pt", run_dir / "evaluation", fold=split)
    row = {
        "labelled_patients": n, "seed": seed, "arm": arm, "train_cases": [i["case_id"] for i in items],
        "epochs": epochs, "iterations": epochs * batches, "best_val_dice": train["best_val_dice"],
        "best_epoch": train["best_epoch"], "test_dice_mean": metrics["summary"]["dice"]["mean"],
        "test_dice_std": metrics["summary"]["dice"]["std"], "test_cases": metrics["summary"]["n_cases"],
        "train_wall_s": train["wall_time_s"],
    }
    atomic_write_json(done, row)
    return row


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (n, arm): mean ± std over seeds of the test Dice; per n, the mean paired difference over seeds."""
    out = []
    for n in sorted({r["labelled_patients"] for r in rows}):
        by_arm = {arm: {r["seed"]: r["test_dice_mean"] for r in rows if r["labelled_patients"] == n and r["arm"] == arm}
                  for arm in ARMS}
        for arm, dice in by_arm.items():
            if not dice:
                continue
            values = list(dice.values())
            out.append({"labelled_patients": n, "arm": arm, "seeds": sorted(dice), "test_dice_mean":
                        statistics.mean(values), "test_dice_std": statistics.stdev(values) if len(values) > 1 else 0.0})
        paired = [by_arm[ARMS[1]][s] - by_arm[ARMS[0]][s] for s in by_arm[ARMS[0]] if s in by_arm[ARMS[1]]]
        if paired and out[-1]["arm"] == ARMS[1]:
            out[-1]["paired_difference_mean"] = statistics.mean(paired)
            out[-1]["paired_differences"] = paired
    return out


def markdown(summary: list[dict[str, Any]], hardware: str, iterations: int) -> str:
    lines = ["| labelled patients | encoder initialisation | test Dice, mean ± std over seeds | seeds "
             "| pretrained - scratch (paired mean) |", "|---|---|---|---|---|"]
    for s in summary:
        diff = f"{s['paired_difference_mean']:+.3f}" if "paired_difference_mean" in s else ""
        lines.append(f"| {s['labelled_patients']} | {s['arm']} | {s['test_dice_mean']:.3f} ± {s['test_dice_std']:.3f} "
                     f"| {len(s['seeds'])} | {diff} |")
    lines.append(f"\n{iterations} training iterations per run; Dice on the split's test patients. Hardware: {hardware}.")
    return "\n".join(lines) + "\n"


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)


def main() -> None:
    tolerant_streams()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared Sunnybrook folder")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--encoder", type=Path, default=DEFAULT_ENCODER, help="denoising AE weights (model.pt)")
    parser.add_argument("--patients", default="3,6", help="comma-separated numbers of labelled patients")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--iterations", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--split", default="seed")
    parser.add_argument("--quick", action="store_true", help="3 patients, seed 0, 4 iterations")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, sharing the CPU threads")
    parser.add_argument("--finished-only", action="store_true", help="summarise the finished runs, train nothing")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of: {', '.join(ARMS)}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    patients = [3] if args.quick else [int(n) for n in args.patients.split(",")]
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    iterations = 4 if args.quick else args.iterations
    threads = max(1, torch.get_num_threads() // args.jobs)
    arms = [arm for arm in ARMS if arm in args.arms.split(",")]
    jobs = [(n, s, arm) for n in patients for s in seeds for arm in arms]
    if args.finished_only:
        jobs = [(n, s, arm) for n, s, arm in jobs if (run_folder(args.output, n, s, arm) / "row.json").exists()]
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=_init_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(run_one, args.data, args.output, args.split, n, s, arm, iterations, args.encoder,
                               args.batch_size) for n, s, arm in jobs]
        for future in futures:
            rows.append(future.result())
            print(json.dumps(rows[-1]), flush=True)
    hardware = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
                f"{args.jobs} run(s) at a time with {threads} thread(s) each")
    summary = summarise(rows)
    print(json.dumps({"summary": summary, "hardware": hardware, "quick": args.quick}), flush=True)
    atomic_write_json(args.output / "results.json", {"rows": rows, "summary": summary, "hardware": hardware,
                                                     "iterations": iterations, "quick": args.quick})
    atomic_write_text(args.output / "results.md", markdown(summary, hardware, iterations))


if __name__ == "__main__":
    main()
