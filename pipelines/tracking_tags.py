"""What a tracked run records about itself, so that a reviewer can trace a result to its code, data and weights.

Plain functions, no MLflow: :mod:`pipelines.api` computes these values once per run and hands them to
:class:`pipelines.handlers.MLFlowRunHandler` as run tags (``pipelines.*``) and dataset inputs.

- :func:`run_name`: ``lv_segmentation_unet train fold 2``, ``lv_segmentation_unet evaluate test``, ``... predict``.
- :func:`git_commit`: the package's git commit (``+dirty`` with uncommitted changes), else its version.
- :func:`datalist_digest`: a content digest of the part of a datalist a run reads. For each subset it is

  ``sha256(canonical JSON {split, subset, cases} + for each file: its datalist-relative name and sha256(bytes))``

  where ``cases`` are the subset's datalist entries with paths relative to the datalist's folder (a path outside
  it by its file name only). It changes when one voxel of one input changes and not when the prepared folder is
  moved or renamed. The run's digest is the sha256 of the subsets' digests (:func:`combine_digests`).
- :func:`files_digest`: the same for loose input files (``predict``), keyed by their names.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import json
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ARGV", "TAG", "DatasetDigest", "bundle_version", "combine_digests", "command_line", "datalist_digest",
    "device_name", "file_sha256", "files_digest", "git_commit", "run_name", "run_tags", "split_label",
]

#: prefix of every tag the pipelines set
TAG = "pipelines."
#: MLflow's input context per datalist subset
CONTEXTS = {"train": "training", "validation": "validation", "test": "test"}
_CHUNK = 1 << 20
#: the command line's arguments while :func:`pipelines.cli.main` runs (None when called as a library)
ARGV: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("pipelines_argv", default=None)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def git_commit(repo: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` of the repository holding ``repo`` (default: this package), with ``+dirty`` when
    ``git status --porcelain`` lists anything; the package version (``0.1.0``) outside a git checkout.

    Cached per process: a long session that edits the code keeps the commit it started with.
    """
    from pipelines import __version__

    folder = Path(repo) if repo is not None else Path(__file__).resolve().parent
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True,
                                  timeout=20).stdout.strip()

        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{commit}+dirty" if dirty else commit


def bundle_version(bundle_dir: str | Path) -> str:
    """The ``version`` of the bundle's ``configs/metadata.json`` (empty when it has none)."""
    meta = Path(bundle_dir) / "configs" / "metadata.json"
    if not meta.is_file():
        return ""
    return str(json.loads(meta.read_text(encoding="utf-8")).get("version", ""))


def device_name() -> str:
    """``cpu``, or ``cuda:0 (<GPU name>)``: the device the bundles pick (``cuda:0`` when there is one)."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:0 ({torch.cuda.get_device_name(0)})"
    return "cpu"


def split_label(split: str) -> str:
    """``seed`` -> ``seed``; ``fold2`` (or ``2``) -> ``fold 2``."""
    text = str(split)
    if text.isdigit():
        return f"fold {text}"
    return f"fold {text[4:]}" if text.startswith("fold") and text[4:].isdigit() else text


def run_name(bundle: str, command: str, split: str | None = None, subset: str | None = None) -> str:
    """A run's name: ``<bundle> train fold 2`` / ``<bundle> train seed``, ``<bundle> evaluate test`` (``... test
    fold 2`` off the seed split), ``<bundle> predict``."""
    parts = [bundle, command]
    if subset is not None:
        parts.append(subset)
    if split is not None and (command == "train" or split_label(split) != "seed"):
        parts.append(split_label(split))
    return " ".join(parts)


def command_line(argv: Sequence[str]) -> str:
    """``pipelines train BUNDLE ...``: the program's name then its arguments (quoted where needed)."""
    import shlex

    return " ".join(["pipelines", *(shlex.quote(a) for a in argv)])


@dataclass(frozen=True)
class DatasetDigest:
    """The content digest of one dataset a run reads.

    Attributes:
        name: ``<split>/<subset>`` (``seed/train``) or ``inputs``.
        context: MLflow's input context: ``training``, ``validation``, ``test`` or ``inference``.
        digest: hex sha256 (see the module doc).
        cases: entries (cases, input files) in it.
        source: where it was read (the datalist file or the input folder); informational only.
    """

    name: str
    context: str
    digest: str
    cases: int
    source: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "context": self.context, "digest": self.digest, "cases": str(self.cases),
                "source": self.source}


def _relative(path: str, root: Path) -> str:
    """A datalist path as the run sees it, independent of where the dataset folder lies."""
    candidate = Path(path)
    if not candidate.is_absolute():
        return candidate.as_posix()
    try:
        return candidate.resolve().relative_to(root).as_posix()
    except ValueError:
        return candidate.name


