"""Dataset items for evaluating a denoiser at several fixed noise levels: every case once per level."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["noise_level_items"]


def noise_level_items(
    items: Sequence[dict[str, Any]], levels: Sequence[float], key: str = "noise_sigma"
) -> list[dict[str, Any]]:
    """Repeat each item once per noise level, level-major: ``[{**item, key: level} for level in levels for item]``.

    Used with :class:`pipelines.transforms.rician.RicianNoised` (``sigma_key=key``), which draws each copy's noise
    from a seed of its case id and level.

    Args:
        items: dataset items (one per case or per slice).
        levels: the noise standard deviations, on the images' intensity scale.
        key: the item key that receives the level.
    """
    if not levels:
        raise ValueError("at least one noise level is needed")
    return [{**item, key: float(level)} for level in levels for item in items]
