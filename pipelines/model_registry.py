"""Trained weights as MLflow PyTorch models in the Model Registry, one registered model per bundle.

- :func:`log_and_register`: log a network as an MLflow PyTorch model (``<run>/model``, with a tensor signature
  from one input of the bundle's shape) and register it as a new version of the model named after the bundle,
  tagged with the checkpoint's sha256 (``pipelines.checkpoint_sha256``) so that a run that loads that file can be
  traced to the version and its training run (the version's ``run_id``).
- :func:`find_version`: the registered version whose checkpoint has a given sha256.

``pipelines train`` logs and registers the best checkpoint of every tracked training; ``pipelines register``
registers a bundle's shipped ``models/model.pt`` with the alias ``shipped`` (:func:`pipelines.api.register`).
The model is saved in MLflow's ``pt2`` format (a ``torch.export`` graph: ``mlflow.pytorch.load_model(
"models:/lv_segmentation_unet@shipped")`` needs neither this package nor pickle), or pickled when the network
cannot be exported (loading it then needs this package importable: the networks are its classes). Its
requirements are pinned to the running torch and MONAI, without asking a package index.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["MODEL_PATH", "SHA_TAG", "input_shape", "log_and_register", "find_version", "version_tags"]

MODEL_PATH = "model"
SHA_TAG = "pipelines.checkpoint_sha256"


def input_shape(bundle_dir: str | Path) -> tuple[int, ...] | None:
    """``(1, channels, *spatial_shape)`` of the ``image`` input in the bundle's ``metadata.json``
    (``network_data_format``; its base bundle's if it declares none), or None without one."""
    from pipelines.api import resolve_bundle

    folder = Path(bundle_dir)
    while True:
        meta = json.loads((folder / "configs" / "metadata.json").read_text(encoding="utf-8"))
        image = meta.get("network_data_format", {}).get("inputs", {}).get("image")
        if image and image.get("spatial_shape"):
            shape = [int(s) for s in image["spatial_shape"] if str(s).lstrip("-").isdigit() and int(s) > 0]
            if len(shape) == len(image["spatial_shape"]):
                return (1, int(image.get("num_channels", 1)), *shape)
            return None
        if not meta.get("base_bundle"):
            return None
        folder = resolve_bundle(meta["base_bundle"])


def _requirements() -> list[str]:
    import monai
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}", f"monai=={monai.__version__}"]


def log_and_register(
    client: Any,
    run_id: str,
    network: Any,
    shape: Sequence[int],
    name: str,
    tags: Mapping[str, str],
    alias: str | None = None,
) -> Any:
    """Log ``network`` into ``run_id`` as an MLflow PyTorch model and register it as a new version of ``name``.

    Args:
        client: an ``mlflow.MlflowClient`` for the store holding the run (SQLite store or server).
        run_id: the run that produced (or, for shipped weights, registers) the weights.
        network: the network with its weights, in eval mode on the CPU.
        shape: one input's shape (``(1, 1, 64, 64)``): the example from which the signature is inferred.
        name: the registered model (the bundle's name); created if missing.
        tags: tags of the new version (at least ``pipelines.checkpoint_sha256``).
        alias: an alias to point at the new version (``shipped``).

    Returns:
        The new ``ModelVersion``.
    """
    import mlflow.pytorch
    import torch
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature

    # two images, so that torch.export keeps the batch dimension free
    example = torch.zeros(2, *shape[1:])
    with torch.no_grad():
        output = network(example)
    signature = infer_signature(example.numpy(), output.numpy())
    with tempfile.TemporaryDirectory(prefix="pipelines-model-") as work:
        folder = Path(work) / MODEL_PATH
        options = {"signature": signature, "pip_requirements": _requirements()}
        try:
            mlflow.pytorch.save_model(network, folder, serialization_format="pt2", input_example=example.numpy(),
                                      **options)
        except Exception as exc:  # noqa: BLE001 - torch.export refuses many constructs; pickling takes them all
            logger.info("the network cannot be exported (%s); logging it pickled", type(exc).__name__)
            shutil.rmtree(folder, ignore_errors=True)
            mlflow.pytorch.save_model(network, folder, serialization_format="pickle", **options)
        client.log_artifacts(run_id, str(folder), MODEL_PATH)
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_PATH}"
    version = client.create_model_version(name, source, run_id=run_id, tags=dict(tags))
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    logger.info("registered %s version %s (run %s)%s", name, version.version, run_id,
                f" as @{alias}" if alias else "")
    return version


def find_version(client: Any, name: str, sha256: str) -> Any:
    """The newest version of registered model ``name`` tagged with checkpoint ``sha256``; None if none (or no such
    model)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    matching = [v for v in versions if v.tags.get(SHA_TAG) == sha256]
    return max(matching, key=lambda v: int(v.version)) if matching else None


def version_tags(tracking_uri: str, name: str, sha256: str) -> dict[str, str]:
    """``pipelines.registered_model`` (``name/version``) and ``pipelines.registered_run_id`` (its training run) for
    the registered version of checkpoint ``sha256``; empty when none is registered or the store does not answer."""
    import mlflow

    from pipelines.handlers.mlflow_run import TRACKING_ERRORS, bounded_http

    try:
        with bounded_http(max_retries=1):
            version = find_version(mlflow.MlflowClient(tracking_uri=tracking_uri), name, sha256)
    except TRACKING_ERRORS as exc:
        logger.warning("could not look up %s in the model registry at %s (%s)", name, tracking_uri,
                       type(exc).__name__)
        return {}
    if version is None:
        return {}
    return {"pipelines.registered_model": f"{name}/{version.version}",
            "pipelines.registered_run_id": str(version.run_id or "")}
