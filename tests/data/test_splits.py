"""Tests for :mod:`pipelines.data.splits`: stratified case-level folds and validation subsets."""

from __future__ import annotations

from collections import Counter

import pytest

from pipelines.data.splits import split_cases, stratified_folds, stratified_subset


def make_categories(sizes: dict[int, int]) -> dict[str, int]:
    """``{category: n_cases}`` -> ``{case_id: category}`` with ids ``c000``, ``c001``..."""
    categories, index = {}, 0
    for category, n in sizes.items():
        for _ in range(n):
            categories[f"c{index:03d}"] = category
            index += 1
    return categories


@pytest.mark.parametrize(
    ("sizes", "n_folds"),
    [({0: 9, 1: 12, 2: 12, 3: 12}, 5), ({0: 7, 1: 3, 2: 13}, 4), ({0: 5, 1: 1}, 3), ({0: 2}, 2)],
)
def test_folds_are_balanced(sizes, n_folds):
    categories = make_categories(sizes)
    folds = stratified_folds(categories, n_folds=n_folds, seed=3)
    assert set(folds) == set(categories)
    counts = Counter(folds.values())
    assert set(counts) == set(range(n_folds))
    assert max(counts.values()) - min(counts.values()) <= 1
    for category in sizes:  # each category is spread evenly too
        per_fold = Counter(folds[c] for c, cat in categories.items() if cat == category)
        per_fold_all = [per_fold.get(k, 0) for k in range(n_folds)]
        assert max(per_fold_all) - min(per_fold_all) <= 1, category


def test_folds_are_deterministic_per_seed():
    categories = make_categories({0: 9, 1: 12, 2: 12, 3: 12})
    assert stratified_folds(categories, seed=7) == stratified_folds(dict(reversed(categories.items())), seed=7)
    assert stratified_folds(categories, seed=0) != stratified_folds(categories, seed=1)


@pytest.mark.parametrize(("n_cases", "n_folds"), [(10, 1), (3, 5)])
def test_folds_reject_impossible_requests(n_cases, n_folds):
    with pytest.raises(ValueError):
        stratified_folds(make_categories({0: n_cases}), n_folds=n_folds)


@pytest.mark.parametrize("size", [4, 5, 9])
def test_subset_takes_every_category(size):
    categories = make_categories({0: 9, 1: 12, 2: 12, 3: 2})
    subset = stratified_subset(categories, size, seed=1)
    assert len(subset) == len(set(subset)) == size
    assert subset == sorted(subset)
    assert {categories[c] for c in subset} == {0, 1, 2, 3}


def test_subset_prefers_largest_categories_when_small():
    categories = make_categories({0: 2, 1: 12, 2: 5})
    subset = stratified_subset(categories, 2, seed=0)
    assert sorted(categories[c] for c in subset) == [1, 2]


def test_subset_is_deterministic_per_seed():
    categories = make_categories({0: 9, 1: 12, 2: 12, 3: 12})
    assert stratified_subset(categories, 5, seed=4) == stratified_subset(categories, 5, seed=4)
    assert len({tuple(stratified_subset(categories, 5, seed=s)) for s in range(5)}) > 1


@pytest.mark.parametrize(("size", "expected"), [(0, []), (3, ["c000", "c001", "c002"])])
def test_subset_edges(size, expected):
    assert stratified_subset(make_categories({0: 1, 1: 2}), size) == expected


@pytest.mark.parametrize("size", [-1, 4])
def test_subset_rejects_impossible_sizes(size):
    with pytest.raises(ValueError):
        stratified_subset(make_categories({0: 1, 1: 2}), size)


def test_split_cases_partitions():
    categories = make_categories({0: 6, 1: 6, 2: 6})
    ids = list(categories)
    split = split_cases(ids, ids[-4:], categories, n_val=3, seed=0)
    train, validation, test = (set(split[k]) for k in ("train", "validation", "test"))
    assert test == set(ids[-4:])
    assert len(validation) == 3 and {categories[c] for c in validation} == {0, 1, 2}
    assert not train & validation and not (train | validation) & test
    assert train | validation | test == set(ids)
