"""Synthetic image / mask pairs mixed into a segmentation bundle's training slices, at a chosen ratio.

A *synthetic datalist* is what a generative bundle's ``pipelines synthesize`` writes: a JSON object with
``"synthetic": true`` and ``cases`` shaped like a prepared datalist's (``case_id``, ``image``, ``label``,
``num_slices``; paths relative to the file). Marking it is what keeps a folder of generated pairs from ever being
taken for patients: :func:`load_synthetic` refuses a datalist without the mark, and a prepared dataset's datalist
never has it.

The segmentation bundles expose two config values, so that mixing is an override rather than a code change::

    pipelines.api.train("lv_segmentation_unet", data, out,
                        overrides={"synthetic_datalist": "gen/datalist.json", "synthetic_ratio": 1.0})
    python -m monai.bundle run --config_file ... --synthetic_datalist gen/datalist.json --synthetic_ratio 1.0

With ``ratio`` r and N real training slices, :func:`mix_synthetic` adds round(r N) synthetic slices (r = 1: as many
synthetic as real slices, a 50 % share), drawn without replacement in a seeded order (cycled when more are asked for
than exist). With no datalist or r = 0 the real slices come back unchanged, so a run without synthetic data is
exactly the run it was before this option existed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.data.datalist import load_datalist, slice_items
from pipelines.errors import InputError

__all__ = ["load_synthetic", "mix_synthetic"]

logger = logging.getLogger(__name__)

# the fields every mixed item keeps: what the training transforms read, plus provenance
MIXED_FIELDS = ("case_id", "image", "label", "slice", "synthetic")


def load_synthetic(path: str | Path) -> list[dict[str, Any]]:
    """The slices of a synthetic datalist as dataset items with absolute paths (``synthetic``: True).

    Raises:
        InputError: the file is not a datalist, lacks ``"synthetic": true``, has a case without ``label``, or names
            a missing file.
    """
    datalist = load_datalist(path)
    source = Path(datalist["_root"]) / "datalist.json" if Path(path).is_dir() else Path(path)
    if datalist.get("synthetic") is not True:
        raise InputError(source, "not a synthetic datalist (no \"synthetic\": true); refusing to mix it as synthetic")
    items = []
    for case in datalist["cases"]:
        if "label" not in case:
            raise InputError(source, f"synthetic case {case['case_id']!r} has no label (mask)")
        item = {"case_id": case["case_id"], "num_slices": int(case.get("num_slices", 1)), "synthetic": True}
        for field in ("image", "label"):
            file = Path(datalist["_root"]) / case[field]
            if not file.is_file():
                raise InputError(file, f"listed in {source} but missing")
            item[field] = str(file)
        items.append(item)
    return slice_items(items)


def mix_synthetic(
    slices: Sequence[dict[str, Any]],
    synthetic_datalist: str | Path | None = None,
    ratio: float = 0.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Real training slices plus round(``ratio`` x len(``slices``)) synthetic ones.

    Args:
        slices: the real slice items (:func:`pipelines.data.slice_items` of the split's training cases).
        synthetic_datalist: a synthetic datalist (file or folder), or None for none.
        ratio: synthetic slices per real slice (0 adds none; 1 doubles the set).
        seed: seed of the order in which synthetic slices are drawn.

    Returns:
        ``slices`` itself when nothing is mixed; otherwise every item reduced to :data:`MIXED_FIELDS` (real and
        synthetic items must share their keys to be collated into one batch), real ones first.
    """
    if ratio < 0:
        raise InputError("synthetic_ratio", f"must be at least 0, got {ratio}")
    if synthetic_datalist is None or ratio == 0:
        return list(slices)
    synthetic = load_synthetic(synthetic_datalist)
    wanted = int(round(ratio * len(slices)))
    if not synthetic:
        raise InputError(synthetic_datalist, "synthetic datalist has no cases")
    order = np.random.default_rng(seed).permutation(len(synthetic))
    picks = [synthetic[int(order[k % len(order)])] for k in range(wanted)]
    if wanted > len(synthetic):
        logger.warning("%d synthetic slices asked for, %d exist: each is used up to %d times",
                       wanted, len(synthetic), -(-wanted // len(synthetic)))
    real = [{**{k: item[k] for k in MIXED_FIELDS if k in item}, "synthetic": False} for item in slices]
    mixed = real + [{k: item[k] for k in MIXED_FIELDS} for item in picks]
    logger.info("training on %d real + %d synthetic slices (ratio %g)", len(real), len(picks), ratio)
    return mixed
