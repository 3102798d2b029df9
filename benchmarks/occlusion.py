"""Cost and sanity of occlusion sensitivity maps for a segmentation bundle; prints one JSON object per line.

    python benchmarks/occlusion.py --data work_data/sunnybrook            # the shipped weights, full report
    python benchmarks/occlusion.py --data work_data/sunnybrook --quick    # a smoke run in well under a minute

Lines (``"what"``):

- ``setup``: hardware, threads, checkpoint and the settings timed (the bundle's ``explain.json`` defaults unless
  overridden: patch 8, stride 4, batch 32).
- ``cost``: seconds per slice of :func:`pipelines.interpret.occlusion_sensitivity`, of
  :class:`monai.visualize.OcclusionSensitivity` at equal settings (same score module, ``mask_size`` = patch,
  ``overlap = 1 - stride / patch``, the ``mean`` occlusion, which both implement) and of the bare forward passes of
  the same number of occluded images in batches of the same size under ``torch.inference_mode()``; the ratios of
  both implementations to that forward cost (goal for ours: at most 1.2) and ours against MONAI's; the largest
  difference between the two maps. Each slice is timed ``--repeats`` times, interleaving the three, and the median
  kept (the machine may be busy).
- ``per_patient``: seconds per patient and per slice of the bundle's own inferer (``explain.json``'s
  ``OcclusionSliceInferer``, what ``pipelines explain`` runs, without reading and writing files).
- ``scaling``: the ``cost`` figures for stride 2/4/8 at patch 8 and patch 4/8/16 at stride 4 (on 4 slices).
- ``sanity`` (one per test patient and occlusion mode) and ``sanity_summary``: after Adebayo et al. 2018, the mean
  over slices holding myocardium of the Spearman rank correlation between the trained network's map and the map
  of the same network with re-initialised weights (signed and of absolute values), and the fraction of each slice's
  top 5 % most sensitive pixels within 2 px of the ground-truth myocardium, for both networks, with the chance level.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.visualize import OcclusionSensitivity

from pipelines import api
from pipelines.io.console import tolerant_streams
from pipelines.data import split_items
from pipelines.interpret import SegmentationScore, occlusion_sensitivity
from pipelines.interpret.sanity import chance_fraction, near_structure_fraction, randomized_copy, rank_correlation


def emit(what: str, **figures: object) -> None:
    """Print one JSON line."""
    print(json.dumps({"what": what, **figures}), flush=True)


def bundle_config(bundle: str) -> ConfigParser:
    bundle_dir = api.resolve_bundle(bundle)
    parser = ConfigParser()
    parser.read_config([str(bundle_dir / "configs" / name) for name in ("train.json", "explain.json")])
    parser["bundle_root"] = str(bundle_dir)
    return parser


def load_cases(parser: ConfigParser, data: Path, count: int) -> list[dict]:
    """The seed split's first ``count`` test patients, preprocessed by ``explain.json`` (with their labels)."""
    from monai.transforms import LoadImaged

    preprocessing = parser.get_parsed_content("preprocessing", instantiate=True)
    cases = []
    for item in split_items(data / "datalist.json", "seed", "test")[:count]:
        image = preprocessing({"image": item["image"]})["image"]
        label = LoadImaged("label", image_only=True)({"label": item["label"]})["label"]  # (H, W, D)
        cases.append({"case_id": item["case_id"], "image": image.as_tensor()[None], "label": np.asarray(label)})
    return cases


def timed(function: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def forward_cost(network: torch.nn.Module, image: torch.Tensor, count: int, batch_size: int) -> float:
    """Seconds for the bare forward passes of ``count`` copies of ``image`` in batches of ``batch_size``."""
    copies = image.expand(batch_size, *image.shape[1:]).contiguous()
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, count, batch_size):
            network(copies[: min(batch_size, count - first)])
    return time.perf_counter() - start


def time_slice(network, image: torch.Tensor, patch: int, stride: int, batch: int, repeats: int) -> dict[str, float]:
    """Median seconds of ours, MONAI's and the bare forward passes on one slice (interleaved), and the maps' gap."""
    with torch.inference_mode():
        scorer, _ = SegmentationScore.for_image(network, image)
    monai = OcclusionSensitivity(
        scorer, mask_size=patch, overlap=1 - stride / patch, mode="mean_img", n_batch=batch, verbose=False,
        activate=False,
    )
    result = occlusion_sensitivity(scorer, image, patch, stride, "mean", batch)
    occluded, _ = monai(image)
    gap = float((result.baseline - occluded[0, 0].as_tensor() - result.sensitivity).abs().max())
    methods = {
        "pipelines": lambda: occlusion_sensitivity(scorer, image, patch, stride, "mean", batch),
        "monai": lambda: monai(image),
        "forward": lambda: forward_cost(network, image, result.forward_passes - 1, batch),
    }
    runs: dict[str, list[float]] = {name: [] for name in methods}
    for repeat in range(repeats):
        names = list(methods)
        for name in names[repeat % 3 :] + names[: repeat % 3]:  # rotate the order: no method always runs first
            runs[name].append(timed(methods[name])[0])
    return {**{k: statistics.median(v) for k, v in runs.items()}, "passes": result.forward_passes, "gap": gap}


