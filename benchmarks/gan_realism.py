"""Realism of a trained pair generator's samples against the test patients of a split (issue #5's three measures).

    python benchmarks/gan_realism.py --data work_data/sunnybrook --output runs/gan_realism            # shipped weights
    python benchmarks/gan_realism.py --data work_data/sunnybrook --output DIR --checkpoint FILE --split 0
    python benchmarks/gan_realism.py --data work_data/sunnybrook --output DIR --bundle mr_synthesis_pix2pix

Draws ``--count`` pairs (default: as many as the split's training slices) with ``pipelines synthesize`` into
``<output>/synthetic`` and prints one JSON line: Fréchet distance on the segmentation U-Net's bottleneck features
(with the real-vs-real floor: the split's training images against its test images), the classifier two-sample test
accuracy (0.5: indistinguishable) and mask plausibility (see :mod:`pipelines.evaluation.realism`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from pipelines import api
from pipelines.data import split_items
from pipelines.evaluation.realism import realism_report
from pipelines.io.atomic import atomic_write_json
from pipelines.io.console import tolerant_streams


def main() -> None:
    tolerant_streams()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared Sunnybrook folder")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--checkpoint", help="generator weights (default: the bundle's shipped ones)")
    parser.add_argument("--split", default="seed", help="split whose training / test patients are compared")
    parser.add_argument("--count", type=int, help="pairs to draw (default: the split's training slice count)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bundle", default="mr_synthesis_gan", choices=["mr_synthesis_gan", "mr_synthesis_pix2pix"],
                        help="the joint GAN, or the mask-conditioned generator (it deforms the split's training masks)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    count = args.count or sum(item["num_slices"] for item in split_items(args.data, args.split, "train"))
    synthetic = args.output / "synthetic"
    if not (synthetic / "synthesis.json").is_file():
        api.synthesize(args.bundle, count, synthetic, checkpoint=args.checkpoint, seed=args.seed, data=args.data,
                       overrides={"split": args.split})
    report = {"bundle": args.bundle, "split": args.split, "checkpoint": args.checkpoint or "shipped",
              **realism_report(args.data, args.split, synthetic)}
    atomic_write_json(args.output / "realism.json", report)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
