"""Does GAN-synthesised training data help myocardium segmentation when few patients are labelled? (issue #5)

    python benchmarks/gan_augmentation.py --data work_data/sunnybrook --output runs/gan_aug                 # full
    python benchmarks/gan_augmentation.py --data work_data/sunnybrook --output runs/gan_aug --jobs 2        # 2 rows at once
    python benchmarks/gan_augmentation.py --data work_data/sunnybrook --output runs/gan_aug_quick --quick   # minutes

For every fold (``--folds``, default 0,1,2) and every number n of labelled patients (``--sizes``, default
3,6,12,all), the row's labelled data is the first n training patients of the fold (the datalist's order, a seeded
shuffle stratified by diagnostic group). Nothing else of the fold's training patients is used, and the test
patients never are:

1. ``mr_synthesis_gan`` is trained on those n patients only (a GAN that saw more labelled patients than the
   segmentation model would leak labels into the "with" arm), validated on the fold's validation patients;
2. ``pipelines synthesize`` draws round(``--ratio`` x their slice count) image / mask pairs (seed 0);
3. realism of those pairs against the fold's test slices: Fréchet distance on the segmentation U-Net's bottleneck
   features (with the real-vs-real floor: the n patients' own slices against the test slices), the classifier
   two-sample test accuracy (0.5: indistinguishable), and mask plausibility (Dice of the generated mask with the
   U-Net's segmentation of the generated image); see :mod:`pipelines.evaluation.realism`. They are logged to the
   GAN's MLflow run. The U-Net used for them is the shipped ``lv_segmentation_unet`` (trained on the seed split's
   training patients, which overlap the folds' test patients): it measures the images, it never trains a row;
4. ``lv_segmentation_unet`` is trained twice on the same n patients with the same schedule and classical
   augmentation: without, and with the synthetic pairs mixed in (``synthetic_ratio``);
5. both are scored on the fold's test patients (``pipelines evaluate``: per-patient 3D myocardium Dice).

The table gives, per n, the mean ± std over folds of the test Dice without and with synthetic pairs, their
difference, and the realism measures. Finished steps are reused (a second call only re-reads them); a folder made
with other options is refused. ``--quick`` runs tiny networks for 2 epochs on fold 0 with 3 patients: it checks the
chain in minutes and its figures mean nothing about the method.

``--gan mr_synthesis_pix2pix`` uses the mask-conditioned generator instead of the joint one: its synthetic pairs are
images drawn for the row's own training masks under random deformations. ``--control`` then adds two arms: one trained on
the *real* images under the very same deformations (same seed, same masks), which separates what the generator adds
from what the deformations alone add; and one on the real slices alone for (1 + ratio) times the epochs, so that it
takes as many iterations as the arms with synthetic slices (an epoch of theirs has (1 + ratio) times the slices).

    python benchmarks/gan_augmentation.py --data work_data/sunnybrook --output runs/p2p_aug --sizes 3 \
        --gan mr_synthesis_pix2pix --control
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

from pipelines import api
from pipelines.data.datalist import split_items
from pipelines.evaluation.realism import realism_report
from pipelines.io.atomic import atomic_write_json, atomic_write_text, json_safe
from pipelines.io.console import tolerant_streams

logger = logging.getLogger("benchmarks.gan_augmentation")

GAN, SEGMENTATION = "mr_synthesis_gan", "lv_segmentation_unet"
QUICK = {
    GAN: {"g_channels": [16, 8, 8, 4], "d_channels": [4, 8, 8, 16], "latent_size": 16, "val_interval": 1},
    "mr_synthesis_pix2pix": {"g_channels": [4, 8, 8], "disc_channels": 4, "samples_per_epoch": 64, "val_interval": 1},
    "segmentation": {"batch_size": 8, "network_scale": 1, "network_def#network#channels": [4, 8, 16, 32, 64]},
    "epochs": 2, "c2st_epochs": 2,
}


def _stamped(folder: Path, definition: dict[str, Any]) -> None:
    """Refuse a folder made for another definition; mark a new one."""
    stamp = folder / "benchmark.json"
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) != definition:
        raise SystemExit(f"{folder}: made for another definition ({stamp.read_text(encoding='utf-8').strip()}); "
                         "use another --output")
    atomic_write_json(stamp, definition)


def _train(bundle: str, data: Path, run: Path, fold: str, epochs: int | None, overrides: dict[str, Any]) -> dict:
    done = run / "train_summary.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    resume = (run / "models" / "checkpoint.pt").is_file()
    return api.train(bundle, data, run, epochs=epochs, fold=fold, resume=resume, overrides=overrides)


def _init_worker(threads: int) -> None:
    """A row's process: its share of the CPU threads, and the main process's log level."""
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)


def _log_to_run(run: Path, metrics: dict[str, float]) -> None:
    import mlflow

    record = json.loads((run / "mlflow_run.json").read_text(encoding="utf-8"))
    client = mlflow.MlflowClient(record["tracking_uri"])
    for key, value in metrics.items():
        client.log_metric(record["run_id"], f"realism_{key}", float(value))


def row(data: Path, output: Path, fold: str, size: str, ratio: float, quick: bool, gan_bundle: str = GAN,
        control: bool = False) -> dict[str, Any]:
    """One (fold, n) row: GAN, synthesis, realism, and the segmentation arms. With ``control`` (mask-conditioned
    bundles), two more arms: the real images under the synthesis deformations, and the real slices alone trained for
    as many iterations as the arms with (1 + ratio) times the slices."""
    folder = output / f"fold{fold}_n{size}"
    done = folder / "row.json"
    definition: dict[str, Any] = {"fold": fold, "size": size, "ratio": ratio, "quick": quick}
    if gan_bundle != GAN or control:  # older folders of the default benchmark stay valid
        definition.update(gan=gan_bundle, control=control)
    _stamped(folder, definition)
    if done.is_file():
        finished = json.loads(done.read_text(encoding="utf-8"))
        if not control or "dice_longer" in finished:  # rows made before the iteration-matched arm get it added
            return finished
    n = len(split_items(data, fold, "train")) if size == "all" else int(size)
    epochs = QUICK["epochs"] if quick else None
    limit = {"train#items#max_cases": n}
    gan_run = folder / "gan"
    gan_overrides = {**limit, **(QUICK[gan_bundle] if quick else {})}
    gan = _train(gan_bundle, data, gan_run, fold, epochs, gan_overrides)
    real_count = sum(item["num_slices"] for item in split_items(data, fold, "train", max_cases=n))
    # a mask-conditioned bundle deforms the masks of its own training patients: the row's fold and n patients
    synthesis = {**gan_overrides, "dataset_dir": str(Path(data).resolve()), "split": fold}
    synthetic = folder / "synthetic"
    arms: dict[str, Path | None] = {"without": None, "with": synthetic}
    if control:
        arms.update(control=folder / "deformed_real", longer=None)
    for arm, source in (("with", "generator"), ("control", "real")):
        if arm in arms and not (arms[arm] / "synthesis.json").is_file():
            api.synthesize(gan_bundle, round(ratio * real_count), arms[arm], checkpoint=gan_run / "models" / "model.pt",
                           overrides={**synthesis, **({"source": source} if control else {})})
    realism_file = folder / "realism.json"
    if realism_file.is_file():
        realism = json.loads(realism_file.read_text(encoding="utf-8"))
    else:
        realism = realism_report(data, fold, synthetic, n_labelled=n,
                                 c2st_epochs=QUICK["c2st_epochs"] if quick else 15)
        _log_to_run(gan_run, realism)
        atomic_write_json(realism_file, json_safe(realism))
    dice = {}
    segmentation = QUICK["segmentation"] if quick else {}
    schedule = epochs or ConfigParser.load_config_files(api.config_files(api.resolve_bundle(SEGMENTATION),
                                                                         ["train.json"]))["num_epochs"]
    longer_epochs = round(schedule * (1 + ratio))  # the iterations of an arm with (1 + ratio) x the slices
    for arm, pairs in arms.items():
        mix = {} if pairs is None else {"synthetic_datalist": str(pairs / "datalist.json"), "synthetic_ratio": ratio}
        run = folder / f"segmentation_{arm}"
        _train(SEGMENTATION, data, run, fold, longer_epochs if arm == "longer" else epochs,
               {**limit, **segmentation, **mix})
        metrics = api.evaluate(SEGMENTATION, data, run / "models" / "model.pt", run / "evaluation", fold=fold,
                               overrides=segmentation)
        dice[arm] = metrics["summary"]["dice"]["mean"]
    result = {"fold": fold, "size": size, "labelled_patients": n, "real_slices": real_count,
              "gan_best_epoch": gan.get("best_epoch"), "dice_without": dice["without"], "dice_with": dice["with"],
              "dice_gain": dice["with"] - dice["without"], **realism}
    if control:
        result.update(dice_control=dice["control"], control_gain=dice["control"] - dice["without"],
                      gan_gain_over_control=dice["with"] - dice["control"], dice_longer=dice["longer"],
                      longer_gain=dice["longer"] - dice["without"], longer_epochs=longer_epochs)
    atomic_write_json(done, json_safe(result))
    return result


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_size: dict[str, dict[str, Any]] = {}
    for size in dict.fromkeys(r["size"] for r in rows):
        group = [r for r in rows if r["size"] == size]
        entry: dict[str, Any] = {"folds": [r["fold"] for r in group], "labelled_patients": group[0]["labelled_patients"]}
        for key in ("dice_without", "dice_with", "dice_gain", "frechet_distance", "frechet_distance_real",
                    "c2st_accuracy", "mask_plausibility", "dice_control", "control_gain", "gan_gain_over_control",
                    "dice_longer", "longer_gain"):
            if any(key not in r for r in group):
                continue
            values = [float(r[key]) for r in group]
            entry[key] = {"mean": statistics.fmean(values), "std": statistics.pstdev(values)}
        by_size[size] = entry
    return by_size


def markdown(summary: dict[str, dict[str, Any]], hardware: str, quick: bool) -> str:
    def pm(entry: dict[str, float], digits: int = 3) -> str:
        return f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"

    def signed(entry: dict[str, float]) -> str:
        return f"{entry['mean']:+.3f} ± {entry['std']:.3f}"

    control = any("dice_control" in s for s in summary.values())
    head = ["labelled patients", "folds", "Dice without", "Dice with synthetic", "gain"]
    head += (["Dice with deformed real (control)", "control gain", "synthetic minus control",
              "Dice without, as many iterations", "its gain"] if control else [])
    head += ["FD synthetic (real floor)", "C2ST accuracy", "mask plausibility"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for size, s in summary.items():
        cells = [f"{size} ({s['labelled_patients']})" if size == "all" else size, str(len(s["folds"])),
                 pm(s["dice_without"]), pm(s["dice_with"]), signed(s["dice_gain"])]
        if control:
            cells += ([pm(s["dice_control"]), signed(s["control_gain"]), signed(s["gan_gain_over_control"])]
                      if "dice_control" in s else ["-"] * 3)
            cells += [pm(s["dice_longer"]), signed(s["longer_gain"])] if "dice_longer" in s else ["-"] * 2
        cells += [f"{s['frechet_distance']['mean']:.3f} ({s['frechet_distance_real']['mean']:.3f})",
                  pm(s["c2st_accuracy"], 2), pm(s["mask_plausibility"], 3)]
        lines.append("| " + " | ".join(cells) + " |")
    note = "QUICK MODE: tiny networks, 2 epochs; not a measurement of the method.\n\n" if quick else ""
    return (f"{note}Test patients of each fold; mean per-patient myocardium Dice, mean ± std over folds.\n\n"
            + "\n".join(lines) + f"\n\nHardware: {hardware}\n")


def main() -> None:
    tolerant_streams()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared Sunnybrook folder")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--folds", default="0,1,2", help="comma-separated folds (0-4)")
    parser.add_argument("--sizes", default="3,6,12,all", help="comma-separated numbers of labelled patients, or all")
    parser.add_argument("--ratio", type=float, default=1.0, help="synthetic slices per real slice")
    parser.add_argument("--quick", action="store_true", help="tiny networks, 2 epochs, fold 0, 3 patients")
    parser.add_argument("--gan", default=GAN, choices=sorted(k for k in QUICK if k.startswith("mr_")),
                        help="the generative bundle: the joint image + mask GAN, or the mask-conditioned pix2pix")
    parser.add_argument("--control", action="store_true",
                        help="also train on the real images under the synthesis deformations (mask-conditioned only)")
    parser.add_argument("--jobs", type=int, default=1, help="rows run at once, sharing the CPU threads")
    args = parser.parse_args()
    if args.control and args.gan == GAN:
        parser.error("--control needs a mask-conditioned --gan (the joint GAN draws its own masks)")
    logging.basicConfig(level=logging.WARNING)
    folds, sizes = (["0"], ["3"]) if args.quick else (args.folds.split(","), args.sizes.split(","))
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    threads = max(1, torch.get_num_threads() // args.jobs)
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=_init_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(row, args.data, args.output, fold, size, args.ratio, args.quick, args.gan, args.control)
                   for size in sizes for fold in folds]
        for future in futures:
            rows.append(future.result())
            print(json.dumps(rows[-1]), flush=True)
    hardware = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
                f"{args.jobs} row(s) at a time with {threads} thread(s) each")
    summary = summarise(rows)
    print(json.dumps({"summary": summary, "hardware": hardware, "quick": args.quick}), flush=True)
    atomic_write_json(args.output / "results.json", json_safe({"rows": rows, "summary": summary,
                                                              "hardware": hardware, "quick": args.quick}))
    atomic_write_text(args.output / "results.md", markdown(summary, hardware, args.quick))


if __name__ == "__main__":
    main()
