"""Reading model weights safely and checking that they fit a network before a workflow runs.

:func:`load_weights` reads a checkpoint with ``torch.load(weights_only=True)``, so a file can hold tensors and plain
values but never code; anything else is a one-line :class:`~pipelines.errors.InputError`. :func:`check_weights` reads
the weights the way MONAI's ``CheckpointLoader`` (``load_dict={"model": network}``, strict) would and lists the keys
and shapes that differ, instead of a traceback from ``load_state_dict`` deep inside an engine.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from pipelines.errors import InputError

__all__ = ["load_weights", "check_weights"]

SHOWN = 3  # differences named per kind in a message; the rest are counted


def load_weights(path: str | Path) -> Mapping[str, object]:
    """Load a checkpoint file on the CPU with ``weights_only=True``.

    Args:
        path: a file written by ``torch.save`` (a bare state dict, or a dict of state dicts).

    Returns:
        The loaded mapping.

    Raises:
        InputError: the file is missing, truncated or corrupt, holds objects other than tensors and plain values
            (refused rather than unpickled), or is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(exc)
        if "Unsupported global" not in detail:  # not a pickle torch can read, rather than one calling code
            raise InputError(path, f"not a readable checkpoint (UnpicklingError: {detail})") from exc
        problem = f"refusing to load: holds objects other than weights (weights_only=True: {detail})"
        raise InputError(path, problem) from exc
    except Exception as exc:  # noqa: BLE001 - torch raises anything from KeyError to RuntimeError on a broken file
        raise InputError(path, f"not a readable checkpoint ({_reason(exc)})") from exc
    if not isinstance(state, Mapping):
        raise InputError(path, f"not a checkpoint: holds a {type(state).__name__}, expected a state dict")
    return state


def check_weights(path: str | Path, network: torch.nn.Module, key: str = "model") -> None:
    """Raise :class:`InputError` unless ``path``'s weights load strictly into ``network``.

    Like Ignite's ``Checkpoint.load_objects`` with a single object, the state dict is ``checkpoint[key]`` when the
    checkpoint has that key (a resumable checkpoint), else the checkpoint itself (a bare ``model.pt``).

    Args:
        path: the checkpoint file.
        network: the bundle's network, built from its ``network_def``.
        key: the name the network has in the checkpoint loader's ``load_dict``.

    Raises:
        InputError: unreadable (see :func:`load_weights`), or keys missing, unexpected or of another shape; the
            message names up to three of each and the network's class.
    """
    state = load_weights(path)
    if isinstance(state.get(key), Mapping):
        state = state[key]
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {_shape(state[k])} != {tuple(expected[k].shape)}"
        for k in expected
        if k in state and _shape(state[k]) != tuple(expected[k].shape)
    ]
    kinds = (
        (missing, "missing keys"), (unexpected, "unexpected keys"), (shapes, "other shapes (checkpoint != network)")
    )
    problems = [_listed(items, label) for items, label in kinds if items]
    if problems:
        raise InputError(
            path, f"weights do not fit the bundle's network {type(network).__name__}: {'; '.join(problems)}"
        )


def _shape(value: object) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _listed(items: list[str], label: str) -> str:
    shown = ", ".join(items[:SHOWN])
    more = f", and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return f"{len(items)} {label} ({shown}{more})"


def _reason(exc: BaseException) -> str:
    """``Type: first sentence of the message`` (torch's messages run to paragraphs), or ``Type`` alone."""
    text = " ".join(str(exc).split())
    sentence = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
    return f"{type(exc).__name__}: {sentence}" if sentence else type(exc).__name__


def _unpickler_detail(exc: BaseException) -> str:
    """What the weights-only unpickler refused (``Unsupported global: GLOBAL builtins.print ...``)."""
    match = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
    if not match:
        return _reason(exc)
    # the first sentence only: the next ones explain how to allow the global, which is not advice to give here
    return re.split(r"(?<=\.)\s", match.group(1).strip(), maxsplit=1)[0].rstrip(".")
