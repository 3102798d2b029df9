"""Tests for :mod:`pipelines.data.unpaired`: A in order (cycling), B drawn from a seeded, checkpointable generator."""

from __future__ import annotations

import pytest

from pipelines.data.unpaired import UnpairedDataset

DOMAIN_A = [{"image": f"mr{i}"} for i in range(3)]
DOMAIN_B = [{"ct_image": f"ct{i}"} for i in range(7)]


def dataset(seed: int = 0) -> UnpairedDataset:
    return UnpairedDataset(DOMAIN_A, DOMAIN_B, field_b="ct_image", seed=seed)


def b_draws(data: UnpairedDataset, count: int) -> list[str]:
    return [data[i % len(data)]["ct"] for i in range(count)]


@pytest.mark.parametrize(("n_a", "n_b"), [(3, 7), (7, 3), (4, 4)])
def test_length_is_the_larger_domain(n_a: int, n_b: int) -> None:
    data = UnpairedDataset([{"image": i} for i in range(n_a)], [{"image": i} for i in range(n_b)])
    assert len(data) == max(n_a, n_b)


def test_domain_a_is_read_in_order_cycling_and_b_comes_from_domain_b() -> None:
    data = dataset()
    items = [data[i] for i in range(len(data))]
    assert [item["mr"] for item in items] == ["mr0", "mr1", "mr2", "mr0", "mr1", "mr2", "mr0"]
    assert all(set(item) == {"mr", "ct"} and item["ct"] in {b["ct_image"] for b in DOMAIN_B} for item in items)


def test_b_draws_are_deterministic_for_a_seed_and_differ_across_seeds() -> None:
    draws = b_draws(dataset(seed=3), 20)
    assert b_draws(dataset(seed=3), 20) == draws
    assert b_draws(dataset(seed=4), 20) != draws
    assert len(set(draws)) > 1  # drawn, not a fixed pairing


def test_state_dict_round_trip_reproduces_the_next_draws() -> None:
    uninterrupted = dataset(seed=1)
    b_draws(uninterrupted, 5)
    state = uninterrupted.state_dict()
    expected = b_draws(uninterrupted, 10)

    resumed = dataset(seed=99)  # a fresh dataset, seeded differently: the state alone decides the draws
    resumed.load_state_dict(state)
    assert b_draws(resumed, 10) == expected


@pytest.mark.parametrize(("domain_a", "domain_b"), [([], DOMAIN_B), (DOMAIN_A, []), ([], [])])
def test_an_empty_domain_is_a_value_error(domain_a: list[dict], domain_b: list[dict]) -> None:
    with pytest.raises(ValueError, match="both domains need images"):
        UnpairedDataset(domain_a, domain_b)
