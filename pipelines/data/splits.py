"""Patient-level splits: stratified k-fold assignment and a stratified validation subset.

Every split here works on *case ids*, never on slices, so no patient's slices are ever on both sides of a split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["stratified_folds", "stratified_subset"]


def _by_category(categories: Mapping[str, int]) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for case_id in sorted(categories):
        groups.setdefault(int(categories[case_id]), []).append(case_id)
    return groups


def stratified_folds(categories: Mapping[str, int], n_folds: int = 5, seed: int = 0) -> dict[str, int]:
    """Assign each case to one of ``n_folds`` folds, balancing the diagnostic categories across folds.

    Cases of each category are shuffled (seeded) and dealt round-robin; the dealing position carries over from one
    category to the next, so fold sizes differ by at most one.

    Args:
        categories: case id -> category (e.g. the Sunnybrook diagnostic group).
        n_folds: number of folds.
        seed: seed of the shuffle.

    Returns:
        case id -> fold index in ``[0, n_folds)``.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    if len(categories) < n_folds:
        raise ValueError(f"{len(categories)} cases cannot fill {n_folds} folds")
    rng = np.random.default_rng(seed)
    folds: dict[str, int] = {}
    position = 0
    for category in sorted(_by_category(categories)):
        cases = _by_category(categories)[category]
        for case_id in rng.permutation(cases):
            folds[str(case_id)] = position % n_folds
            position += 1
    return folds


def stratified_subset(categories: Mapping[str, int], size: int, seed: int = 0) -> list[str]:
    """Pick ``size`` cases, taking one from each category in turn (largest category first), seeded.

    Used to carve a small validation set (for checkpoint selection) out of the training cases.
    """
    if not 0 <= size <= len(categories):
        raise ValueError(f"cannot pick {size} of {len(categories)} cases")
    rng = np.random.default_rng(seed)
    pools = {c: list(rng.permutation(cases)) for c, cases in _by_category(categories).items()}
    order = sorted(pools, key=lambda c: (-len(pools[c]), c))
    chosen: list[str] = []
    while len(chosen) < size:
        for category in order:
            if pools[category] and len(chosen) < size:
                chosen.append(str(pools[category].pop()))
    return sorted(chosen)


def split_cases(
    case_ids: Sequence[str], test: Sequence[str], categories: Mapping[str, int], n_val: int, seed: int
) -> dict[str, list[str]]:
    """Split ``case_ids`` into train / validation / test given the test cases; validation is stratified."""
    test_set = set(test)
    pool = {c: categories[c] for c in case_ids if c not in test_set}
    validation = stratified_subset(pool, n_val, seed=seed)
    train = sorted(set(pool) - set(validation))
    return {"train": train, "validation": validation, "test": sorted(test_set)}
