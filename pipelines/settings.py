"""Config settings given on the command line: ``pipelines train BUNDLE ... --set KEY=VALUE``.

A setting replaces one value of the bundle's layered configs, the way ``python -m monai.bundle run --KEY VALUE``
does: ``KEY`` is a config id with ``#`` between levels (``num_epochs``, ``validate#tta_inferer#flip_axes``), and
``VALUE`` is read as JSON (``5``, ``0.5``, ``true``, ``null``, ``[0, 1]``, ``{"a": 1}``) or, when it is not
JSON, taken as a plain string (a path such as ``runs/syn/datalist.json``).

A mistyped key would otherwise add a value that nothing reads, and the run would silently use the default, so a
key is accepted only if the configs the command layers already hold it, or if it adds an argument to a component
that exists (its parent id is a dict: ``validate#tta_inferer#transpose_axes``). A new top-level key is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pipelines.errors import PipelineError

__all__ = ["COMMAND_CONFIGS", "parse_setting", "check_settings"]

#: the configs each command layers, in order (after the base bundle's configs of the same names)
COMMAND_CONFIGS: dict[str, list[str]] = {
    "train": ["train.json"],
    "evaluate": ["train.json", "evaluate.json"],
    "predict": ["train.json", "inference.json"],
    "explain": ["train.json", "explain.json"],
    "synthesize": ["train.json", "synthesize.json"],
}


def parse_setting(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(KEY, VALUE read as JSON, else the string)``; a one-line error without ``=`` or key."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise PipelineError(f"--set {text!r}: expected KEY=VALUE (for example num_epochs=40)")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def check_settings(config_files: Sequence[str], settings: Mapping[str, Any]) -> None:
    """Refuse settings whose key the layered ``config_files`` neither hold nor can take (see the module doc)."""
    from monai.bundle import ConfigParser

    if not settings:
        return
    parser = ConfigParser()
    parser.read_config(list(config_files))
    for key in settings:
        if key in parser:
            continue
        parent, sep, _ = key.rpartition("#")
        if sep and parent in parser and isinstance(parser[parent], dict):
            continue
        where = f"{parent!r} is not a component of" if sep and parent in parser else "no such key in"
        raise PipelineError(f"--set {key}: {where} the bundle's configs ({', '.join(_names(config_files))})")


def _names(files: Sequence[str]) -> list[str]:
    """``.../bundles/x/configs/train.json`` -> ``x/train.json``, for the error message."""
    parts = [str(f).replace("\\", "/").split("/") for f in files]
    return [f"{p[-3]}/{p[-1]}" if len(p) >= 3 else p[-1] for p in parts]
