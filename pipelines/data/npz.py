"""Read a dataset's ``.npz`` archive and check that it holds the arrays a converter needs."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.errors import InputError

__all__ = ["load_arrays"]


def load_arrays(path: str | Path, required: Sequence[str], expected_name: str) -> dict[str, np.ndarray]:
    """All arrays of the archive at ``path``, loaded into memory.

    Raises:
        InputError: one line naming ``path``: not a readable archive, or one of ``required`` is missing (the message
            asks whether the file is ``expected_name``).
    """
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(path, f"not a readable .npz archive ({exc.__class__.__name__})") from exc
    missing = [k for k in required if k not in arrays]
    if missing:
        raise InputError(path, f"missing arrays {missing}; is this {expected_name}?")
    return arrays
