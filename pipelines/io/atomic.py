"""Atomic file writes: write to a temporary file in the target's folder, then ``os.replace`` it into place.

A reader (or a crash) therefore sees either the old file or the complete new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from pipelines.errors import OutputExistsError, PipelineError

__all__ = [
    "atomic_path", "atomic_write_text", "atomic_write_json", "atomic_torch_save", "json_safe", "writable_dir",
]


def writable_dir(path: str | Path) -> Path:
    """Create the folder ``path`` if missing and check that files can be created in it; return ``path``.

    Called before long work (a training run, a batch of predictions) so that an unusable output folder is a
    one-line error at the start rather than a failure after the work is done.

    Raises:
        PipelineError: the folder cannot be created (e.g. a file is in the way) or is not writable.
    """
    path = Path(path)
    _make_folder(path)
    try:
        with tempfile.TemporaryFile(prefix=".write-test.", dir=path):
            pass
    except OSError as exc:
        raise PipelineError(f"{path}: output folder is not writable ({exc.strerror})") from exc
    return path


def _make_folder(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise PipelineError(f"{path}: cannot create output folder (a file of that name is in the way)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipelineError(f"{path}: cannot create output folder ({exc.strerror})") from exc


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = True, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``, on failure delete it.

    Args:
        path: the final file.
        overwrite: if False and ``path`` exists, raise :class:`OutputExistsError` before anything is written.
        suffix: suffix of the temporary file (some writers pick the format from it, e.g. ``.nii.gz``);
            defaults to the final file's suffixes.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise OutputExistsError(path)
    _make_folder(path.parent)
    if suffix is None:
        suffix = "".join(path.suffixes)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as exc:
        raise PipelineError(f"{path.parent}: output folder is not writable ({exc.strerror})") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates the file readable by its owner only; give the result the usual umask-based permissions
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        if not overwrite and path.exists():  # appeared while we were writing
            raise OutputExistsError(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically and return ``path``."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def json_safe(value: Any) -> Any:
    """``value`` with every NaN / infinite float (an undefined HD95, the PSNR of identical images) replaced by
    ``None``, which strict JSON parsers accept as ``null``; dicts, lists and tuples are walked."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: str | Path, obj: Any, overwrite: bool = True) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return ``path``."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", overwrite=overwrite)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically (the file is always a complete checkpoint) and return ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
