"""Tests for :mod:`pipelines.handlers.throughput` with a fake clock, so the expected figures are exact."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from ignite.engine import Engine, Events

from pipelines.handlers import throughput as throughput_module
from pipelines.handlers.throughput import Throughput


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """Each ``perf_counter()`` call of the handler returns the next whole second: 0, 1, 2..."""
    calls: list[float] = []

    def perf_counter() -> float:
        calls.append(float(len(calls)))
        return calls[-1]

    monkeypatch.setattr(throughput_module, "time", SimpleNamespace(perf_counter=perf_counter))
    return calls


def test_images_per_second_from_batch_dicts(clock):
    batches = [{"image": torch.zeros(4, 1, 8, 8)}] * 3
    engine = Engine(lambda e, b: None)
    handler = Throughput()
    handler.attach(engine)
    handler.attach(engine)  # attaching twice must not count twice
    per_epoch = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: per_epoch.append(dict(e.state.metrics)))
    engine.run(batches, max_epochs=2)
    # epoch 1: started at t=0, iterations end at t=1, 2, 3 -> 12 images in 3 s
    # epoch 2: started at t=4, iterations end at t=5, 6, 7 -> 12 images in 3 s, 6 s in all
    assert per_epoch == [
        {"images_per_s": 4.0, "train_time_s": 3.0},
        {"images_per_s": 4.0, "train_time_s": 6.0},
    ]
    assert handler.state_dict() == {"total_time": 6.0}


def test_decollated_batches_count_their_items(clock):
    engine = Engine(lambda e, b: None)
    Throughput().attach(engine)
    engine.run([[{"image": 0}] * 5, [{"image": 0}] * 3], max_epochs=1)
    assert engine.state.metrics["images_per_s"] == pytest.approx(8 / 2)


def test_custom_batch_key(clock):
    engine = Engine(lambda e, b: None)
    Throughput(batch_key="mr").attach(engine)
    engine.run([{"mr": torch.zeros(2, 1, 4, 4), "ct": torch.zeros(7, 1, 4, 4)}], max_epochs=1)
    assert engine.state.metrics["images_per_s"] == pytest.approx(2.0)


def test_total_time_is_resumable(clock):
    handler = Throughput()
    handler.load_state_dict({"total_time": 10.0})
    engine = Engine(lambda e, b: None)
    handler.attach(engine)
    engine.run([{"image": torch.zeros(1)}], max_epochs=1)
    assert engine.state.metrics["train_time_s"] == pytest.approx(11.0)


def test_real_clock_gives_positive_figures():
    engine = Engine(lambda e, b: None)
    Throughput().attach(engine)
    engine.run([{"image": torch.zeros(2)}] * 2, max_epochs=1)
    assert engine.state.metrics["images_per_s"] > 0
    assert engine.state.metrics["train_time_s"] >= 0
