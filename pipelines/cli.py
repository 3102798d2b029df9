"""Command line: argument parsing only; the work is done by :mod:`pipelines.api`.

    pipelines data sunnybrook|brain_mr_ct|mednist|acdc|sunnybrook_dicom [--source PATH] --output DIR [--keep-ct-window]
        [--register-ct]
    pipelines train BUNDLE --data DIR --output DIR [--epochs N] [--fold K|seed] [--resume] [--tracking-uri URI]
        [--set KEY=VALUE ...]
    pipelines evaluate BUNDLE --data DIR --checkpoint FILE --output DIR [--set KEY=VALUE ...]
    pipelines predict BUNDLE --input PATH --output DIR [--checkpoint FILE] [--overwrite] [--set KEY=VALUE ...]
    pipelines explain BUNDLE --input PATH --output DIR [--checkpoint FILE] [--overwrite] [--patch-size N]
        [--stride N] [--occlusion mean|blur|zero] [--batch-size N] [--bbox RMIN RMAX CMIN CMAX]
        [--score dice|mean_probability] [--set KEY=VALUE ...]
    pipelines synthesize BUNDLE --count N --output DIR [--label CLASS] [--checkpoint FILE] [--seed S] [--overwrite]
                         [--data DIR] [--set KEY=VALUE ...]
    pipelines measure (--ed ED_LABELS --es ES_LABELS | --cine LABELS_4D | --batch DIR) --output DIR [--case NAME]
        [--overwrite] [--tracking-uri URI]
    pipelines register BUNDLE [--tracking-uri URI] [--alias shipped]

``--set KEY=VALUE`` (repeatable) changes one value of the bundle's configs, e.g. ``--set num_epochs=40`` or
``--set synthetic_datalist=runs/syn/datalist.json --set synthetic_ratio=0.5`` (see :mod:`pipelines.settings`).

Exit status: 0 when everything asked for succeeded, 1 when some inputs failed, 2 on an error (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pipelines import __version__
from pipelines.errors import PipelineError
from pipelines.io.console import tolerant_streams

if TYPE_CHECKING:
    from pipelines.api import PredictionReport

logger = logging.getLogger("pipelines")


def _fold(value: str) -> str:
    if value == "seed" or (value.isdigit() and 0 <= int(value) < 5):
        return value
    raise argparse.ArgumentTypeError(f"expected 'seed' or a fold 0-4, got {value!r}")


# bundle configs run code: a bare name is looked up in the project's bundles/ only (see api.resolve_bundle)
BUNDLE_HELP = "bundle name under bundles/, or a bundle folder given as a path (./my_bundle)"
SET_HELP = ("change a config value of the bundle (repeatable); VALUE is JSON or a plain string, KEY a config id "
            "with '#' between levels: --set num_epochs=40 --set validate#tta_inferer#flip_axes=[0]")


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipelines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="prepare a dataset (convert to NIfTI, write a datalist with splits)")
    data.add_argument("dataset", choices=["sunnybrook", "brain_mr_ct", "mednist", "acdc", "sunnybrook_dicom"])
    data.add_argument("--source", help="the source file or a folder holding it (default: $PIPELINES_DATA, else download)")
    data.add_argument("--output", required=True, help="folder to write images/, labels/ and datalist.json into")
    data.add_argument("--overwrite", action="store_true", help="replace an existing prepared dataset")
    data.add_argument(
        "--keep-ct-window",
        action="store_true",
        help="brain_mr_ct: keep every CT's display window as in the file (default: patients whose brain-window level "
        "is off their region's by more than 20 are moved onto it)",
    )
    data.add_argument(
        "--register-ct",
        action="store_true",
        help="brain_mr_ct: register each CT slice onto its T1 slice (2D affine, mutual information; default: off)",
    )

    train = sub.add_parser("train", help="train a bundle (MLflow-tracked)")
    train.add_argument("bundle", help=BUNDLE_HELP)
    train.add_argument("--data", required=True, help="prepared dataset folder (holding datalist.json)")
    train.add_argument("--output", required=True, help="run folder (checkpoints, figures, MLflow store)")
    train.add_argument("--epochs", type=int, help="number of epochs (default: the bundle's schedule)")
    train.add_argument("--fold", type=_fold, default="seed", help="'seed' (last 6 patients test) or 0-4")
    train.add_argument("--resume", action="store_true", help="continue from <output>/models/checkpoint.pt")
    train.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or SQLite in output)")
    train.add_argument("--max-cases", type=int, help="use only the first N cases of each subset (smoke runs)")
    _add_set(train)

    evaluate = sub.add_parser("evaluate", help="per-patient Dice and HD95 of a checkpoint on held-out patients")
    evaluate.add_argument("bundle", help=BUNDLE_HELP)
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--checkpoint", required=True, help="model weights (e.g. <run>/models/model.pt)")
    evaluate.add_argument("--output", required=True)
    evaluate.add_argument("--fold", type=_fold, default="seed", help="split whose test patients are scored")
    evaluate.add_argument("--subset", default="test", choices=["test", "validation", "train"])
    evaluate.add_argument("--tracking-uri")
    evaluate.add_argument("--max-cases", type=int)
    _add_set(evaluate)

    # the arguments of the commands that turn images into files
    images = argparse.ArgumentParser(add_help=False)
    images.add_argument("bundle", help=BUNDLE_HELP)
    images.add_argument("--input", required=True, help="an image file or a folder of images / DICOM series")
    images.add_argument("--output", required=True)
    images.add_argument("--checkpoint", help="model weights (default: the bundle's shipped models/model.pt)")
    images.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    images.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else untracked)")

    help_predict = "run a bundle on NIfTI / DICOM / NRRD / MHA images: label maps (segmentation) or synthetic CT"
    predict = sub.add_parser("predict", parents=[images], help=help_predict)
    predict.add_argument("--probabilities", action="store_true", help="also write the myocardium probability map")
    predict.add_argument("--uncertainty", action="store_true",
                         help="also write the voxel-wise uncertainty map (normalised entropy of the flip-averaged "
                         "softmax, 0 certain .. 1 uniform; cardiac_sax_segmentation)")
    predict.add_argument("--measure", action="store_true",
                         help="then measure cardiac function (pipelines measure) on every 4D output and every "
                         "<case>_ed / <case>_es pair into OUTPUT/measures/, with the uncertainty per case "
                         "(cardiac_sax_segmentation)")
    predict.add_argument("--trim-basal-rv", type=_ratio, metavar="RATIO",
                         help="with --measure: leave the most basal end-systolic RV slice out of the measures when its "
                         "RV area is below RATIO x the next slice's (the right atrium at end-systole; "
                         "docs/measure.md); 0 turns it off (default 0.8)")
    _add_set(predict)

    help_explain = "occlusion sensitivity maps: where does the segmentation model look?"
    explain = sub.add_parser("explain", parents=[images], help=help_explain)
    # options left out take the defaults of the bundle's configs/explain.json
    explain.add_argument("--patch-size", type=_positive, help="side of the occluding patch in pixels")
    explain.add_argument("--stride", type=_positive, help="pixels between patches (overlap = 1 - stride / patch size)")
    explain.add_argument("--occlusion", choices=["mean", "blur", "zero"], help="what an occluded patch becomes")
    explain.add_argument("--batch-size", type=_positive, help="occluded images per forward pass (bounds memory)")
    explain.add_argument("--bbox", type=int, nargs=4, metavar=("RMIN", "RMAX", "CMIN", "CMAX"),
                         help="only occlude patches overlapping these inclusive rows/columns (-1: image edge)")
    explain.add_argument("--score", choices=["dice", "mean_probability"],
                         help="segmentation score that occlusion perturbs (see the bundle's docs/explain.md)")
    _add_set(explain)
    help_synthesize = "draw samples from a generative bundle (GAN, VAE): images, masks and a datalist"
    synthesize = sub.add_parser("synthesize", help=help_synthesize)
    synthesize.add_argument("bundle", help=BUNDLE_HELP)
    synthesize.add_argument("--count", type=_positive, required=True, help="number of samples to write")
    synthesize.add_argument("--output", required=True)
    synthesize.add_argument("--label", help="class to generate, for class-conditional bundles (e.g. CXR)")
    synthesize.add_argument("--checkpoint", help="generator weights (default: the bundle's shipped models/model.pt)")
    synthesize.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed writes the same files")
    synthesize.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    synthesize.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else untracked)")
    synthesize.add_argument("--data", help="prepared dataset, for bundles that deform real masks (mr_synthesis_pix2pix)")
    _add_set(synthesize)

    measure = sub.add_parser(
        "measure", help="cardiac function from label maps: volumes, EF, LV mass, wall thickness (AHA), QC flags",
        description=MEASURE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    measure_input = measure.add_mutually_exclusive_group(required=True)
    measure_input.add_argument("--ed", metavar="ED_LABELS", help="ED label map (x, y, z); with --es")
    measure_input.add_argument("--cine", metavar="LABELS_4D",
                               help="4D label map (x, y, z, t): ED / ES = largest / smallest LV cavity")
    measure_input.add_argument("--batch", metavar="DIR", help="a folder of cases (layouts above)")
    measure.add_argument("--es", metavar="ES_LABELS", help="ES label map on the ED frame's grid")
    measure.add_argument("--output", metavar="DIR", required=True, help="folder for measures.csv, JSONs and figures")
    measure.add_argument("--case", metavar="NAME", help="case name of a pair or cine (default: from the file name)")
    measure.add_argument("--overwrite", action="store_true", help="replace existing outputs of the cases measured")
    measure.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else untracked)")
    measure.add_argument("--trim-basal-rv", type=_ratio, default=0.0, metavar="RATIO",
                         help="for a network's labels: leave the most basal end-systolic RV slice out when its RV area "
                         "is below RATIO x the next slice's (predict --measure uses 0.8; docs/measure.md); default 0: "
                         "the labels as they are")

    register = sub.add_parser("register", help="register the bundle's shipped weights in the MLflow Model Registry")
    register.add_argument("bundle", help=BUNDLE_HELP)
    register.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    register.add_argument("--alias", default="shipped", help="alias of the new version (default: shipped)")
    return parser


MEASURE_DESCRIPTION = """\
Cardiac function from short-axis label maps (0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity; slices
holding 255 are unlabelled and left out): LV / RV volumes and EF, LV mass, ED wall thickness per slice and AHA
segment, QC flags. Writes OUTPUT/measures.csv (one row per case, added to the rows there), OUTPUT/<case>.json,
<case>_bullseye.png and, for a cine, <case>_volume_curve.png. See docs/measure.md.

