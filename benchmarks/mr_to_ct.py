"""MR -> CT synthesis on the held-out patients: the identity baseline, the paired (pix2pix-like) model and CycleGAN.

    python benchmarks/mr_to_ct.py --data work_data/brain_mr_ct --output runs/mrct_bench              # full (hours)
    python benchmarks/mr_to_ct.py --data work_data/brain_mr_ct --output runs/mrct_quick --quick      # minutes

Rows:

- ``identity``: the T1 MR's 8-bit display values taken as the CT (no model), the floor any model must beat;
- ``ct_blur``: not a model but a yardstick, one row per ``--blur-sigma`` (default ``1,1.5,2`` pixels): the real CT
  itself, blurred slice by slice with a Gaussian of that sigma. It shows how fast SSIM falls for a prediction that is
  right everywhere but smoother than the grainy CT (the brain window turns the CT's noise into grain that no MR
  predicts), and so how sharp a synthetic CT must be to reach a given SSIM;
- ``ct_half``: the other yardstick, the real CT itself through the models' resampling
  (``pipelines.networks.ScaledNetwork`` at scale 1/2 around an identity: averaged over 2x2 blocks, upsampled back
  bilinearly): what working at half resolution costs a prediction that is otherwise perfect;
- ``paired``: ``mr_to_ct_paired`` trained on the paired slices of the training patients (the upper bound);
- ``cyclegan``: ``mr_to_ct_cyclegan`` trained on the MR of half of the training patients and the CT of the other
  half (unpaired in fact).

Each model is trained with ``pipelines train`` into ``<output>/<bundle>/`` (a finished run, one holding
``train_summary.json``, is re-read rather than retrained; a folder made with other options is refused), its best validation checkpoint (lowest MAE on the validation
patients) is scored on the test patients with ``pipelines evaluate`` (MAE, PSNR, SSIM inside the head / body
mask, on the 0..255 display scale, see :mod:`pipelines.evaluation.synthesis`), and the test MR volumes are
translated once more with ``pipelines predict`` to time inference per patient; the table scores those NIfTI
files (uint8, what a user gets; ``pipelines evaluate`` scores the float output and differs by the rounding), with
the MAE also over the lower, middle and upper third of each patient's slices. ``<output>`` gets ``results.json``
and the Markdown table ``results.md``.

``--seeds 0,1,2,3`` trains each model row once per seed (the bundle's ``seed``: weights, sampling, augmentation;
seed 0, the bundles' own, in ``<output>/<bundle>/``, others in ``<output>/<bundle>_seed<k>/``) and adds a row
``<row> over seeds``: the mean ± std over seeds of the per-seed test means, the run-to-run spread that a single
training hides. ``--workers N`` gives the training data loader N worker processes (for a GPU, where the CPU
transforms are the bottleneck).

The prepared data's CT window harmonisation and CT-to-MR registration (``ct_harmonisation`` and ``ct_registration``
in its datalist, see :mod:`pipelines.data.brain_mr_ct`) are part of each run's definition and are printed with the
table, with the test patients whose CT level was moved (none in the ``seed`` split of the verified file).

``--quick`` trains tiny networks (4 features at the first level, one residual block) for 2 epochs on one patient per subset: it checks
the whole chain in a few minutes and is deterministic; its figures mean nothing about the method.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from pipelines import api
from pipelines.io.console import tolerant_streams
from pipelines.data.datalist import split_items
from pipelines.evaluation.synthesis import synthesis_metrics
from pipelines.networks import ScaledNetwork
from pipelines.io.atomic import atomic_write_json, atomic_write_text, json_safe

logger = logging.getLogger("benchmarks.mr_to_ct")

MODELS = {"paired": "mr_to_ct_paired", "cyclegan": "mr_to_ct_cyclegan"}
ROWS = ("identity", "ct_blur", "ct_half", *MODELS)
QUICK = {"overrides": {"features": 4, "n_blocks": 1, "disc_channels": 8, "batch_size": 4}, "epochs": 2, "max_cases": 1}
METRICS = ("mae", "psnr", "ssim", "mae_lower", "mae_middle", "mae_upper")


def test_items(data: Path, max_cases: int | None) -> list[dict[str, Any]]:
    return split_items(data / "datalist.json", "seed", "test", max_cases, path_fields=("image", "label", "mask"))


LEVELS = ("lower", "middle", "upper")


def mae_by_level(pred: np.ndarray, ct: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """MAE inside the mask over the lower, middle and upper third of the slices (slice 1 is the lowest head slice:
    the skull base, where bone, air and misalignment concentrate the error, is in the lower third)."""
    thirds = np.array_split(np.arange(ct.shape[-1]), 3)
    out = {}
    for level, slices in zip(LEVELS, thirds):
        m = mask[..., slices] > 0
        out[level] = float(np.abs(pred[..., slices] - ct[..., slices])[m].mean())
    return out


def _case(item: dict[str, Any], pred: np.ndarray, ct: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    scores = synthesis_metrics(torch.from_numpy(pred), torch.from_numpy(ct), torch.from_numpy(mask))
    levels = {f"mae_{k}": v for k, v in mae_by_level(pred, ct, mask).items()}
    return {"case_id": item["case_id"], "region": item["region"], **scores, **levels}


def _load(path: str | Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


def preparation(data: Path) -> dict[str, Any]:
    """The datalist's records of the CT window harmonisation and registration (None: prepared before they existed)."""
    datalist = json.loads((data / "datalist.json").read_text(encoding="utf-8"))
    return {key: datalist.get(key) for key in ("ct_harmonisation", "ct_registration")}


