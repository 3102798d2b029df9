"""The plain functions behind the command line: prepare data, train, evaluate, predict, explain.

Each function resolves a bundle, builds its layered configs with MONAI's :class:`monai.bundle.ConfigWorkflow`
(the same machinery as ``python -m monai.bundle run``), applies the user's options as config overrides, runs it
with MLflow tracking, and returns a small summary dict. Tests call these functions directly.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai.bundle import ConfigWorkflow

from pipelines.data.datalist import split_name
from pipelines.data.validate import LABEL_VALUES, check_split
from pipelines.errors import InputError, OutputExistsError, PipelineError
from pipelines.io.atomic import atomic_write_json, atomic_write_text, writable_dir
from pipelines.settings import COMMAND_CONFIGS
from pipelines.tracking import mlflow_settings
from pipelines.tracking_tags import DatasetDigest, datalist_digest, files_digest, run_name, run_tags

logger = logging.getLogger(__name__)

BUNDLES_DIR = Path(__file__).resolve().parents[1] / "bundles"
#: ``predict --measure``'s basal end-systolic RV slice ratio: :data:`pipelines.measure.basal.DEFAULT_MIN_RATIO`,
#: repeated here so that importing the API does not load :mod:`pipelines.measure` (a test checks they agree)
BASAL_RV_MIN_RATIO = 0.8
DATASETS = ("sunnybrook", "brain_mr_ct", "mednist", "acdc", "sunnybrook_dicom")

__all__ = [
    "BUNDLES_DIR", "resolve_bundle", "prepare_data", "train", "evaluate", "predict", "explain", "synthesize",
    "load_network", "PredictionReport", "register", "BASAL_RV_MIN_RATIO",
]


def resolve_bundle(bundle: str | Path) -> Path:
    """A bundle name under ``bundles/`` or a path to a bundle folder -> the folder (must hold configs/train.json).

    Bundle configs execute Python expressions, so only the project's bundles and folders the user names explicitly
    are ever run: a bare name (``lv_segmentation_unet``) is looked up in ``bundles/`` only, never in the current
    folder, where anyone who can write there could plant a folder of that name; a path (``./my_bundle``,
    ``/srv/bundles/x``: anything with a separator) is the user's explicit choice.
    """
    text = str(bundle)
    named_path = "/" in text or os.sep in text or text in (".", "..")
    candidate = Path(text).expanduser() if named_path else BUNDLES_DIR / text
    if not (candidate / "configs" / "train.json").is_file():
        available = sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs").is_dir())
        hint = f"; to run the folder {text!r}, give it as a path (./{text})" if Path(text).is_dir() else ""
        raise InputError(bundle, f"not a bundle (no configs/train.json); available: {', '.join(available)}{hint}")
    return candidate.resolve()


def config_files(bundle_dir: Path, configs: Sequence[str]) -> list[str]:
    """The config files to layer, in order, for ``configs`` (``["train.json", "evaluate.json"]``) of a bundle.

    A bundle that shares another's data and transform graph names it in ``configs/metadata.json`` as
    ``"base_bundle"``; each of its configs is then layered over the base bundle's config of the same name (the same
    list ``python -m monai.bundle run --config_file "[...]"`` takes). A base may have a base of its own: the chain
    is layered from its root. Files a bundle lacks are skipped, but every config asked for must exist in the bundle
    or one of its bases.
    """
    chain = [Path(bundle_dir)]
    while True:
        meta_file = chain[0] / "configs" / "metadata.json"
        base_name = json.loads(meta_file.read_text(encoding="utf-8")).get("base_bundle") if meta_file.is_file() else None
        if not base_name:
            break
        base_dir = resolve_bundle(base_name)
        if base_dir in (d.resolve() for d in chain):
            raise InputError(meta_file, f"base_bundle {base_name!r} makes a cycle of bases")
        chain.insert(0, base_dir)
    bundle_dir = chain[-1]
    files: list[str] = []
    for name in configs:
        layers = [d / "configs" / name for d in chain]
        present = [str(f) for f in layers if f.is_file()]
        if not present:
            raise InputError(bundle_dir / "configs" / name, "this bundle has no such config")
        files.extend(present)
    return files


def _workflow(bundle_dir: Path, configs: Sequence[str], track: bool = True, **override: Any) -> ConfigWorkflow:
    """Build the layered bundle workflow, with MLflow tracking unless ``track`` is False."""
    files = config_files(bundle_dir, configs)
    override = {"bundle_root": str(bundle_dir), **override}
    settings = None
    if track:
        probe = ConfigWorkflow(config_file=files, logging_file=False, workflow_type=None, **override)
        settings = mlflow_settings(set(probe.parser.get().keys()))
        # the executed config is saved and logged; MONAI derives its path only when output_dir is an expression
        stamp = time.strftime("%Y%m%d_%H%M%S")
        override["save_execute_config"] = str(Path(override["output_dir"]) / f"config_{stamp}.json")
    return ConfigWorkflow(
        config_file=files,
        meta_file=str(bundle_dir / "configs" / "metadata.json"),
        logging_file=False,
        tracking=settings,
        workflow_type=None,
        **override,
    )


def _config_values(bundle_dir: Path, configs: Sequence[str], **defaults: Any) -> dict[str, Any]:
    """Plain top-level values of the layered ``configs`` (each key's default when absent), read in one pass
    without building anything."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(bundle_dir, configs))
    return {key: parser.get(key, default) for key, default in defaults.items()}


def _run(workflow: ConfigWorkflow) -> None:
    """Initialise, run and finalise ``workflow``; a :class:`PipelineError` raised inside a config expression (which
    MONAI wraps in ``RuntimeError("Failed to evaluate ...")``) comes out as itself, a one-line error. A tracked run
    that an exception interrupts ends ``FAILED`` (``KILLED`` on Ctrl-C), not ``RUNNING`` for ever."""
    from pipelines.handlers.mlflow_run import ending_runs_on_error

    with ending_runs_on_error():
        workflow.initialize()
        try:
            workflow.run()
        except RuntimeError as exc:
            cause: BaseException | None = exc
            seen: set[int] = set()
            while cause is not None and not isinstance(cause, PipelineError) and id(cause) not in seen:
                seen.add(id(cause))
                cause = cause.__cause__
            if not isinstance(cause, PipelineError):
                raise
            raise cause from exc
        finally:
            workflow.finalize()


def prepare_data(
    dataset: str,
    output: str | Path,
    source: str | Path | None = None,
    overwrite: bool = False,
    harmonise_ct: bool = True,
    register_ct: bool = False,
) -> Path:
    """Prepare a dataset (one of ``DATASETS``) into ``output``; return the datalist path.

    ``acdc`` reads the official ACDC layout (full field of view, 4 labels); ``sunnybrook_dicom`` the Sunnybrook
    Cardiac Data as distributed (DICOM cine + expert contour files).

    ``brain_mr_ct`` only (:mod:`pipelines.data.brain_mr_ct`): ``harmonise_ct`` moves outlying CT window levels onto
    their region's reference (``False`` keeps the file's levels); ``register_ct`` registers each CT slice onto its T1
    slice (opt-in).
    """
    if (register_ct or not harmonise_ct) and dataset != "brain_mr_ct":
        raise PipelineError(f"CT window harmonisation and registration are brain_mr_ct options; {dataset!r} has no CT")
    if dataset == "sunnybrook":
        from pipelines.data import sunnybrook

        return sunnybrook.prepare(output, source=source, overwrite=overwrite)
    if dataset == "brain_mr_ct":
        from pipelines.data import brain_mr_ct

        return brain_mr_ct.prepare(
            output, source=source, overwrite=overwrite, harmonise_ct=harmonise_ct, register=register_ct
        )
    if dataset == "mednist":
        from pipelines.data import mednist

        return mednist.prepare(output, source=source, overwrite=overwrite)
    if dataset == "acdc":
        from pipelines.data import acdc

        return acdc.prepare(output, source=source, overwrite=overwrite)
    if dataset == "sunnybrook_dicom":
        from pipelines.data import sunnybrook_dicom

        return sunnybrook_dicom.prepare(output, source=source, overwrite=overwrite)
    raise PipelineError(f"unknown dataset {dataset!r}; available: {', '.join(DATASETS)}")


def _tracking(tracking_uri: str | None) -> dict[str, str]:
    return {"tracking_uri": tracking_uri} if tracking_uri else {}


def _provenance(
    bundle_dir: Path,
    command: str,
    split: str | int | None = None,
    subset: str | None = None,
    datasets: Sequence[DatasetDigest] = (),
    checkpoint: Path | None = None,
    tracking_uri: str | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The config values that name and tag a tracked run (``run_name``, ``run_tags``, ``run_datasets``; see
    :mod:`pipelines.tracking_tags`). A ``checkpoint`` is tagged with its sha256 and, when a tracking store is
    named, with the registered model version it is (``pipelines.registered_model``)."""
    from pipelines.tracking_tags import file_sha256

    extra = dict(tags or {})
    sha = None
    if checkpoint is not None:
        sha = file_sha256(checkpoint)
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            from pipelines.model_registry import version_tags

            extra = {**version_tags(uri, bundle_dir.name, sha), **extra}
    name = run_name(bundle_dir.name, command, None if split is None else split_name(split), subset)
    return {
        "run_name": name,
        "run_tags": run_tags(bundle_dir, command, split, datasets, checkpoint, sha, extra=extra),
        "run_datasets": [d.as_dict() for d in datasets],
    }


def _resumed_epochs(checkpoint: Path, epochs: int | None) -> int:
    """The schedule length of the run being resumed; a different ``epochs`` would break its LR schedule."""
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        planned = int(state["trainer"]["max_epochs"])
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint gets the same one-line message
        raise InputError(checkpoint, f"not a resumable checkpoint ({exc.__class__.__name__})") from exc
    if epochs is not None and int(epochs) != planned:
        raise PipelineError(
            f"{checkpoint}: the run being resumed was planned for {planned} epochs; resume with --epochs {planned} "
            "(its learning-rate schedule is fixed) or start a new run"
        )
    return planned


def train(
    bundle: str | Path,
    data: str | Path,
    output: str | Path,
    epochs: int | None = None,
    fold: str | int = "seed",
    resume: bool = False,
    tracking_uri: str | None = None,
    max_cases: int | None = None,
    overrides: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train a bundle on a prepared dataset and return a summary (also written to ``<output>/train_summary.json``).

    The MLflow run is named ``<bundle> train <split>``, tagged (:mod:`pipelines.tracking_tags`) and given the
    training and validation subsets as inputs; at the end the best checkpoint is logged as an MLflow PyTorch model
    and registered as a new version of the model named after the bundle (``registered_model`` in the summary).

    Args:
        bundle: bundle name or folder.
        data: the prepared dataset folder (holding ``datalist.json``).
        output: run folder: checkpoints in ``models/``, figures in ``figures/``, the MLflow store.
        epochs: override the bundle's ``num_epochs``.
        fold: ``seed`` (the seed notebook's split) or a fold index 0-4.
        resume: continue from ``<output>/models/checkpoint.pt``, with the schedule the run was started with, in
            the MLflow run recorded in ``<output>/mlflow_run.json``; on CPU the result is that of an uninterrupted
            run (the checkpoint holds every random generator state).
        tracking_uri: MLflow tracking URI (default: ``MLFLOW_TRACKING_URI``, else SQLite in ``output``).
        max_cases: use only the first cases of each subset (smoke runs).
        overrides: further config overrides (``{"batch_size": 8}``).
        tags: further run tags (``{"mlflow.parentRunId": ...}`` for a fold of a cross-validation).
    """
    bundle_dir = resolve_bundle(bundle)
    # fail early, naming the file: a broken datalist, a missing, unreadable or mismatched image/label pair
    declared = _config_values(
        bundle_dir, ["train.json"], label_values=LABEL_VALUES, training_subsets=["train", "validation"],
        path_fields=["image", "label"],
    )
    check_split(
        data, fold, declared["training_subsets"], max_cases, declared["label_values"], declared["path_fields"]
    )
    output = Path(output)
    checkpoint = output / "models" / "checkpoint.pt"
    if resume and not checkpoint.is_file():
        raise InputError(checkpoint, "no checkpoint to resume from")
    if not resume and checkpoint.exists():
        raise OutputExistsError(checkpoint)
    writable_dir(output)
    datasets = datalist_digest(data, fold, declared["training_subsets"], max_cases, declared["path_fields"])
    override: dict[str, Any] = {
        "dataset_dir": str(Path(data).resolve()),
        "output_dir": str(output.resolve()),
        "split": split_name(fold),
        "resume": resume,
        "max_cases": max_cases,
        **_provenance(bundle_dir, "train", fold, datasets=datasets, tags=tags),
        **_tracking(tracking_uri),
        **(overrides or {}),
    }
    if resume:
        epochs = _resumed_epochs(checkpoint, epochs)
    if epochs is not None:
        override["num_epochs"] = int(epochs)
    workflow = _workflow(bundle_dir, COMMAND_CONFIGS["train"], **override)
    start = time.perf_counter()
    _run(workflow)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    summary: dict[str, Any] = {"bundle": bundle_dir.name, "split": split_name(fold), "epochs": trainer.state.epoch}
    if "validate#evaluator" in workflow.parser:  # a generative bundle may have no validation
        validator = workflow.parser.get_parsed_content("validate#evaluator")
        key_metric = str(getattr(validator.state, "key_metric_name", None) or "val_mean_dice")
        # segmentation bundles report best_val_dice (their key metric, val_mean_dice); others best_<key metric>
        best = "best_val_dice" if key_metric == "val_mean_dice" else f"best_{key_metric}"
        summary[best] = float(validator.state.best_metric)
        summary["best_epoch"] = int(validator.state.best_metric_epoch)
    summary.update({
        "images_per_s": float(trainer.state.metrics.get("images_per_s", float("nan"))),
        "train_time_s": float(trainer.state.metrics.get("train_time_s", float("nan"))),
        "wall_time_s": time.perf_counter() - start,
        "best_checkpoint": str(output / "models" / "model.pt"),
        "resume_checkpoint": str(checkpoint),
    })
    registered = _register_trained_model(bundle_dir, output)
    if registered:
        summary["registered_model"] = registered
    atomic_write_json(output / "train_summary.json", summary)
    return summary


def evaluate(
    bundle: str | Path,
    data: str | Path,
    checkpoint: str | Path,
    output: str | Path,
    fold: str | int = "seed",
    subset: str = "test",
    tracking_uri: str | None = None,
    max_cases: int | None = None,
    overrides: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a subset of a split; return ``metrics.json``'s content.

    Writes ``<output>/metrics/per_case.csv`` and ``metrics.json`` (per-case Dice and HD95 in mm and pixels, and
    their summaries overall and per diagnostic group) and an overlay figure; logs them to MLflow, in a run named
    ``<bundle> evaluate <subset>`` tagged with the checkpoint's sha256 (and registered version, if it is one), the
    subset's content digest and ``tags``.
    """
    bundle_dir = resolve_bundle(bundle)
    configs = COMMAND_CONFIGS["evaluate"]
    checkpoint = _checkpoint(bundle_dir, checkpoint, configs, overrides)
    declared = _config_values(bundle_dir, configs, label_values=LABEL_VALUES, path_fields=["image", "label"])
    check_split(data, fold, (subset,), max_cases, declared["label_values"], declared["path_fields"])
    output = writable_dir(output)
    override = {
        "dataset_dir": str(Path(data).resolve()),
        "output_dir": str(output.resolve()),
        "ckpt_path": str(checkpoint.resolve()),
        "split": split_name(fold),
        "eval_subset": subset,
        "max_cases": max_cases,
        **_provenance(bundle_dir, "evaluate", fold, subset,
                      datalist_digest(data, fold, [subset], max_cases, declared["path_fields"]),
                      checkpoint, tracking_uri, tags),
        **_tracking(tracking_uri),
        **(overrides or {}),
    }
    workflow = _workflow(bundle_dir, configs, **override)
    _run(workflow)
    return json.loads((output / "metrics" / "metrics.json").read_text(encoding="utf-8"))


@dataclass
class PredictionReport:
    """What ``predict`` or ``explain`` wrote, the inputs done, and the inputs that failed (with the one-line reason)."""

    written: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _checkpoint(
    bundle_dir: Path, checkpoint: str | Path | None, configs: Sequence[str], overrides: dict[str, Any] | None = None
) -> Path:
    """The weights to load: ``checkpoint``, else the bundle's shipped ``models/model.pt``, checked to fit the network.

    The check reads the file with ``weights_only=True`` and compares its keys and shapes with the ``network_def``
    of the bundle's ``configs`` and ``overrides`` (bundles without one are not checked), so that weights of another
    network are a one-line error naming what differs rather than a traceback from the engine's checkpoint loader.
    Ensemble weights are checked against an ensemble of that network
    (:func:`pipelines.networks.ensemble.fit_to_weights`, which the configs of a bundle shipping one use as well).
    """
    from monai.bundle import ConfigParser

    from pipelines.io.weights import check_weights
    from pipelines.networks.ensemble import fit_to_weights

    ckpt = Path(checkpoint) if checkpoint else bundle_dir / "models" / "model.pt"
    if not ckpt.is_file():
        raise InputError(ckpt, "no such checkpoint" if checkpoint else "this bundle ships no weights; pass --checkpoint")
    parser = ConfigParser()
    parser.read_config(config_files(bundle_dir, configs))
    parser.update({"bundle_root": str(bundle_dir), **(overrides or {})})
    if "network_def" in parser:
        check_weights(ckpt, fit_to_weights(parser.get_parsed_content("network_def"), ckpt))
    return ckpt


def load_network(bundle: str | Path, checkpoint: str | Path | None = None, key: str = "model") -> Any:
    """A bundle's ``network_def`` (its train.json, layered on its base bundle's) with weights, in eval mode on the CPU.

    Args:
        bundle: bundle name or folder.
        checkpoint: the weights (a bare state dict, or a checkpoint holding it under ``key``, read with
            ``weights_only=True``); default the bundle's shipped ``models/model.pt``.
        key: the network's name in a resumable checkpoint.

    Raises:
        InputError: no such bundle or file, an unreadable file, or weights of another network.
    """
    from monai.bundle import ConfigParser

    from pipelines.io.weights import load_weights
    from pipelines.networks.ensemble import fit_to_weights

    bundle_dir = resolve_bundle(bundle)
    ckpt = _checkpoint(bundle_dir, checkpoint, ["train.json"])
    parser = ConfigParser()
    parser.read_config(config_files(bundle_dir, ["train.json"]))
    parser.update({"bundle_root": str(bundle_dir)})
    network = fit_to_weights(parser.get_parsed_content("network_def"), ckpt, key)
    state = load_weights(ckpt)
    network.load_state_dict(state[key] if isinstance(state.get(key), dict) else state)
    return network.eval()


def _tag_run(tracking_uri: str | None, run_id: str, tags: dict[str, str]) -> None:
    """Tag a run logged outside the bundle workflows (``measure``); the bundle tags of ``tags`` are left out."""
    import mlflow

    from pipelines.handlers.mlflow_run import TRACKING_ERRORS, bounded_http

    tags = {k: v for k, v in tags.items() if not k.startswith("pipelines.bundle")}
    with bounded_http():  # a server that went away costs seconds
        try:
            client = mlflow.MlflowClient(tracking_uri=tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
        except TRACKING_ERRORS as exc:
            logger.warning("MLflow run %s was not tagged (%s)", run_id, type(exc).__name__)


def _register_trained_model(bundle_dir: Path, output: Path) -> str | None:
    """Log the training's best checkpoint into its MLflow run (recorded in ``<output>/mlflow_run.json``) as a
    PyTorch model and register it as a new version of the bundle's model; return ``name/version``, or None (with a
    warning) when the bundle declares no input shape, or the weights or the store fail: the training is done."""
    import mlflow

    from pipelines.handlers.mlflow_run import TRACKING_ERRORS, bounded_http
    from pipelines.model_registry import SHA_TAG, input_shape, log_and_register
    from pipelines.tracking import RUN_FILE
    from pipelines.tracking_tags import bundle_version, file_sha256

    run_file, weights = output / RUN_FILE, output / "models" / "model.pt"
    shape = input_shape(bundle_dir)
    if not (run_file.is_file() and weights.is_file() and shape):
        return None
    record = json.loads(run_file.read_text(encoding="utf-8"))
    with bounded_http():  # a server that went away costs seconds
        try:
            client = mlflow.MlflowClient(tracking_uri=record["tracking_uri"])
            if client.get_run(record["run_id"]).info.status != "FINISHED":  # tracking was lost mid-run
                return None
            tags = {SHA_TAG: file_sha256(weights), "pipelines.bundle_version": bundle_version(bundle_dir)}
            version = log_and_register(client, record["run_id"], load_network(bundle_dir, weights), shape,
                                       bundle_dir.name, tags)
        except (*TRACKING_ERRORS, PipelineError, RuntimeError, KeyError, ValueError, TypeError,
                AttributeError) as exc:
            logger.warning("the trained model was not logged to MLflow (%s: %s)", type(exc).__name__,
                           " ".join(str(exc).split())[:300])
            return None
    return f"{bundle_dir.name}/{version.version}"


def register(bundle: str | Path, tracking_uri: str | None = None, alias: str = "shipped") -> dict[str, Any]:
    """Register the bundle's shipped ``models/model.pt`` as a new version of the model named after the bundle.

    A run ``<bundle> register`` in the bundle's experiment holds the logged MLflow PyTorch model; the version is
    tagged with the checkpoint's sha256, the bundle version and the ``eval_metrics`` of ``metadata.json``
    (``eval.mean_dice``...), and ``alias`` points at it (``models:/<bundle>@shipped``).

    Args:
        bundle: bundle name or folder.
        tracking_uri: the store or server (default ``MLFLOW_TRACKING_URI``; one of the two is needed).
        alias: the registered model alias set on the new version.

    Returns:
        ``{"model", "version", "alias", "run_id", "checkpoint_sha256", "tracking_uri"}``.
    """
    import mlflow

    from pipelines.handlers.mlflow_run import TRACKING_ERRORS, bounded_http
    from pipelines.model_registry import SHA_TAG, input_shape, log_and_register
    from pipelines.tracking import experiment_id
    from pipelines.tracking_tags import file_sha256

    bundle_dir = resolve_bundle(bundle)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise PipelineError("name the tracking store: --tracking-uri URI or MLFLOW_TRACKING_URI")
    weights = _checkpoint(bundle_dir, None, ["train.json"])
    shape = input_shape(bundle_dir)
    if shape is None:
        raise PipelineError(f"{bundle_dir.name}: metadata.json declares no image input shape to register a model by")
    meta = json.loads((bundle_dir / "configs" / "metadata.json").read_text(encoding="utf-8"))
    sha = file_sha256(weights)
    name = _config_values(bundle_dir, ["train.json"], experiment_name=bundle_dir.name)["experiment_name"]
    tags = run_tags(bundle_dir, "register", checkpoint=weights, checkpoint_sha256=sha)
    version_tags = {SHA_TAG: sha, "pipelines.bundle_version": tags.get("pipelines.bundle_version", ""),
                    **{f"eval.{k}": str(v) for k, v in meta.get("eval_metrics", {}).items()}}
    with bounded_http():  # a server that went away costs seconds
        try:
            client = mlflow.MlflowClient(tracking_uri=uri)
            name_of_run = run_name(bundle_dir.name, "register")
            run = client.create_run(experiment_id(client, name), run_name=name_of_run, tags=tags)
            version = log_and_register(client, run.info.run_id, load_network(bundle_dir, weights), shape,
                                       bundle_dir.name, version_tags, alias=alias)
            client.set_terminated(run.info.run_id)
        except TRACKING_ERRORS as exc:
            raise PipelineError(f"MLflow at {uri}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from exc
    return {"model": bundle_dir.name, "version": version.version, "alias": alias, "run_id": run.info.run_id,
            "checkpoint_sha256": sha, "tracking_uri": uri}


def _run_on_images(
    bundle_dir: Path,
    input: str | Path,  # noqa: A002 - mirrors the CLI's --input
    output: Path,
    configs: Sequence[str],
    outputs_of: Callable[[str, Path], list[Path]],
    overwrite: bool,
    tracking_uri: str | None,
    override: dict[str, Any],
    log_outputs: bool = False,
    allow_cine: bool = False,
    command: str = "predict",
) -> PredictionReport:
    """Run an image-to-files bundle config (``inference.json``, ``explain.json``) on every image in ``input``.

    Each image is first made a validated NIfTI file (converted with SimpleITK into a temporary folder when it is
    DICOM, NRRD or MHA) and becomes an item ``{"image": path, "name": unique name}`` of the config's
    ``input_items``. ``outputs_of(name, nifti)`` lists the files an item will write. An input is skipped, with a
    logged one-line error, when it is unreadable or invalid, when its grid is not one the bundle accepts (the
    config's ``input_grid``, :func:`pipelines.io.input_grid.check_input_grid`), when one of its files exists
    (unless ``overwrite``), or when a file would land outside ``output``; the others are run
    (:func:`pipelines.batch.run_carrying_on`), and one failing during the run loses only its own files. The run is
    logged to MLflow only when ``tracking_uri`` or ``MLFLOW_TRACKING_URI`` names a store, with the written files as
    artifacts if ``log_outputs``.

    With ``allow_cine``, a 4D input (a 4D NIfTI file, or a DICOM cine series) is split into its time frames, the
    bundle runs on the frames, and each output is stacked back into one 4D file with the input's header
    (:mod:`pipelines.io.frames`); a cine fails as a whole if any of its frames fails.

    A tracked run is named ``<bundle> <command>`` and tagged with the checkpoint (``override["ckpt_path"]``) and the
    content digest of the inputs it reads (:func:`pipelines.tracking_tags.files_digest`).
    """
    from pipelines.batch import WorkItem, run_carrying_on
    from pipelines.io.frames import is_cine
    from pipelines.io.images import discover_inputs, to_nifti
    from pipelines.io.input_grid import check_input_grid

    report = PredictionReport()
    inputs = discover_inputs(input)
    grid = _config_values(bundle_dir, configs, input_grid=None)["input_grid"]
    # tracked only when a tracking server is named: keep the output folder to the images
    track = bool(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))
    ckpt = Path(override["ckpt_path"]) if track and override.get("ckpt_path") else None
    provenance = _provenance(bundle_dir, command, checkpoint=ckpt, tracking_uri=tracking_uri) if track else {}

    def builder(folder: Path) -> Callable[[Sequence[WorkItem]], ConfigWorkflow]:
        def build(remaining: Sequence[WorkItem]) -> ConfigWorkflow:
            settings = {
                "output_dir": str(folder.resolve()),
                "input_items": [work.item for work in remaining],
                "overwrite": overwrite,
                **provenance,
                **override,
                **_tracking(tracking_uri),
            }
            if track:  # the inputs this workflow reads, by name and content
                inputs = files_digest({w.item["name"]: w.item["image"] for w in remaining}, str(Path(input).resolve()))
                tags = {**provenance["run_tags"], "pipelines.dataset_digest": inputs.digest}
                settings.update(run_tags=tags, run_datasets=[inputs.as_dict()])
            if log_outputs:
                settings["tracked_artifacts"] = [str(p.resolve()) for work in remaining for p in work.outputs]
            return _workflow(bundle_dir, configs, track=track, **settings)

        return build

    from pipelines.handlers.mlflow_run import ending_runs_on_error

    with ending_runs_on_error(), tempfile.TemporaryDirectory(prefix="pipelines-") as work:
        pending: list[WorkItem] = []
        cines: list[tuple[WorkItem, Path]] = []
        for image in inputs:
            try:
                nifti = to_nifti(image, Path(work))
                cine = is_cine(nifti)
                if cine and not allow_cine:
                    raise InputError(image.source, "a 4D cine; this command takes 3D frames (split it first)")
                check_input_grid(nifti, image.source, grid)
                targets = outputs_of(image.name, nifti)
                _check_targets(image.source, image.name, targets, output, overwrite)
            except PipelineError as exc:
                report.failed[str(image.source)] = str(exc)
                logger.error("%s", exc)
                continue
            work_item = WorkItem({"image": str(nifti), "name": image.name}, str(image.source), tuple(targets))
            if cine:
                cines.append((work_item, nifti))
            else:
                pending.append(work_item)
        if pending or cines:
            writable_dir(output)
        if pending:
            outcome = run_carrying_on(pending, builder(output))
            report.written += [path for work in outcome.done for path in work.outputs]
            report.done += [work.source for work in outcome.done]
            report.failed.update(outcome.failed)
        for index, (cine_item, nifti) in enumerate(cines):
            try:
                written = _run_on_cine(cine_item, nifti, Path(work) / f"cine{index}", outputs_of, builder, overwrite)
            except PipelineError as exc:
                report.failed[cine_item.source] = str(exc)
                logger.error("%s", exc)
                continue
            report.written += written
            report.done.append(cine_item.source)
    return report


def _run_on_cine(
    cine_item: Any,
    nifti: Path,
    work: Path,
    outputs_of: Callable[[str, Path], list[Path]],
    builder: Callable[[Path], Callable[[Sequence[Any]], ConfigWorkflow]],
    overwrite: bool,
) -> list[Path]:
    """Run the bundle on every frame of the 4D file ``nifti`` and stack each output back into 4D; return the files.

    The frames' outputs go to a scratch folder; only complete 4D files reach ``cine_item.outputs`` (in the user's
    output folder), each written atomically.

    Raises:
        PipelineError: a frame failed (naming the input and the frame).
    """
    from pipelines.batch import WorkItem, run_carrying_on
    from pipelines.io.frames import merge_frames, split_frames

    name = cine_item.item["name"]
    frames = split_frames(nifti, work / "frames", name)
    frame_out = work / "outputs"
    frame_out.mkdir(parents=True, exist_ok=True)
    items = []
    for k, frame in enumerate(frames):
        frame_name = f"{name}_t{k:03d}"
        targets = [frame_out / path.name.replace(name, frame_name, 1) for path in outputs_of(name, nifti)]
        items.append(WorkItem({"image": str(frame), "name": frame_name}, f"{cine_item.source} (frame {k})", tuple(targets)))
    logger.info("%s: a cine of %d frames; predicting frame by frame", cine_item.source, len(frames))
    outcome = run_carrying_on(items, builder(frame_out))
    if outcome.failed:
        raise PipelineError(next(iter(outcome.failed.values())))
    for j, final in enumerate(cine_item.outputs):
        merge_frames([work.outputs[j] for work in items], nifti, final, overwrite=overwrite)
    return list(cine_item.outputs)


def _check_targets(source: Path, name: str, targets: Sequence[Path], output: Path, overwrite: bool) -> None:
    """Raise unless every file in ``targets`` is directly in ``output`` and, without ``overwrite``, absent."""
    folder = output.resolve()
    for target in targets:
        if target.resolve().parent != folder:
            raise InputError(source, f"output name {name!r} would write {target} outside {output}; refusing it")
    existing = [target for target in targets if target.exists()]
    if existing and not overwrite:
        raise OutputExistsError(existing[0])


def predict(
    bundle: str | Path,
    input: str | Path,  # noqa: A002 - mirrors the CLI's --input
    output: str | Path,
    checkpoint: str | Path | None = None,
    overwrite: bool = False,
    probabilities: bool = False,
    tracking_uri: str | None = None,
    overrides: dict[str, Any] | None = None,
    uncertainty: bool = False,
    measure: bool = False,
    basal_rv_min_ratio: float | None = BASAL_RV_MIN_RATIO,
) -> PredictionReport:
    """Run a bundle's ``inference.json`` on a NIfTI file, or every image / DICOM series in a folder.

    A segmentation bundle writes ``<output>/<name>_seg.nii.gz`` (and ``_prob`` with ``probabilities``); a bundle
    whose inference config sets ``output_postfix`` writes ``<name>_<postfix>.nii.gz`` instead (``mr_to_ct_cyclegan``:
    ``_sct``, a synthetic CT). Outputs have the input's exact affine, shape and spacing. Inputs that are not NIfTI
    (DICOM, NRRD, MHA) are converted with SimpleITK first. An input whose output exists already is skipped and
    reported unless ``overwrite``; unreadable inputs are reported and the others still processed. The run is
    logged to MLflow only when ``tracking_uri`` or ``MLFLOW_TRACKING_URI`` names a store.

    ``uncertainty`` (bundles that offer it) also writes ``<name>_uncertainty.nii.gz``: the voxel-wise normalised
    entropy of the flip-averaged softmax (:mod:`pipelines.transforms.entropy`), 0 certain to 1 uniform.

    ``measure`` (implies ``uncertainty``) then measures cardiac function on the outputs
    (:func:`measure_predictions`): every 4D label map, and every pair of 3D frames named ``<case>_ed...`` /
    ``<case>_es...``, into ``<output>/measures/``, with the basal end-systolic RV slice rule
    (:mod:`pipelines.measure.basal`) at ``basal_rv_min_ratio`` (``None`` or 0: the labels as predicted).

    A 4D input (a 4D NIfTI cine, or a DICOM cine series with several images per slice position) is predicted frame
    by frame and written as one 4D file (x, y, z, t) with the input's geometry. A bundle that declares the grid it
    accepts (``input_grid``: the Sunnybrook-crop bundles) refuses other images before anything is written.
    """
    bundle_dir = resolve_bundle(bundle)
    configs = COMMAND_CONFIGS["predict"]
    ckpt = _checkpoint(bundle_dir, checkpoint, configs, overrides)
    output = Path(output)
    postfix = _config_values(bundle_dir, configs, output_postfix=None)["output_postfix"]
    if postfix is not None and probabilities:
        raise PipelineError(f"{bundle_dir.name} writes no probability maps (it is not a segmentation bundle)")
    if uncertainty and _config_values(bundle_dir, configs, save_uncertainty=None)["save_uncertainty"] is None:
        raise PipelineError(f"{bundle_dir.name} writes no uncertainty maps (use cardiac_sax_segmentation)")
    uncertainty = uncertainty or measure
    postfixes = [postfix] if postfix is not None else ["seg", *(["prob"] if probabilities else [])]
    postfixes += ["uncertainty"] if uncertainty else []

    def outputs_of(name: str, nifti: Path) -> list[Path]:
        return [output / f"{name}_{fix}.nii.gz" for fix in postfixes]

    override = {"ckpt_path": str(ckpt.resolve()), **(overrides or {})}
    if postfix is None:
        override["save_probabilities"] = probabilities
    if uncertainty:
        override["save_uncertainty"] = True
    report = _run_on_images(
        bundle_dir, input, output, configs, outputs_of, overwrite, tracking_uri, override, allow_cine=True
    )
    if measure and report.written:
        measured = measure_predictions(report.written, output / "measures", overwrite=overwrite,
                                       basal_rv_min_ratio=basal_rv_min_ratio or None)
        report.written += measured.written
        report.failed.update(measured.failed)
    return report


def measure_predictions(
    written: Sequence[Path], output: Path, overwrite: bool = False, basal_rv_min_ratio: float | None = None
) -> PredictionReport:
    """Measure cardiac function on ``predict``'s label maps: each 4D ``<name>_seg`` (:func:`measure_cine`), and
    each pair of 3D ``<case>_ed..._seg`` / ``<case>_es..._seg`` frames (:func:`measure_pair`).

    Next to ``measures.csv`` it writes ``uncertainty.csv``: per case the model's uncertainty at the ED and ES
    frames and their mean (:mod:`pipelines.measure.uncertainty`). 3D frames that pair with nothing are logged and
    left unmeasured (one frame has no ejection fraction). A case that fails is reported; the others are measured.
    """
    import csv
    import io
    import re

    import nibabel as nib

    from pipelines.measure import measure_cine, measure_pair
    from pipelines.measure.uncertainty import frame_uncertainty

    report = PredictionReport()
    segs = [Path(p) for p in written if str(p).endswith("_seg.nii.gz")]
    pairs: dict[str, dict[str, Path]] = {}
    jobs: list[tuple[str, Callable[[], dict[str, Any]], Path, Path]] = []
    for seg in segs:
        name = seg.name[: -len("_seg.nii.gz")]
        if len(nib.load(seg).shape) == 4:
            jobs.append((name, lambda seg=seg, name=name: measure_cine(
                seg, output, case=name, overwrite=overwrite, basal_rv_min_ratio=basal_rv_min_ratio), seg, seg))
            continue
        match = re.match(r"^(.*?)_(ed|es)(?:_.*)?$", name, flags=re.IGNORECASE)
        if match:
            pairs.setdefault(match.group(1), {})[match.group(2).lower()] = seg
        else:
            logger.warning("%s: a single 3D frame; measures need a cine or an ED / ES pair (pipelines measure "
                           "--ed ED --es ES)", seg)
    for case, pair in sorted(pairs.items()):
        if set(pair) != {"ed", "es"}:
            logger.warning("%s: no %s frame to pair with; not measured", case, "ES" if "ed" in pair else "ED")
            continue
        jobs.append((case, lambda case=case, pair=pair: measure_pair(
            pair["ed"], pair["es"], output, case=case, overwrite=overwrite, basal_rv_min_ratio=basal_rv_min_ratio),
            pair["ed"], pair["es"]))
    rows = []
    for case, run, ed_seg, es_seg in jobs:
        try:
            result = run()
        except PipelineError as exc:
            report.failed[case] = str(exc)
            logger.error("%s", exc)
            continue
        report.written += [Path(p) for p in result["written"]]
        report.done.append(case)
        unc = {}
        for frame, seg in (("ed", ed_seg), ("es", es_seg)):
            index = int(result["row"][f"{frame}_frame"]) - 1 if ed_seg == es_seg else None  # a cine's frame
            unc[frame] = frame_uncertainty(seg, seg.with_name(seg.name.replace("_seg.nii.gz", "_uncertainty.nii.gz")),
                                           index)
        rows.append({"case": case, "uncertainty_ed": f"{unc['ed']:.4f}", "uncertainty_es": f"{unc['es']:.4f}",
                     "uncertainty": f"{(unc['ed'] + unc['es']) / 2:.4f}"})
    if rows:
        table = output / "uncertainty.csv"
        new = {row["case"] for row in rows}
        if table.is_file():  # keep the rows of cases measured before
            with table.open(encoding="utf-8", newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if row.get("case") not in new] + rows
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["case", "uncertainty_ed", "uncertainty_es", "uncertainty"])
        writer.writeheader()
        writer.writerows(rows)
        report.written.append(atomic_write_text(table, buffer.getvalue()))
    return report


def explain(
    bundle: str | Path,
    input: str | Path,  # noqa: A002 - mirrors the CLI's --input
    output: str | Path,
    checkpoint: str | Path | None = None,
    overwrite: bool = False,
    patch_size: int | None = None,
    stride: int | None = None,
    occlusion: str | None = None,
    batch_size: int | None = None,
    bbox: Sequence[int] | None = None,
    score: str | None = None,
    tracking_uri: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> PredictionReport:
    """Occlusion sensitivity maps of a segmentation bundle for a NIfTI file or every image in a folder.

    Runs the bundle's ``explain.json`` (see :mod:`pipelines.interpret.occlusion` for the maths) and writes, per
    input, ``<output>/<name>_occlusion.nii.gz`` (float32, the input's exact header) and one PNG per slice,
    ``<name>_occlusion_z<k>.png`` (image, predicted contour, heat map with a colour bar). Inputs, overwriting and
    tracking are handled as in :func:`predict`; when tracked, the maps and figures are logged as artifacts.

    Args:
        bundle: bundle name or folder (must have ``configs/explain.json``).
        input: an image file or a folder of images / DICOM series.
        output: folder of the maps and figures.
        checkpoint: model weights; default the bundle's shipped ``models/model.pt``.
        overwrite: replace existing outputs.
        patch_size: occluding patch side in pixels of the network's grid.
        stride: distance between patches in pixels (overlap ``1 - stride / patch_size``).
        occlusion: what a patch is replaced with: ``mean``, ``blur`` or ``zero``.
        batch_size: occluded copies per forward pass (bounds memory).
        bbox: ``[row_min, row_max, col_min, col_max]`` (inclusive, -1 = image edge) limiting the patches evaluated.
        score: the segmentation score occlusion perturbs: ``dice`` or ``mean_probability``.
        tracking_uri: MLflow tracking URI (default ``MLFLOW_TRACKING_URI``; untracked when neither is set).
        overrides: further config values by id (``pipelines explain --set``); the named options above win.

    Options left as None take the bundle config's defaults.
    """
    import nibabel as nib

    from pipelines.transforms.save_figures import slice_suffix

    bundle_dir = resolve_bundle(bundle)
    config_files(bundle_dir, ["explain.json"])  # fails early, naming the file, for a bundle without one
    configs = COMMAND_CONFIGS["explain"]
    ckpt = _checkpoint(bundle_dir, checkpoint, configs, overrides)
    output = Path(output)

    def outputs_of(name: str, nifti: Path) -> list[Path]:
        depth = nib.load(nifti).shape[2]
        figures = [output / f"{name}_occlusion{slice_suffix(k, depth)}" for k in range(depth)]
        return [output / f"{name}_occlusion.nii.gz", *figures]

    options = {
        "occlusion_patch_size": patch_size,
        "occlusion_stride": stride,
        "occlusion_mode": occlusion,
        "occlusion_batch_size": batch_size,
        "occlusion_bbox": list(bbox) if bbox is not None else None,
        "occlusion_score": score,
    }
    override = {**(overrides or {}), "ckpt_path": str(ckpt.resolve()),
                **{k: v for k, v in options.items() if v is not None}}
    return _run_on_images(
        bundle_dir, input, output, configs, outputs_of, overwrite, tracking_uri, override, log_outputs=True,
        command="explain",
    )


def synthesize(
    bundle: str | Path,
    count: int,
    output: str | Path,
    label: str | None = None,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    overwrite: bool = False,
    tracking_uri: str | None = None,
    overrides: dict[str, Any] | None = None,
    data: str | Path | None = None,
) -> dict[str, Any]:
    """Draw ``count`` samples from a generative bundle's ``configs/synthesize.json`` into ``output``.

    The config builds a :class:`pipelines.generate.Synthesizer` as ``synthesizer`` from the values ``count``,
    ``seed``, ``label``, ``overwrite``, ``ckpt_path`` and ``output_dir`` set here; what it writes (PNG images of a
    class, NIfTI image / mask pairs with a datalist) is the bundle's choice, and the same seed gives the same files.
    Weights default to the bundle's shipped ``models/model.pt`` and are checked against its ``network_def``. Existing
    files stop the run before anything is drawn unless ``overwrite``. The run is logged to MLflow only when
    ``tracking_uri`` or ``MLFLOW_TRACKING_URI`` names a store. ``data`` is the prepared dataset of bundles that
    draw from real data (``mr_synthesis_pix2pix`` deforms the masks of its training patients); default the
    bundle's ``dataset_dir``. Returns the summary also saved as ``<output>/synthesis.json``.
    """
    from pipelines.generate import SUMMARY_FILE

    bundle_dir = resolve_bundle(bundle)
    configs = COMMAND_CONFIGS["synthesize"]
    ckpt = _checkpoint(bundle_dir, checkpoint, configs, overrides)
    output = Path(output)
    settings: dict[str, Any] = {
        "output_dir": str(output.resolve()),
        "ckpt_path": str(ckpt.resolve()),
        "count": int(count),
        "seed": int(seed),
        "label": label,
        "overwrite": overwrite,
        **_provenance(bundle_dir, "synthesize", checkpoint=ckpt, tracking_uri=tracking_uri),
        **_tracking(tracking_uri),
        **({"dataset_dir": str(Path(data).resolve())} if data is not None else {}),
        **(overrides or {}),
    }
    track = bool(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))
    _run(_workflow(bundle_dir, configs, track=track, **settings))
    return json.loads((output / SUMMARY_FILE).read_text(encoding="utf-8"))


def measure(
    output: str | Path,
    ed: str | Path | None = None,
    es: str | Path | None = None,
    cine: str | Path | None = None,
    batch: str | Path | None = None,
    case: str | None = None,
    overwrite: bool = False,
    tracking_uri: str | None = None,
    basal_rv_min_ratio: float | None = None,
) -> PredictionReport:
    """Cardiac function from label maps (:mod:`pipelines.measure`): an ED / ES pair, a 4D cine, or a batch folder.

    Writes ``<output>/measures.csv`` (one row per case, added to the rows already there), ``<case>.json`` and the
    figures. A single case that fails raises; in a batch, a failing case is logged and reported in the returned
    report's ``failed`` while the others are written. The run is logged to MLflow only when ``tracking_uri`` or
    ``MLFLOW_TRACKING_URI`` names a store (experiment ``measure``, :mod:`pipelines.measure.tracking`).

    Args:
        output: the output folder.
        ed: the ED label map of a pair (with ``es``).
        es: the ES label map of a pair.
        cine: a 4D label map ``(x, y, z, t)``.
        batch: a folder of cases (:mod:`pipelines.measure.batch`).
        case: the case name of a pair or cine (default: from the file name).
        overwrite: replace existing outputs of the cases measured.
        tracking_uri: MLflow tracking URI (default ``MLFLOW_TRACKING_URI``; untracked when neither is set).
        basal_rv_min_ratio: apply the basal end-systolic RV slice rule (:mod:`pipelines.measure.basal`) with this
            ratio, for a network's labels; ``None`` (default) or 0 measures the labels exactly as they are.

    Raises:
        PipelineError: not exactly one of pair / cine / batch, ``case`` with a batch, an unusable output folder.
        InputError: a bad label map of a single case, or a batch folder without cases.
        OutputExistsError: outputs of a single case exist and ``overwrite`` is False.
    """
    from pipelines.measure import CSV_NAME, measure_batch, measure_cine, measure_pair
    from pipelines.measure.tracking import log_measures, tracking_requested

    if (ed is None) != (es is None):
        raise PipelineError("--ed and --es go together: give both frames of the pair")
    if sum(x is not None for x in (ed, cine, batch)) != 1:
        raise PipelineError("give one input: --ed with --es, --cine, or --batch")
    if batch is not None and case is not None:
        raise PipelineError("--case names a single case; a batch takes its case names from the files")
    output = writable_dir(output)
    report = PredictionReport()
    ratio = basal_rv_min_ratio or None
    if batch is not None:
        result = measure_batch(batch, output, overwrite=overwrite, basal_rv_min_ratio=ratio)
        summaries, report.done, report.failed = result.summaries, result.done, result.failed
    elif cine is not None:
        summaries = [measure_cine(cine, output, case=case, overwrite=overwrite, basal_rv_min_ratio=ratio)]
        report.done.append(str(cine))
    else:
        summaries = [measure_pair(ed, es, output, case=case, overwrite=overwrite,  # type: ignore[arg-type]
                                  basal_rv_min_ratio=ratio)]
        report.done.append(str(ed))
    written = list(dict.fromkeys(path for summary in summaries for path in summary["written"]))
    report.written = [path for path in written if path.name != CSV_NAME] + [p for p in written if p.name == CSV_NAME]
    if summaries and tracking_requested(tracking_uri):
        form = "batch" if batch is not None else ("cine" if cine is not None else "pair")
        inputs = {"batch": batch, "cine": cine, "ed": ed, "es": es}
        params = {"form": form, "cases": str(len(summaries)), "basal_rv_min_ratio": str(ratio),
                  **{k: str(v) for k, v in inputs.items() if v is not None}}
        run_id = log_measures(tracking_uri, "measure", summaries, report.written, params)
        if run_id:
            _tag_run(tracking_uri, run_id, run_tags(Path.cwd(), "measure"))
    return report