def _digest(header: Any, files: Iterable[tuple[str, Path]]) -> str:
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    for name, path in files:
        digest.update(f"\n{name}\n{file_sha256(path)}".encode())
    return digest.hexdigest()


def datalist_digest(
    datalist: str | Path,
    split: str,
    subsets: Sequence[str],
    max_cases: int | None = None,
    path_fields: Sequence[str] = ("image", "label"),
) -> list[DatasetDigest]:
    """Digest each of ``subsets`` of ``split`` of a prepared datalist, as a run with ``max_cases`` reads it.

    Args:
        datalist: the datalist JSON or its folder.
        split: ``seed``, ``fold2`` or ``2``.
        subsets: ``train``, ``validation``, ``test``.
        max_cases: the first cases of each subset only (as :func:`pipelines.data.datalist.split_items`).
        path_fields: the case fields that name files (hashed).
    """
    from pipelines.data.datalist import load_datalist, split_name

    loaded = load_datalist(datalist)
    root = Path(loaded["_root"])
    key = split_name(split)
    by_id = {case["case_id"]: case for case in loaded["cases"]}
    digests = []
    for subset in subsets:
        wanted = list(loaded.get("splits", {}).get(key, {}).get(subset, []))
        if max_cases is not None:
            wanted = wanted[: int(max_cases)]
        cases, files = [], []
        for case_id in wanted:
            case = dict(by_id[case_id])
            for field in path_fields:
                if isinstance(case.get(field), str):
                    files.append((_relative(case[field], root), root / case[field]))  # an absolute path stays one
                    case[field] = files[-1][0]
            cases.append(case)
        header = {"split": key, "subset": subset, "cases": cases}
        digests.append(DatasetDigest(f"{key}/{subset}", CONTEXTS.get(subset, subset), _digest(header, files),
                                     len(cases), str(root / "datalist.json")))
    return digests


def files_digest(files: Mapping[str, str | Path], source: str = "", context: str = "inference") -> DatasetDigest:
    """Digest loose input files by name (the order of ``files`` does not matter): ``predict``'s inputs."""
    names = sorted(files)
    digest = _digest({"files": names}, ((name, Path(files[name])) for name in names))
    return DatasetDigest("inputs", context, digest, len(names), source)


def combine_digests(digests: Sequence[DatasetDigest]) -> str:
    """One digest for a run that reads several datasets: sha256 of their names and digests, in order."""
    return _digest([[d.name, d.digest] for d in digests], ())


def run_tags(
    bundle_dir: str | Path,
    command: str,
    split: str | None = None,
    datasets: Sequence[DatasetDigest] = (),
    checkpoint: str | Path | None = None,
    checkpoint_sha256: str | None = None,
    argv: Sequence[str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The ``pipelines.*`` tags of a run.

    Args:
        bundle_dir: the bundle run (its folder name and ``metadata.json`` version are tagged).
        command: ``train``, ``evaluate``, ``predict``, ``explain``, ``synthesize``.
        split: the datalist split (``pipelines.split``; ``pipelines.fold`` too when it is a fold).
        datasets: what the run reads (``pipelines.dataset_digest``, :func:`combine_digests`).
        checkpoint: the weights loaded (``pipelines.checkpoint``).
        checkpoint_sha256: their sha256, when known (else computed from ``checkpoint``).
        argv: the command line's arguments (``pipelines.command_line``); default :data:`ARGV`, set by the CLI.
        extra: further tags, which win (``pipelines.registered_model``...).
    """
    bundle_dir = Path(bundle_dir)
    tags = {
        f"{TAG}git_commit": git_commit(),
        f"{TAG}bundle": bundle_dir.name,
        f"{TAG}bundle_version": bundle_version(bundle_dir),
        f"{TAG}command": command,
        f"{TAG}device": device_name(),
    }
    if split is not None:
        from pipelines.data.datalist import split_name

        tags[f"{TAG}split"] = split_name(split)
        if split_name(split).startswith("fold"):
            tags[f"{TAG}fold"] = split_name(split)[4:]
    if datasets:
        tags[f"{TAG}dataset_digest"] = combine_digests(datasets)
    if checkpoint is not None:
        tags[f"{TAG}checkpoint"] = str(Path(checkpoint).resolve())
        tags[f"{TAG}checkpoint_sha256"] = checkpoint_sha256 or file_sha256(checkpoint)
    argv = argv if argv is not None else ARGV.get()
    if argv is not None:
        tags[f"{TAG}command_line"] = command_line(argv)
    tags.update(extra or {})
    return {key: value for key, value in tags.items() if value != ""}