def identity_row(data: Path, max_cases: int | None) -> dict[str, Any]:
    """The T1 display values scored as a synthetic CT."""
    cases = [_case(item, _load(item["image"]), _load(item["label"]), _load(item["mask"]))
             for item in test_items(data, max_cases)]
    return {"row": "identity", "bundle": None, "cases": cases}


def blurred_ct_row(data: Path, max_cases: int | None, sigma: float) -> dict[str, Any]:
    """The real CT blurred with a Gaussian of ``sigma`` pixels in each slice, scored against itself."""
    from scipy.ndimage import gaussian_filter

    cases = []
    for item in test_items(data, max_cases):
        ct = _load(item["label"])
        blurred = np.stack([gaussian_filter(ct[..., k], sigma) for k in range(ct.shape[-1])], axis=-1)
        cases.append(_case(item, blurred, ct, _load(item["mask"])))
    return {"row": f"ct_blur (sigma {sigma:g} px)", "bundle": None, "cases": cases}


def half_resolution_ct_row(data: Path, max_cases: int | None) -> dict[str, Any]:
    """The real CT through the half-resolution round trip of the models (``ScaledNetwork(Identity, 0.5)``)."""
    round_trip = ScaledNetwork(torch.nn.Identity(), scale=0.5)
    cases = []
    for item in test_items(data, max_cases):
        ct = _load(item["label"])
        with torch.no_grad():  # (H, W, S) -> S slices of (1, H, W) and back
            out = round_trip(torch.from_numpy(ct).permute(2, 0, 1)[:, None])[:, 0].permute(1, 2, 0).numpy()
        cases.append(_case(item, out, ct, _load(item["mask"])))
    return {"row": "ct_half (real CT at half resolution)", "bundle": None, "cases": cases}


def blur_sigmas(text: str) -> list[float]:
    """``"1,1.5,2"`` -> ``[1.0, 1.5, 2.0]``; a value that is not a positive number is a one-line error."""
    sigmas = []
    for part in (p.strip() for p in text.split(",")):
        try:
            sigma = float(part)
        except ValueError:
            sigma = float("nan")
        if not sigma > 0:
            raise SystemExit(f"--blur-sigma: {part!r} is not a positive number of pixels")
        sigmas.append(sigma)
    return sigmas


def time_inference(bundle: str, data: Path, checkpoint: Path, max_cases: int | None, output: Path,
                   overrides: dict[str, Any]) -> float:
    """Seconds per patient for ``pipelines predict`` (load, translate every slice, write the NIfTI)."""
    items = test_items(data, max_cases)
    with tempfile.TemporaryDirectory() as tmp:
        for item in items:
            os.symlink(item["image"], Path(tmp) / Path(item["image"]).name)
        start = time.perf_counter()
        report = api.predict(bundle, tmp, output, checkpoint=checkpoint, overwrite=True, overrides=overrides)
        elapsed = time.perf_counter() - start
    if not report.ok:
        raise RuntimeError(f"prediction failed for {sorted(report.failed)}")
    return elapsed / len(items)


