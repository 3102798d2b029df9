"""Unpaired two-domain slices for CycleGAN: each item is one MR slice and a CT slice drawn at random.

As in the reference CycleGAN code's "unaligned" dataset, item ``i`` holds the ``i``-th slice of domain A (cycling
when the other domain is larger) and a slice of domain B drawn uniformly, so that no pairing is learnt from the
order. The draws come from the dataset's own seeded generator, which :meth:`UnpairedDataset.state_dict` saves,
so a resumed run draws the pairs the uninterrupted run would have (with ``num_workers=0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["UnpairedDataset"]


class UnpairedDataset(Dataset):
    """``{key_a: a[i % len(a)][field_a], key_b: b[random][field_b]}``, ``max(len(a), len(b))`` items per epoch.

    Args:
        domain_a: dataset of domain A items (dicts), e.g. MR slices.
        domain_b: dataset of domain B items, e.g. CT slices of *other* patients.
        field_a: key of the image in an A item.
        field_b: key of the image in a B item.
        key_a: key of the A image in the returned item.
        key_b: key of the B image in the returned item.
        seed: seed of the generator drawing B indices.
    """

    def __init__(
        self,
        domain_a: Sequence[dict[str, Any]],
        domain_b: Sequence[dict[str, Any]],
        field_a: str = "image",
        field_b: str = "image",
        key_a: str = "mr",
        key_b: str = "ct",
        seed: int = 0,
    ) -> None:
        if len(domain_a) == 0 or len(domain_b) == 0:
            raise ValueError(f"both domains need images; got {len(domain_a)} and {len(domain_b)}")
        self.domain_a, self.domain_b = domain_a, domain_b
        self.field_a, self.field_b, self.key_a, self.key_b = field_a, field_b, key_a, key_b
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return max(len(self.domain_a), len(self.domain_b))

    def __getitem__(self, index: int) -> dict[str, Any]:
        j = int(torch.randint(len(self.domain_b), (1,), generator=self.generator).item())
        return {
            self.key_a: self.domain_a[index % len(self.domain_a)][self.field_a],
            self.key_b: self.domain_b[j][self.field_b],
        }

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
