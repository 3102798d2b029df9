"""Command line: argument parsing only; the work is done by :mod:`pipelines.api`.

    pipelines data sunnybrook [--source PATH] --output DIR
    pipelines train BUNDLE --data DIR --output DIR [--epochs N] [--fold K|seed] [--resume] [--tracking-uri URI]
    pipelines evaluate BUNDLE --data DIR --checkpoint FILE --output DIR
    pipelines predict BUNDLE --input PATH --output DIR [--checkpoint FILE] [--overwrite]

Exit status: 0 when everything asked for succeeded, 1 when some inputs failed, 2 on an error (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence

from pipelines import __version__
from pipelines.errors import PipelineError

logger = logging.getLogger("pipelines")


def _fold(value: str) -> str:
    if value == "seed" or (value.isdigit() and 0 <= int(value) < 5):
        return value
    raise argparse.ArgumentTypeError(f"expected 'seed' or a fold 0-4, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipelines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="prepare a dataset (convert to NIfTI, write a datalist with splits)")
    data.add_argument("dataset", choices=["sunnybrook"])
    data.add_argument("--source", help="the source file or a folder holding it (default: $PIPELINES_DATA, else download)")
    data.add_argument("--output", required=True, help="folder to write images/, labels/ and datalist.json into")
    data.add_argument("--overwrite", action="store_true", help="replace an existing prepared dataset")

    train = sub.add_parser("train", help="train a bundle (MLflow-tracked)")
    train.add_argument("bundle", help="bundle name under bundles/ or a bundle folder")
    train.add_argument("--data", required=True, help="prepared dataset folder (holding datalist.json)")
    train.add_argument("--output", required=True, help="run folder (checkpoints, figures, MLflow store)")
    train.add_argument("--epochs", type=int, help="number of epochs (default: the bundle's schedule)")
    train.add_argument("--fold", type=_fold, default="seed", help="'seed' (last 6 patients test) or 0-4")
    train.add_argument("--resume", action="store_true", help="continue from <output>/models/checkpoint.pt")
    train.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or SQLite in output)")
    train.add_argument("--max-cases", type=int, help="use only the first N cases of each subset (smoke runs)")

    evaluate = sub.add_parser("evaluate", help="per-patient Dice and HD95 of a checkpoint on held-out patients")
    evaluate.add_argument("bundle")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--checkpoint", required=True, help="model weights (e.g. <run>/models/model.pt)")
    evaluate.add_argument("--output", required=True)
    evaluate.add_argument("--fold", type=_fold, default="seed", help="split whose test patients are scored")
    evaluate.add_argument("--subset", default="test", choices=["test", "validation", "train"])
    evaluate.add_argument("--tracking-uri")
    evaluate.add_argument("--max-cases", type=int)

    predict = sub.add_parser("predict", help="segment NIfTI / DICOM / NRRD / MHA images into NIfTI label maps")
    predict.add_argument("bundle")
    predict.add_argument("--input", required=True, help="an image file or a folder of images / DICOM series")
    predict.add_argument("--output", required=True)
    predict.add_argument("--checkpoint", help="model weights (default: the bundle's shipped models/model.pt)")
    predict.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    predict.add_argument("--probabilities", action="store_true", help="also write the myocardium probability map")
    predict.add_argument("--tracking-uri")
    return parser


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # quieten third-party start-up chatter that says nothing about the user's run
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("monai.bundle.workflows").setLevel(logging.ERROR)
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
    from pipelines import api

    try:
        if args.command == "data":
            print(api.prepare_data(args.dataset, args.output, source=args.source, overwrite=args.overwrite))
        elif args.command == "train":
            _print_json(
                api.train(
                    args.bundle, args.data, args.output, epochs=args.epochs, fold=args.fold, resume=args.resume,
                    tracking_uri=args.tracking_uri, max_cases=args.max_cases,
                )
            )
        elif args.command == "evaluate":
            metrics = api.evaluate(
                args.bundle, args.data, args.checkpoint, args.output, fold=args.fold, subset=args.subset,
                tracking_uri=args.tracking_uri, max_cases=args.max_cases,
            )
            _print_json(metrics["summary"])
        elif args.command == "predict":
            report = api.predict(
                args.bundle, args.input, args.output, checkpoint=args.checkpoint, overwrite=args.overwrite,
                probabilities=args.probabilities, tracking_uri=args.tracking_uri,
            )
            for path in report.written:
                print(path)
            if not report.ok:
                print(f"error: {len(report.failed)} of {len(report.failed) + len(report.written)} inputs failed:",
                      file=sys.stderr)
                for reason in report.failed.values():
                    print(f"  {reason}", file=sys.stderr)
                return 1
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
