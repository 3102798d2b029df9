"""Locating a dataset's source file: an explicit path, a folder in ``PIPELINES_DATA``, or a verified download.

Lookup order (first hit wins):

1. ``--source PATH`` given by the user (a file, or a folder holding the file);
2. each folder listed in the ``PIPELINES_DATA`` environment variable (``os.pathsep``-separated);
3. the public URL, downloaded into a cache folder with :func:`monai.apps.download_url`.

Every file, whichever way it was found, must match the published sha256 before it is used.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import ChecksumError, InputError, PipelineError

logger = logging.getLogger(__name__)

DATA_ENV = "PIPELINES_DATA"
CACHE_ENV = "PIPELINES_CACHE"


@dataclass(frozen=True)
class DatasetSource:
    """A published dataset file.

    Args:
        filename: the file's name, as looked for in folders.
        url: where the public original can be downloaded.
        sha256: the published checksum of that file.
    """

    filename: str
    url: str
    sha256: str


def sha256sum(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> Path:
    """Raise :class:`ChecksumError` unless the file's sha256 equals ``expected``; return the path."""
    actual = sha256sum(path)
    if actual != expected.lower():
        raise ChecksumError(path, expected, actual)
    return Path(path)


def _candidate(path: Path, filename: str) -> Path:
    return path / filename if path.is_dir() else path


def _download(source: DatasetSource) -> Path:
    """Download ``source`` into the cache folder, verified by sha256 (needs internet; not used by the tests)."""
    from monai.apps import download_url

    cache = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "monai-pipelines"))
    target = cache / source.filename
    logger.info("downloading %s to %s", source.url, target)
    try:
        download_url(source.url, filepath=str(target), hash_val=source.sha256, hash_type="sha256")
    except (OSError, RuntimeError, ValueError) as exc:
        raise PipelineError(
            f"{source.url}: download failed ({exc}); pass --source PATH or set {DATA_ENV} to a folder holding "
            f"{source.filename}"
        ) from exc
    return verify_sha256(target, source.sha256)


def resolve_source(source: DatasetSource, explicit: str | Path | None = None, download: bool = True) -> Path:
    """Find ``source`` on disk (or download it) and return its verified path.

    Args:
        source: the published file to find.
        explicit: a path given by the user: the file itself or a folder holding it.
        download: whether to fall back to downloading when no local copy is found.

    Raises:
        InputError: the explicit path does not exist or does not hold the file.
        ChecksumError: the file found does not match the published sha256.
        PipelineError: nothing found and downloading is off or failed.
    """
    if explicit is not None:
        path = _candidate(Path(explicit), source.filename)
        if not path.is_file():
            raise InputError(path, "no such file")
        return verify_sha256(path, source.sha256)
    for folder in filter(None, os.environ.get(DATA_ENV, "").split(os.pathsep)):
        path = Path(folder) / source.filename
        if path.is_file():
            logger.info("using %s (from %s)", path, DATA_ENV)
            return verify_sha256(path, source.sha256)
    if not download:
        raise PipelineError(f"{source.filename}: not found; pass --source PATH or set {DATA_ENV}")
    return _download(source)


def resolve_local_source(source: DatasetSource, explicit: str | Path | None, reason: str) -> Path:
    """:func:`resolve_source` for a file that is never downloaded; ``reason`` says why, in the not-found error.

    Raises:
        InputError: the explicit path does not exist or does not hold the file.
        ChecksumError: the file found does not match the published sha256.
        PipelineError: ``{filename}: not found; {reason}, so pass --source PATH or set PIPELINES_DATA ...``.
    """
    try:
        return resolve_source(source, explicit, download=False)
    except PipelineError as exc:
        if type(exc) is not PipelineError:  # a bad --source path or a checksum mismatch says so itself
            raise
        raise PipelineError(
            f"{source.filename}: not found; {reason}, so pass --source PATH or set {DATA_ENV} to a folder holding it"
        ) from exc
