from __future__ import annotations

import io

import pytest
import torch

from pipelines.engines import ImagePool


def batches(n: int, size: int = 2) -> list[torch.Tensor]:
    """Distinct image batches: image k of the sequence is filled with the value k."""
    values = torch.arange(n * size, dtype=torch.float32).reshape(n, size)
    return [v[:, None, None, None].expand(size, 1, 3, 3).clone() for v in values]


def ids(batch: torch.Tensor) -> list[int]:
    return [int(image[0, 0, 0]) for image in batch]


def test_returns_its_inputs_until_full_then_mixes_in_past_ones():
    pool = ImagePool(size=4)
    stream = batches(20)
    assert ids(pool.query(stream[0])) == [0, 1] and ids(pool.query(stream[1])) == [2, 3]
    assert len(pool) == 4
    returned = [i for batch in stream[2:] for i in ids(pool.query(batch))]
    old = [i for i, fresh in zip(returned, range(4, 40)) if i != fresh]
    assert 0.3 < len(old) / len(returned) < 0.7  # about half are swapped for a stored past image
    assert all(i <= fresh for i, fresh in zip(returned, range(4, 40)))  # never an image from the future
    # after the fill, nothing is lost or duplicated: each image is returned once (fresh or later) or still stored
    stored = [int(image[0, 0, 0]) for image in pool.images]
    assert len(pool) == 4 and sorted([*returned, *stored]) == list(range(40))


def test_size_zero_passes_through_and_stores_nothing():
    pool = ImagePool(size=0)
    batch = torch.randn(3, 1, 4, 4)
    assert pool.query(batch) is batch and len(pool) == 0


def test_state_dict_round_trip_gives_identical_future_outputs():
    stream = batches(12)
    pool = ImagePool(size=3, seed=7)
    for batch in stream[:5]:
        pool.query(batch)
    buffer = io.BytesIO()
    torch.save(pool.state_dict(), buffer)
    expected = [pool.query(batch) for batch in stream[5:]]

    buffer.seek(0)
    resumed = ImagePool(size=3, seed=123)  # a different seed: the loaded generator state must win
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for batch, want in zip(stream[5:], expected):
        torch.testing.assert_close(resumed.query(batch), want, rtol=0, atol=0)


def test_seeds_make_pools_reproducible_and_distinct():
    def run(seed: int) -> list[int]:
        pool = ImagePool(size=2, seed=seed)
        return [i for batch in batches(15) for i in ids(pool.query(batch))]

    assert run(0) == run(0) and run(0) != run(1)


def test_empty_pool_state_and_size_mismatch():
    state = ImagePool(size=2).state_dict()
    assert state["images"] is None
    ImagePool(size=2).load_state_dict(state)
    with pytest.raises(ValueError, match="size"):
        ImagePool(size=5).load_state_dict(state)
    with pytest.raises(ValueError, match="non-negative"):
        ImagePool(size=-1)