def cost_line(what: str, timings: list[dict[str, float]], **settings: object) -> None:
    ours, monai, forward = (statistics.mean(t[k] for t in timings) for k in ("pipelines", "monai", "forward"))
    emit(
        what, **settings, slices=len(timings), forward_passes_per_slice=int(timings[0]["passes"]),
        pipelines_s_per_slice=ours, monai_s_per_slice=monai, forward_s_per_slice=forward,
        pipelines_ratio_to_forward=ours / forward, monai_ratio_to_forward=monai / forward,
        pipelines_time_over_monai=ours / monai, max_abs_difference_vs_monai=max(t["gap"] for t in timings),
    )


def cost(network, slices: list[torch.Tensor], patch: int, stride: int, batch: int, repeats: int) -> None:
    timings = [time_slice(network, image, patch, stride, batch, repeats) for image in slices]
    cost_line("cost", timings, patch=patch, stride=stride, occlusion="mean", batch_size=batch)


def per_patient(parser: ConfigParser, network, cases: list[dict]) -> None:
    inferer = parser.get_parsed_content("inferer", instantiate=True)
    seconds = [timed(lambda: inferer(case["image"], network))[0] for case in cases]
    slices = [case["image"].shape[-1] for case in cases]
    emit(
        "per_patient", patients=len(cases), patch=inferer.patch_size, stride=inferer.stride,
        occlusion=str(inferer.mode), batch_size=inferer.batch_size, s_per_patient=statistics.mean(seconds),
        slices_per_patient=statistics.mean(slices), s_per_slice=sum(seconds) / sum(slices),
    )


def scaling(network, slices: list[torch.Tensor], batch: int, repeats: int) -> None:
    for patch, stride in ((8, 2), (8, 4), (8, 8), (4, 4), (16, 4)):
        timings = [time_slice(network, image, patch, stride, batch, repeats) for image in slices]
        cost_line("scaling", timings, patch=patch, stride=stride, occlusion="mean", batch_size=batch)


def sanity(parser: ConfigParser, network, cases: list[dict], modes: list[str], overrides: dict) -> None:
    randomised = randomized_copy(network, seed=0).eval()
    for mode in modes:
        parser["occlusion_mode"] = mode
        for key, value in overrides.items():
            parser[key] = value
        inferer = parser.get_parsed_content("inferer", instantiate=True, lazy=False)
        rows = []
        for case in cases:
            holds = case["label"].reshape(-1, case["label"].shape[-1]).any(axis=0)  # slices with myocardium
            image, label = case["image"][..., holds], case["label"][..., holds]
            trained = inferer(image, network)[0, 0].numpy()
            random_map = inferer(image, randomised)[0, 0].numpy()
            pairs = [(trained[..., i], random_map[..., i]) for i in range(trained.shape[-1])]
            row = {
                "case_id": case["case_id"], "occlusion": mode, "slices": int(holds.sum()),
                "rank_correlation": float(np.nanmean([rank_correlation(a, b) for a, b in pairs])),
                "rank_correlation_abs": float(np.nanmean([rank_correlation(a, b, absolute=True) for a, b in pairs])),
                "near_fraction_trained": near_structure_fraction(trained, label),
                "near_fraction_random": near_structure_fraction(random_map, label),
                "near_fraction_chance": chance_fraction(label),
            }
            rows.append(row)
            emit("sanity", **row)
        numbers = [key for key in rows[0] if key not in ("case_id", "occlusion")]
        summary = {key: statistics.mean(row[key] for row in rows) for key in numbers}
        emit("sanity_summary", occlusion=mode, patients=len(rows), stride=inferer.stride, **summary)


def main() -> None:
    tolerant_streams()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="lv_segmentation_unet")
    parser.add_argument("--data", type=Path, required=True, help="prepared Sunnybrook folder (datalist.json)")
    parser.add_argument("--checkpoint", type=Path, help="weights (default: the bundle's models/model.pt)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per slice; the median is kept")
    parser.add_argument("--sanity-modes", default="blur,mean", help="occlusion modes of the sanity report")
    parser.add_argument("--quick", action="store_true", help="time 2 slices, 1 patient; sanity on 2 patients, stride 8")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)  # MONAI's indexing deprecation warnings, per patch
    torch.set_num_threads(args.threads)

    config = bundle_config(args.bundle)
    checkpoint = args.checkpoint or api.resolve_bundle(args.bundle) / "models" / "model.pt"
    network = config.get_parsed_content("network_def", instantiate=True)
    network.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    network.eval()
    patch, stride, batch = (config.get_parsed_content(f"occlusion_{k}") for k in ("patch_size", "stride", "batch_size"))
    cases = load_cases(config, args.data, 2 if args.quick else 6)
    hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    emit("setup", bundle=args.bundle, checkpoint=str(checkpoint), hardware=hardware, threads=torch.get_num_threads(),
         patch=patch, stride=stride, batch_size=batch, quick=args.quick)

    slices = [case["image"][..., k] for case in cases for k in range(case["image"].shape[-1])]
    timed_slices = slices[:2] if args.quick else slices
    cost(network, timed_slices, patch, stride, batch, 1 if args.quick else args.repeats)
    per_patient(config, network, cases[:1] if args.quick else cases)
    scaling(network, timed_slices[:1] if args.quick else timed_slices[:4], batch, 1 if args.quick else args.repeats)
    modes = ["blur"] if args.quick else args.sanity_modes.split(",")
    sanity(config, network, cases, modes, {"occlusion_stride": 8} if args.quick else {})


if __name__ == "__main__":
    main()