def model_row(name: str, data: Path, output: Path, epochs: int | None, max_cases: int | None,
              overrides: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Train (or reuse) one bundle, evaluate its best checkpoint on the test patients, time its inference."""
    bundle = MODELS[name]
    run = output / (bundle if seed == 0 else f"{bundle}_seed{seed}")
    if seed != 0:
        overrides = {**overrides, "seed": seed}
        name = f"{name} seed {seed}"
    summary_file = run / "train_summary.json"
    prepared = preparation(data)
    harmonisation, registration = prepared["ct_harmonisation"], prepared["ct_registration"]
    stamp = {"bundle": bundle, "epochs": epochs, "max_cases": max_cases, "overrides": overrides,
             "ct_shifts": harmonisation["shifted"] if harmonisation and harmonisation["enabled"] else None,
             "ct_registered": bool(registration and registration["enabled"])}
    stamp_file = run / "benchmark.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text(encoding="utf-8")) != stamp:
        raise SystemExit(f"{run}: made for another definition ({stamp_file.read_text(encoding='utf-8').strip()}); "
                         "use another --output")
    if summary_file.is_file():
        logger.warning("reusing the finished run %s", run)
    else:
        atomic_write_json(stamp_file, stamp)
        api.train(bundle, data, run, epochs=epochs, max_cases=max_cases, overrides=overrides)
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    checkpoint = run / "models" / "model.pt"
    api.evaluate(bundle, data, checkpoint, run / "evaluation", max_cases=max_cases, overrides=overrides)
    seconds = time_inference(bundle, data, checkpoint, max_cases, run / "predictions", overrides)
    # the NIfTI written by `pipelines predict` (uint8, as a user gets it) is what is scored
    cases = []
    for item in test_items(data, max_cases):
        pred = _load(run / "predictions" / f"{Path(item['image']).name.split('.')[0]}_sct.nii.gz")
        cases.append(_case(item, pred, _load(item["label"]), _load(item["mask"])))
    parameters = sum(t.numel() for k, t in torch.load(checkpoint, map_location="cpu", weights_only=True).items())
    return {
        "row": name, "bundle": bundle, "cases": cases, "epochs": summary["epochs"],
        "best_epoch": summary["best_epoch"], "best_val_mae": summary["best_val_mae"],
        "train_time_s": summary["train_time_s"], "generator_parameters": parameters, "inference_s_per_patient": seconds,
    }


def over_seeds(name: str, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds of each seed's test mean (each seed weighs the same, whatever its patients)."""
    out: dict[str, Any] = {"row": f"{name} over seeds", "bundle": None, "seeds": len(summaries)}
    for metric in METRICS:
        means = np.array([s[metric]["mean"] for s in summaries], float)
        out[metric] = {"mean": float(means.mean()), "std": float(means.std())}
    cases = summaries[0]["mae_by_case"]
    for metric in ("mae", "ssim"):
        out[f"{metric}_by_case"] = {c: float(np.mean([s[f"{metric}_by_case"][c] for s in summaries])) for c in cases}
    return out


def summarise(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "cases"}
    for metric in METRICS:
        values = np.array([case[metric] for case in row["cases"]], float)
        out[metric] = {"mean": float(values.mean()), "std": float(values.std())}
        out[f"{metric}_by_case"] = {case["case_id"]: case[metric] for case in row["cases"]}
    return out


def preparation_note(prepared: dict[str, Any], test_cases: list[str]) -> str:
    """Which CT levels the data preparation moved (a test patient among them or not), and whether CTs were registered."""
    harmonisation, registration = prepared["ct_harmonisation"], prepared["ct_registration"]
    if not harmonisation or not harmonisation["enabled"]:
        note = "CT window harmonisation: off (every CT level as in the source file)."
    else:
        shifted = harmonisation["shifted"]
        moved_test = sorted(set(shifted) & set(test_cases))
        listed = ", ".join(f"{c} {d:+d}" for c, d in sorted(shifted.items())) or "none"
        note = (f"CT window harmonisation: on (level shifts: {listed}); test patients scored against a moved CT "
                f"level: {', '.join(moved_test) or 'none'}.")
    registered = bool(registration and registration["enabled"])
    return note + (" CT slices registered onto the T1 (2D affine, nearest neighbour): " + ("yes." if registered else "no."))


def markdown(summaries: list[dict[str, Any]], hardware: str, quick: bool, data_note: str = "") -> str:
    cases = list(summaries[0]["mae_by_case"])
    head = ["row", "MAE", "PSNR (dB)", "SSIM", "MAE lower / middle / upper third", *[f"MAE {c}" for c in cases],
            *[f"SSIM {c}" for c in cases], "training (s)", "epochs (best)", "inference (s/patient)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        cells = [s["row"], *(f"{s[m]['mean']:.{1 if m != 'ssim' else 3}f} ± {s[m]['std']:.{1 if m != 'ssim' else 3}f}"
                             for m in METRICS[:3])]
        cells.append(" / ".join(f"{s[f'mae_{level}']['mean']:.1f}" for level in LEVELS))
        cells += [f"{s['mae_by_case'][c]:.1f}" for c in cases] + [f"{s['ssim_by_case'][c]:.3f}" for c in cases]
        if s.get("seeds"):
            cells += [f"{s['seeds']} seeds", "-", "-"]
        elif s["bundle"]:
            cells += [f"{s['train_time_s']:.0f}", f"{s['epochs']} ({s['best_epoch']})", f"{s['inference_s_per_patient']:.2f}"]
        else:
            cells += ["-", "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    note = "QUICK MODE: tiny networks, 2 epochs, 1 patient per subset; not a measurement of the method.\n\n" if quick else ""
    return (f"{note}Test patients of the seed split; MAE / PSNR / SSIM inside the head (body) mask on the 0..255 "
            f"display scale, mean ± std over patients (rows `<model> over seeds`: over the seeds' means).\n\n" + "\n".join(lines)
            + f"\n\n{data_note}\n\nHardware: {hardware}\n")


def main() -> None:
    tolerant_streams()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared brain_mr_ct folder (pipelines data brain_mr_ct)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows (default: {','.join(ROWS)})")
    parser.add_argument("--epochs", type=int, help="override the bundles' schedules")
    parser.add_argument("--blur-sigma", default="1,1.5,2",
                        help="comma-separated Gaussian sigmas (pixels), one ct_blur row each (default: 1,1.5,2)")
    parser.add_argument("--quick", action="store_true", help="tiny networks, 2 epochs, 1 patient per subset")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds of the model rows (default: 0)")
    parser.add_argument("--workers", type=int, default=0, help="training data loader worker processes (GPU runs)")
    args = parser.parse_args()
    seeds = [int(k) for k in args.seeds.split(",") if k.strip()]
    sigmas = blur_sigmas(args.blur_sigma)
    logging.basicConfig(level=logging.WARNING)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; available: {', '.join(ROWS)}")
    torch.manual_seed(0)
    overrides, epochs, max_cases = (QUICK["overrides"], QUICK["epochs"], QUICK["max_cases"]) if args.quick else (
        {}, args.epochs, None)
    summaries = []
    for name in rows:
        if name == "identity":
            row = identity_row(args.data, max_cases)
        elif name == "ct_half":
            row = half_resolution_ct_row(args.data, max_cases)
        elif name == "ct_blur":
            for sigma in sigmas:
                summaries.append(summarise(blurred_ct_row(args.data, max_cases, sigma)))
                print(json.dumps(json_safe(summaries[-1])), flush=True)
            continue
        else:
            if args.workers:
                overrides = {**overrides, "train#dataloader#num_workers": args.workers,
                             "train#dataloader#persistent_workers": True}
            per_seed = []
            for seed in seeds:
                per_seed.append(summarise(model_row(name, args.data, args.output, epochs, max_cases, overrides, seed)))
                print(json.dumps(json_safe(per_seed[-1])), flush=True)
            summaries += per_seed
            if len(per_seed) > 1:
                summaries.append(over_seeds(name, per_seed))
                print(json.dumps(json_safe(summaries[-1])), flush=True)
            continue
        summaries.append(summarise(row))
        print(json.dumps(json_safe(summaries[-1])), flush=True)
    hardware = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
                f"{torch.get_num_threads()} thread(s)")
    prepared = preparation(args.data)
    note = preparation_note(prepared, [i["case_id"] for i in test_items(args.data, max_cases)])
    atomic_write_json(args.output / "results.json", json_safe(
        {"rows": summaries, "hardware": hardware, "quick": args.quick, **prepared}))
    atomic_write_text(args.output / "results.md", markdown(summaries, hardware, args.quick, note))
    print((args.output / "results.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
