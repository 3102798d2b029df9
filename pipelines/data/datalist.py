"""Reading a prepared datalist and turning one of its splits into MONAI dataset items.

A datalist (written by ``pipelines data ...``) is a JSON file with ``cases`` (one entry per patient, paths
relative to the datalist's folder) and ``splits`` (``seed``, ``fold0`` ... ``fold4``; each maps ``train`` /
``validation`` / ``test`` to case ids). Bundle configs call :func:`split_items` and, for 2D training on slices of
3D volumes, :func:`slice_items`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.errors import InputError, OutputExistsError

__all__ = ["datalist_target", "load_datalist", "split_name", "split_items", "slice_items"]


def datalist_target(output_dir: str | Path, overwrite: bool = False) -> Path:
    """``<output_dir>/datalist.json``, the file a converter writes last; raise before any conversion work when it
    exists already and ``overwrite`` is False (:class:`OutputExistsError`)."""
    path = Path(output_dir) / "datalist.json"
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    return path


def load_datalist(path: str | Path) -> dict[str, Any]:
    """Load and check a datalist JSON file; raise :class:`InputError` naming the file and the problem."""
    path = Path(path)
    if path.is_dir():
        path = path / "datalist.json"
    if not path.is_file():
        raise InputError(path, "no such datalist; run `pipelines data ...` first")
    try:
        datalist = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not a JSON datalist ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(datalist, dict) or not isinstance(datalist.get("cases"), list):
        raise InputError(path, "not a datalist: expected an object with a 'cases' list")
    for case in datalist["cases"]:
        if not isinstance(case, dict) or not {"case_id", "image"} <= case.keys():
            raise InputError(path, f"malformed case entry {case!r}: needs 'case_id' and 'image'")
    datalist["_root"] = str(path.parent.resolve())
    return datalist


def split_name(split: str | int) -> str:
    """Normalise a split given as ``seed``, ``3`` or ``fold3`` to its datalist key."""
    text = str(split)
    return f"fold{text}" if text.isdigit() else text


def split_items(
    datalist_file: str | Path,
    split: str | int = "seed",
    subset: str = "train",
    max_cases: int | None = None,
    check_files: bool = True,
    path_fields: Sequence[str] = ("image", "label"),
) -> list[dict[str, Any]]:
    """Return the cases of one subset of one split as dataset items with absolute paths.

    Args:
        datalist_file: the datalist JSON (or its folder).
        split: ``seed`` or a fold index / ``foldK``.
        subset: ``train``, ``validation`` or ``test``.
        max_cases: keep only the first ``max_cases`` cases (smoke tests); ``None`` keeps all.
        check_files: raise :class:`InputError` for an item whose image or label file is missing.
        path_fields: the fields holding file paths relative to the datalist (made absolute and checked), e.g.
            ``["image", "label", "mask"]``.

    Returns:
        One dict per case: ``image``, ``label`` (if labelled), ``case_id``, ``category``, ``num_slices`` and the
        case's other plain fields.
    """
    datalist = load_datalist(datalist_file)
    source = Path(datalist["_root"]) / "datalist.json"
    key = split_name(split)
    splits = datalist.get("splits", {})
    if key not in splits:
        raise InputError(source, f"no split {key!r} (available: {', '.join(sorted(splits)) or 'none'})")
    if subset not in splits[key]:
        raise InputError(source, f"split {key!r} has no subset {subset!r}")
    wanted = list(splits[key][subset])
    if max_cases is not None:
        wanted = wanted[: int(max_cases)]
    by_id = {c["case_id"]: c for c in datalist["cases"]}
    items = []
    for cid in wanted:
        if cid not in by_id:
            raise InputError(source, f"split {key!r} names unknown case {cid!r}")
        case = dict(by_id[cid])
        for field in path_fields:
            if field in case:
                case[field] = str(Path(datalist["_root"]) / case[field])
                if check_files and not Path(case[field]).is_file():
                    raise InputError(case[field], f"listed in {source} but missing")
        items.append({k: v for k, v in case.items() if not isinstance(v, (dict, list))})
    return items


def slice_items(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Expand volume items into one item per slice (``slice`` = index along the last axis).

    Used with :class:`pipelines.transforms.SelectSliced` to train a 2D network on every slice of 3D volumes.
    """
    return [{**item, "slice": k} for item in items for k in range(int(item["num_slices"]))]