--batch DIR measures every case in DIR and carries on past a case that fails (exit status 1):
  <case>_ed*.nii[.gz] + <case>_es*.nii[.gz]   pairs directly in DIR
  <case>_4d*.nii[.gz] or <case>_cine*.nii[.gz]   4D label maps directly in DIR
  patientXXX/Info.cfg + patientXXX_frameNN_gt.nii.gz   the ACDC layout (up to 3 levels down): the expert labels
                                                      of the ED / ES frames named in Info.cfg
"""


def _positive(value: str) -> int:
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")


def _ratio(value: str) -> float:
    try:
        ratio = float(value)
    except ValueError:
        ratio = -1.0
    if 0.0 <= ratio <= 1.0:
        return ratio
    raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value!r}")


def _settings(args: argparse.Namespace, api: ModuleType) -> dict[str, Any]:
    """The command's ``--set`` values as config overrides, checked against the configs it layers."""
    from pipelines.settings import COMMAND_CONFIGS, check_settings, parse_setting

    settings = dict(parse_setting(text) for text in getattr(args, "settings", []))
    if settings:
        files = api.config_files(api.resolve_bundle(args.bundle), COMMAND_CONFIGS[args.command])
        check_settings(files, settings)
    return settings


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _print_report(report: PredictionReport) -> int:
    """Print the written files (stdout) and the failed inputs (stderr); the exit status: 1 if any failed."""
    for path in report.written:
        print(path)
    if report.ok:
        return 0
    print(f"error: {len(report.failed)} of {len(report.failed) + len(report.done)} inputs failed:", file=sys.stderr)
    for reason in report.failed.values():
        print(f"  {reason}", file=sys.stderr)
    return 1


