"""Denoising benchmark on Sunnybrook cardiac MR with synthetic Rician noise: the noisy input, a Gaussian filter,
non-local means and the ``mr_denoising_ae`` bundle, per noise level, on the split's test patients.

    python benchmarks/denoising.py --data work_data/sunnybrook --output runs/bench_denoising            # ~2 min
    python benchmarks/denoising.py --data work_data/sunnybrook --output runs/bench_denoising_quick --quick

The noisy volumes are exactly those of the bundle's evaluation (its ``validate#preprocessing``: percentile scaling to
[0, 1], then :class:`pipelines.transforms.rician.RicianNoised`, seeded per patient and level), so every method sees
the same noise. The classical filters run slice by slice in 2D, like the network (slices are 6-10 mm apart), and
their one parameter is tuned *per noise level* on the split's validation patients (highest mean PSNR), never on
the test patients: the Gaussian filter's ``sigma`` in pixels, and non-local means' ``h`` as a multiple of the noise
level (scikit-image ``denoise_nl_means``, 5x5 patches, 13x13 search window, ``sigma`` = the true noise level).
Both filters are thus told the noise level, the network is not (it was trained on levels drawn from [0, 0.2]).
The network is scored with ``pipelines evaluate`` (:func:`pipelines.api.evaluate`); the noisy-input figures of
that report and of this script are checked to agree. Metrics: PSNR over each volume and SSIM per slice
(:mod:`pipelines.evaluation.denoising`), mean ± std over the test patients.

Prints one JSON line per (level, method) and a summary line; writes ``<output>/results.json`` and the Markdown
table ``<output>/results.md``. ``--quick`` uses 2 validation and 2 test patients and short grids (under a minute).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from scipy.ndimage import gaussian_filter
from skimage.restoration import denoise_nl_means

from pipelines import api
from pipelines.evaluation.denoising import as_volume, denoising_metrics
from pipelines.handlers.denoising import level_name
from pipelines.io.atomic import atomic_write_json, atomic_write_text
from pipelines.io.console import tolerant_streams

BUNDLE = "mr_denoising_ae"
LEVELS = (0.05, 0.1, 0.15)
GAUSSIAN_SIGMAS = (0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5)
NLM_H_FACTORS = (0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2)
QUICK_GAUSSIAN_SIGMAS = (0.5, 1.0)
QUICK_NLM_H_FACTORS = (0.4, 0.8)
logger = logging.getLogger("benchmarks.denoising")

Volume = dict[str, Any]
Filter = Callable[[np.ndarray, float, float], np.ndarray]


def noisy_volumes(data: Path, subset: str, levels: Sequence[float], split: str, max_cases: int | None) -> list[Volume]:
    """``{"case_id", "noise_sigma", "noisy", "clean"}`` (``(H, W, D)`` arrays on [0, 1]) from the bundle's own
    evaluation preprocessing, for every patient of ``subset`` at every level."""
    parser = ConfigParser()
    parser.read_config(str(api.BUNDLES_DIR / BUNDLE / "configs" / "train.json"))
    parser.update({"dataset_dir": str(data.resolve()), "split": split, "max_cases": max_cases,
                   "noise_levels": [float(s) for s in levels], "validate#cases#subset": subset})
    preprocessing = parser.get_parsed_content("validate#preprocessing")
    out = []
    for item in parser.get_parsed_content("validate#items"):
        d = preprocessing(item)
        out.append({"case_id": item["case_id"], "noise_sigma": float(item["noise_sigma"]),
                    "noisy": as_volume(d["image"]).numpy(), "clean": as_volume(d["label"]).numpy()})
    return out


def gaussian(volume: np.ndarray, parameter: float, noise_sigma: float) -> np.ndarray:
    """2D Gaussian filter of each slice, standard deviation ``parameter`` pixels."""
    return np.stack([gaussian_filter(volume[..., k], parameter, mode="reflect") for k in range(volume.shape[-1])], -1)


def nl_means(volume: np.ndarray, parameter: float, noise_sigma: float) -> np.ndarray:
    """2D non-local means of each slice with ``h = parameter * noise_sigma`` (scikit-image, fast mode)."""
    return np.stack([
        denoise_nl_means(volume[..., k], patch_size=5, patch_distance=6, h=parameter * noise_sigma,
                         sigma=noise_sigma, fast_mode=True)
        for k in range(volume.shape[-1])
    ], -1)


METHODS: dict[str, Filter] = {"Gaussian filter": gaussian, "non-local means": nl_means}


def score(volumes: Sequence[Volume], method: Filter, parameter: float) -> list[dict[str, float]]:
    """Per-volume PSNR / SSIM of ``method`` with ``parameter``."""
    return [denoising_metrics(torch.from_numpy(np.asarray(method(v["noisy"], parameter, v["noise_sigma"]), np.float32)),
                              torch.from_numpy(v["clean"])) for v in volumes]


def tune(volumes: Sequence[Volume], method: Filter, grid: Sequence[float]) -> tuple[float, dict[str, float]]:
    """The grid value with the highest mean PSNR on ``volumes`` (one noise level), and the mean PSNR per value."""
    by_value = {value: statistics.mean(s["psnr"] for s in score(volumes, method, value)) for value in grid}
    return max(by_value, key=by_value.get), by_value


def _summary(scores: Sequence[dict[str, float]], noisy: Sequence[dict[str, float]]) -> dict[str, float]:
    def stats(name: str, values: list[float]) -> dict[str, float]:
        return {f"{name}_mean": statistics.mean(values), f"{name}_std": statistics.pstdev(values)}

    return {
        **stats("psnr", [s["psnr"] for s in scores]), **stats("ssim", [s["ssim"] for s in scores]),
        "psnr_gain": statistics.mean(s["psnr"] - n["psnr"] for s, n in zip(scores, noisy)),
        "ssim_gain": statistics.mean(s["ssim"] - n["ssim"] for s, n in zip(scores, noisy)),
    }


def run(data: Path, output: Path, checkpoint: Path, levels: Sequence[float], split: str, quick: bool) -> dict[str, Any]:
    """Tune the filters, score every method per level on the test patients; return ``{"rows", "tuning"}``."""
    max_cases = 2 if quick else None
    grids = {"Gaussian filter": QUICK_GAUSSIAN_SIGMAS if quick else GAUSSIAN_SIGMAS,
             "non-local means": QUICK_NLM_H_FACTORS if quick else NLM_H_FACTORS}
    validation = noisy_volumes(data, "validation", levels, split, max_cases)
    test = noisy_volumes(data, "test", levels, split, max_cases)
    network = api.evaluate(BUNDLE, data, checkpoint, output / "network_evaluation", fold=split, max_cases=max_cases,
                           overrides={"noise_levels": [float(s) for s in levels]})
    rows, tuning = [], {}
    for level in levels:
        name = level_name(level)
        val = [v for v in validation if v["noise_sigma"] == level]
        cases = [v for v in test if v["noise_sigma"] == level]
        noisy = [denoising_metrics(torch.from_numpy(v["noisy"]), torch.from_numpy(v["clean"])) for v in cases]
        reported = [c for c in network["cases"] if c["noise_sigma"] == level]
        if [c["case_id"] for c in reported] != [v["case_id"] for v in cases] or any(
                abs(c["noisy_psnr"] - n["psnr"]) > 1e-3 for c, n in zip(reported, noisy)):
            raise RuntimeError(f"sigma {name}: the bundle's evaluation saw other noisy images than this script")
        rows.append({"noise_sigma": level, "method": "noisy input", "parameter": None, **_summary(noisy, noisy)})
        for method, function in METHODS.items():
            best, by_value = tune(val, function, grids[method])
            tuning[f"{method} sigma {name}"] = {"chosen": best, "validation_psnr": by_value}
            start = time.perf_counter()
            scores = score(cases, function, best)
            elapsed = (time.perf_counter() - start) / len(cases)
            rows.append({"noise_sigma": level, "method": method, "parameter": best, **_summary(scores, noisy),
                         "s_per_volume": elapsed})
        rows.append({"noise_sigma": level, "method": "denoising autoencoder (mr_denoising_ae)", "parameter": None,
                     **_summary([{"psnr": c["psnr"], "ssim": c["ssim"]} for c in reported], noisy)})
    for row in rows:
        row["test_cases"] = len({v["case_id"] for v in test})
    return {"rows": rows, "tuning": tuning}


def markdown(rows: Sequence[dict[str, Any]], hardware: str, split: str) -> str:
    """One table: per level and method, PSNR and SSIM (mean ± std over test patients) and the gains."""
    lines = [
        "| noise sigma | method | tuned parameter | PSNR dB | SSIM | PSNR gain dB | SSIM gain |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        parameter = "-" if r["parameter"] is None else (
            f"sigma {r['parameter']:g} px" if r["method"] == "Gaussian filter" else f"h {r['parameter']:g} x sigma")
        lines.append(
            f"| {level_name(r['noise_sigma'])} | {r['method']} | {parameter} | {r['psnr_mean']:.2f} ± {r['psnr_std']:.2f} "
            f"| {r['ssim_mean']:.3f} ± {r['ssim_std']:.3f} | {r['psnr_gain']:+.2f} | {r['ssim_gain']:+.3f} |")
    lines.append(f"\nTest patients of the `{split}` split ({rows[0]['test_cases']}); noise sigma on the [0, 1] "
                 f"intensity scale (0.5th-99.5th percentile of each volume). Hardware: {hardware}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    tolerant_streams()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared Sunnybrook folder")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, default=api.BUNDLES_DIR / BUNDLE / "models" / "model.pt")
    parser.add_argument("--levels", type=float, nargs="+", default=list(LEVELS))
    parser.add_argument("--split", default="seed")
    parser.add_argument("--quick", action="store_true", help="2 validation and 2 test patients, short grids")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args.data, args.output, args.checkpoint, args.levels, args.split, args.quick)
    hardware = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
                f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}")
    for row in result["rows"]:
        print(json.dumps(row), flush=True)
    summary = {"hardware": hardware, "quick": args.quick, "split": args.split, "checkpoint": str(args.checkpoint),
               "tuning": result["tuning"]}
    print(json.dumps({"summary": summary}), flush=True)
    atomic_write_json(args.output / "results.json", {**result, **summary})
    atomic_write_text(args.output / "results.md", markdown(result["rows"], hardware, args.split))


if __name__ == "__main__":
    main()