# loggers that MONAI creates lazily with a handler of its own on stdout (monai.apps.get_logger)
_MONAI_LATE_LOGGERS = ("monai.handlers.StatsHandler",)


def _configure_logging(verbose: bool) -> None:
    """Logs go to stderr, so stdout carries only results (paths, JSON) that scripts can parse."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    for name in _MONAI_LATE_LOGGERS:  # existing loggers are left alone by MONAI's get_logger
        late = logging.getLogger(name)
        late.addHandler(handler)
        late.setLevel(logging.INFO)
    # quieten third-party start-up chatter that says nothing about the user's run
    for name, level in (("alembic", logging.WARNING), ("monai.bundle.workflows", logging.ERROR),
                        ("monai.data.nvimgcodec_pydicom_plugin", logging.ERROR)):
        logging.getLogger(name).setLevel(level)
    warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
    warnings.filterwarnings("ignore", category=FutureWarning)


def _route_stdout_loggers_to_stderr() -> None:
    for logger_ in list(logging.root.manager.loggerDict.values()):
        for handler in getattr(logger_, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    tolerant_streams()
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    from pipelines import api
    from pipelines.tracking_tags import ARGV

    _route_stdout_loggers_to_stderr()
    argv_token = ARGV.set(tuple(sys.argv[1:] if argv is None else argv))  # tagged on runs: pipelines.command_line

    try:
        settings = _settings(args, api)
        if args.command == "data":
            datalist = api.prepare_data(
                args.dataset,
                args.output,
                source=args.source,
                overwrite=args.overwrite,
                harmonise_ct=not args.keep_ct_window,
                register_ct=args.register_ct,
            )
            print(datalist)
        elif args.command == "train":
            _print_json(
                api.train(
                    args.bundle, args.data, args.output, epochs=args.epochs, fold=args.fold, resume=args.resume,
                    tracking_uri=args.tracking_uri, max_cases=args.max_cases, overrides=settings,
                )
            )
        elif args.command == "evaluate":
            metrics = api.evaluate(
                args.bundle, args.data, args.checkpoint, args.output, fold=args.fold, subset=args.subset,
                tracking_uri=args.tracking_uri, max_cases=args.max_cases, overrides=settings,
            )
            _print_json(metrics["summary"])
        elif args.command == "predict":
            return _print_report(
                api.predict(
                    args.bundle, args.input, args.output, checkpoint=args.checkpoint, overwrite=args.overwrite,
                    probabilities=args.probabilities, tracking_uri=args.tracking_uri, overrides=settings,
                    uncertainty=args.uncertainty, measure=args.measure,
                    basal_rv_min_ratio=api.BASAL_RV_MIN_RATIO if args.trim_basal_rv is None else args.trim_basal_rv,
                )
            )
        elif args.command == "explain":
            return _print_report(
                api.explain(
                    args.bundle, args.input, args.output, checkpoint=args.checkpoint, overwrite=args.overwrite,
                    patch_size=args.patch_size, stride=args.stride, occlusion=args.occlusion,
                    batch_size=args.batch_size, bbox=args.bbox, score=args.score, tracking_uri=args.tracking_uri,
                    overrides=settings,
                )
            )
        elif args.command == "synthesize":
            _print_json(
                api.synthesize(
                    args.bundle, args.count, args.output, label=args.label, checkpoint=args.checkpoint,
                    seed=args.seed, overwrite=args.overwrite, tracking_uri=args.tracking_uri, data=args.data,
                    overrides=settings,
                )
            )
        elif args.command == "register":
            _print_json(api.register(args.bundle, tracking_uri=args.tracking_uri, alias=args.alias))
        elif args.command == "measure":
            return _print_report(
                api.measure(
                    args.output, ed=args.ed, es=args.es, cine=args.cine, batch=args.batch, case=args.case,
                    overwrite=args.overwrite, tracking_uri=args.tracking_uri, basal_rv_min_ratio=args.trim_basal_rv,
                )
            )
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        ARGV.reset(argv_token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
