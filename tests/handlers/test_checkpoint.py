"""Tests for :mod:`pipelines.handlers.checkpoint`, driven by tiny Ignite engines (nothing is trained)."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.transforms import Compose, RandAffined, RandFlipd, RandGaussianNoised, ScaleIntensityd

from pipelines.handlers import checkpoint as checkpoint_module
from pipelines.handlers.checkpoint import AtomicCheckpoint, BestMetricState, RNGState, TransformRNGState

DATA = [0, 1, 2]  # three iterations per epoch


def model_and_optimizer(seed: int) -> tuple[torch.nn.Linear, torch.optim.SGD]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def training_engine(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Engine:
    """An engine whose iterations take one SGD step (so weights and momentum buffers change)."""

    def step(engine: Engine, batch: int) -> None:
        optimizer.zero_grad()
        model(torch.full((1, 3), float(batch))).sum().backward()
        optimizer.step()

    return Engine(step)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_saves_every_epoch_and_loads_weights_only(tmp_path):
    model, optimizer = model_and_optimizer(0)
    engine = training_engine(model, optimizer)
    saved_epochs = []
    handler = AtomicCheckpoint(str(tmp_path), {"model": model, "optimizer": optimizer}, engine_key="trainer")
    handler.attach(engine)

    @engine.on(Events.EPOCH_COMPLETED)
    def record(engine: Engine) -> None:  # runs after the checkpoint handler, registered first
        state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
        saved_epochs.append(state["trainer"]["iteration"] // len(DATA))

    engine.run(DATA, max_epochs=3)
    assert saved_epochs == [1, 2, 3]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(state) == {"model", "optimizer", "trainer"}
    assert state["trainer"]["iteration"] == 9
    torch.testing.assert_close(state["model"]["weight"], model.weight.detach())
    assert state["optimizer"]["state"]  # momentum buffers are saved
    assert files_in(tmp_path) == ["checkpoint.pt"]


def test_every_n_epochs_and_double_attach(tmp_path, monkeypatch):
    calls = []
    real_save = checkpoint_module.atomic_torch_save
    def counting_save(obj, path):
        calls.append(path)
        return real_save(obj, path)

    monkeypatch.setattr(checkpoint_module, "atomic_torch_save", counting_save)
    model, optimizer = model_and_optimizer(0)
    engine = training_engine(model, optimizer)
    handler = AtomicCheckpoint(str(tmp_path), {"model": model}, every=2)
    handler.attach(engine)
    handler.attach(engine)
    engine.run(DATA, max_epochs=4)
    assert len(calls) == 2


def test_resume_restores_counters_and_weights_then_continues(tmp_path):
    model, optimizer = model_and_optimizer(0)
    first = training_engine(model, optimizer)
    AtomicCheckpoint(str(tmp_path), {"model": model, "optimizer": optimizer}, engine_key="trainer").attach(first)
    first.run(DATA, max_epochs=2)
    trained_weight = model.weight.detach().clone()

    model2, optimizer2 = model_and_optimizer(1)
    assert not torch.equal(model2.weight, trained_weight)
    fresh = Engine(lambda e, b: None)  # does not touch the weights: what we see after the run was loaded
    epochs_started = []
    fresh.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs_started.append(e.state.epoch))
    resumed = AtomicCheckpoint(
        str(tmp_path), {"model": model2, "optimizer": optimizer2}, engine_key="trainer", resume=True
    )
    resumed.attach(fresh)
    fresh.run(DATA, max_epochs=4)

    assert epochs_started == [3, 4]
    assert (fresh.state.epoch, fresh.state.iteration, fresh.state.max_epochs) == (4, 12, 4)
    torch.testing.assert_close(model2.weight.detach(), trained_weight)
    torch.testing.assert_close(
        optimizer2.state_dict()["state"][0]["momentum_buffer"], optimizer.state_dict()["state"][0]["momentum_buffer"]
    )
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["trainer"]["iteration"] == 12 and state["trainer"]["max_epochs"] == 4
    assert files_in(tmp_path) == ["checkpoint.pt"]


def test_resume_without_checkpoint_fails(tmp_path):
    model, _ = model_and_optimizer(0)
    engine = Engine(lambda e, b: None)
    AtomicCheckpoint(str(tmp_path), {"model": model}, resume=True).attach(engine)
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        engine.run(DATA, max_epochs=1)


def test_resume_beyond_max_epochs_fails(tmp_path):
    model, optimizer = model_and_optimizer(0)
    engine = training_engine(model, optimizer)
    AtomicCheckpoint(str(tmp_path), {"model": model}, engine_key="trainer").attach(engine)
    engine.run(DATA, max_epochs=3)
    fresh = Engine(lambda e, b: None)
    AtomicCheckpoint(str(tmp_path), {"model": model}, engine_key="trainer", resume=True).attach(fresh)
    with pytest.raises(ValueError, match="beyond max_epochs 2"):
        fresh.run(DATA, max_epochs=2)


def validator(best_epochs: set[int], model: torch.nn.Module) -> Engine:
    """An engine standing in for a MONAI evaluator: ``best_metric_epoch`` moves on at the epochs in ``best_epochs``."""
    engine = Engine(lambda e, b: None)
    engine.state.best_metric, engine.state.best_metric_epoch = -1.0, -1

    @engine.on(Events.EPOCH_STARTED)
    def change_weights(engine: Engine) -> None:
        with torch.no_grad():
            model.weight.fill_(float(engine.state.epoch))

    @engine.on(Events.EPOCH_COMPLETED)
    def compare(engine: Engine) -> None:  # registered before the checkpoint, as in MONAI workflows
        if engine.state.epoch in best_epochs:
            engine.state.best_metric, engine.state.best_metric_epoch = engine.state.epoch / 10, engine.state.epoch

    return engine


def test_save_best_saves_only_on_improvement(tmp_path):
    model, _ = model_and_optimizer(0)
    engine = validator({1, 3}, model)
    AtomicCheckpoint(str(tmp_path), {"model": model}, filename="model.pt", save_best=True, bare=True).attach(engine)
    engine.run(DATA, max_epochs=4)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert torch.all(state["weight"] == 3.0)  # saved at epoch 3, not rewritten at epoch 4


def test_save_best_without_improvement_writes_nothing(tmp_path):
    model, _ = model_and_optimizer(0)
    engine = validator(set(), model)
    AtomicCheckpoint(str(tmp_path), {"model": model}, filename="model.pt", save_best=True).attach(engine)
    engine.run(DATA, max_epochs=2)
    assert files_in(tmp_path) == []


def test_bare_checkpoint_is_a_plain_state_dict(tmp_path):
    model, optimizer = model_and_optimizer(0)
    engine = training_engine(model, optimizer)
    AtomicCheckpoint(str(tmp_path), {"model": model}, filename="model.pt", bare=True).attach(engine)
    engine.run(DATA, max_epochs=1)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(state) == {"weight", "bias"}
    other, _ = model_and_optimizer(5)
    other.load_state_dict(state)
    torch.testing.assert_close(other.weight, model.weight)


@pytest.mark.parametrize(("names", "engine_key"), [(("model", "optimizer"), None), (("model",), "trainer")])
def test_bare_needs_a_single_object(tmp_path, names, engine_key):
    model, optimizer = model_and_optimizer(0)
    objects = {"model": model, "optimizer": optimizer}
    with pytest.raises(ValueError, match="bare=True"):
        AtomicCheckpoint(str(tmp_path), {n: objects[n] for n in names}, bare=True, engine_key=engine_key)


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer = model_and_optimizer(0)
    engine = training_engine(model, optimizer)
    handler = AtomicCheckpoint(str(tmp_path), {"model": model, "optimizer": optimizer}, engine_key="trainer")
    handler.attach(engine)
    engine.run(DATA, max_epochs=1)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def half_save_then_crash(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        data = Path(f).read_bytes()
        Path(f).write_bytes(data[: len(data) // 2])
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", half_save_then_crash)
    with pytest.raises(RuntimeError, match="disk full"):
        engine.run(DATA, max_epochs=2)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 3
    assert files_in(tmp_path) == ["checkpoint.pt"]


def test_best_metric_state_round_trip():
    source = Engine(lambda e, b: None)
    assert BestMetricState(source).state_dict() == {"best_metric": -1.0, "best_metric_epoch": -1}
    source.state.best_metric, source.state.best_metric_epoch = 0.875, 7
    state = BestMetricState(source).state_dict()
    target = Engine(lambda e, b: None)
    BestMetricState(target).load_state_dict(state)
    assert (target.state.best_metric, target.state.best_metric_epoch) == (0.875, 7)


def test_best_metric_survives_resume(tmp_path):
    model, _ = model_and_optimizer(0)
    engine = Engine(lambda e, b: None)
    engine.state.best_metric, engine.state.best_metric_epoch = 0.9, 2
    handler = AtomicCheckpoint(str(tmp_path), {"model": model, "best": BestMetricState(engine)})
    handler(engine)
    fresh = Engine(lambda e, b: None)
    AtomicCheckpoint(str(tmp_path), {"model": model, "best": BestMetricState(fresh)}).load(fresh)
    assert (fresh.state.best_metric, fresh.state.best_metric_epoch) == (0.9, 2)


def draws() -> tuple[torch.Tensor, np.ndarray, list[float]]:
    """A few numbers from each global generator (torch, NumPy, Python), Gaussian ones included."""
    return torch.rand(5), np.random.normal(size=3), [random.random(), random.gauss(0.0, 1.0)]


def test_rng_state_round_trip(tmp_path):
    rng = RNGState()
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    np.random.normal()  # leave a cached Gaussian in NumPy's state
    path = tmp_path / "rng.pt"
    torch.save(rng.state_dict(), path)
    expected = draws()
    draws()  # move the generators on
    rng.load_state_dict(torch.load(path, weights_only=True))
    again = draws()
    torch.testing.assert_close(again[0], expected[0])
    np.testing.assert_array_equal(again[1], expected[1])
    assert again[2] == expected[2]


def test_rng_state_of_an_older_checkpoint_sets_torch_only():
    torch.manual_seed(5)
    state = {"torch": torch.get_rng_state()}  # what checkpoints held before NumPy's and Python's states
    expected = torch.rand(3)
    RNGState().load_state_dict(state)
    torch.testing.assert_close(torch.rand(3), expected)


def augmentation(seed: int) -> Compose:
    """Random transforms with generators of their own, one (RandAffined) with inner transforms that have theirs."""
    keys = ["image"]
    pipeline = Compose([
        ScaleIntensityd(keys),
        RandFlipd(keys, prob=0.5, spatial_axis=0),
        RandAffined(keys, prob=0.9, rotate_range=0.5, scale_range=0.2),
        RandGaussianNoised(keys, prob=0.5, std=0.1),
    ])
    pipeline.set_random_state(seed=seed)
    return pipeline


def augment(pipeline: Compose, count: int = 4) -> list[torch.Tensor]:
    image = torch.arange(64, dtype=torch.float32).reshape(1, 8, 8)
    return [torch.as_tensor(pipeline({"image": image.clone()})["image"]) for _ in range(count)]


def test_transform_rng_state_names_every_generator():
    paths = set(TransformRNGState(augmentation(0)).generators())
    assert {"transform", "transform.transforms.1", "transform.transforms.2", "transform.transforms.3"} <= paths
    assert "transform.transforms.2.rand_affine.rand_affine_grid" in paths  # RandAffined's inner generators
    assert "transform.transforms.0" not in paths  # not random


def test_transform_rng_state_round_trip_through_a_checkpoint(tmp_path):
    pipeline = augmentation(0)
    augment(pipeline)  # an epoch's worth of draws
    path = tmp_path / "transforms.pt"
    torch.save(TransformRNGState(pipeline).state_dict(), path)
    expected = augment(pipeline)

    rebuilt = augmentation(0)  # a resumed run builds the pipeline from scratch, with the configured seed
    assert not all(torch.equal(a, b) for a, b in zip(augment(augmentation(0)), expected))
    TransformRNGState(rebuilt).load_state_dict(torch.load(path, weights_only=True))
    for got, want in zip(augment(rebuilt), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_transform_rng_state_refuses_another_pipeline():
    state = TransformRNGState(augmentation(0)).state_dict()
    other = Compose([RandFlipd(["image"], prob=0.5)])
    with pytest.raises(ValueError, match="not in the pipeline"):
        TransformRNGState(other).load_state_dict(state)


def test_resume_removes_temporaries_of_a_killed_write(tmp_path, caplog):
    model, optimizer = model_and_optimizer(0)
    engine = training_engine(model, optimizer)
    AtomicCheckpoint(str(tmp_path), {"model": model}, engine_key="trainer").attach(engine)
    engine.run(DATA, max_epochs=1)
    stale = tmp_path / ".checkpoint.pt.k3x9q.tmp.pt"  # the name atomic_path gives, left by a SIGKILL mid-write
    stale.write_bytes(b"half a checkpoint")
    fresh = Engine(lambda e, b: None)
    AtomicCheckpoint(str(tmp_path), {"model": model}, engine_key="trainer", resume=True).attach(fresh)
    with caplog.at_level(logging.WARNING):
        fresh.run(DATA, max_epochs=2)
    assert files_in(tmp_path) == ["checkpoint.pt"]
    assert any(stale.name in record.getMessage() for record in caplog.records)


def test_only_rank_zero_writes_but_every_rank_can_load(tmp_path, monkeypatch):
    model, optimizer = model_and_optimizer(0)
    engine = training_engine(model, optimizer)
    AtomicCheckpoint(str(tmp_path), {"model": model}, engine_key="trainer").attach(engine)
    engine.run(DATA, max_epochs=1)
    monkeypatch.setattr(checkpoint_module.idist, "get_rank", lambda: 1)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    engine.run(DATA, max_epochs=2)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before  # rank 1 trained on but wrote nothing
    other, _ = model_and_optimizer(1)
    fresh = Engine(lambda e, b: None)
    AtomicCheckpoint(str(tmp_path), {"model": other}, engine_key="trainer", resume=True).attach(fresh)
    fresh.run(DATA, max_epochs=2)
    assert fresh.state.iteration == 2 * len(DATA)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    torch.testing.assert_close(other.weight.detach(), saved["weight"])


def test_data_parallel_models_are_saved_unwrapped(tmp_path):
    model, _ = model_and_optimizer(0)
    engine = Engine(lambda e, b: None)
    AtomicCheckpoint(str(tmp_path), {"model": torch.nn.DataParallel(model)}).attach(engine)
    engine.run(DATA, max_epochs=1)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(state["model"]) == {"weight", "bias"}  # no "module." prefix: loadable without DataParallel

    other, _ = model_and_optimizer(1)
    wrapped = torch.nn.DataParallel(other)
    AtomicCheckpoint(str(tmp_path), {"model": wrapped}).load(Engine(lambda e, b: None))
    torch.testing.assert_close(other.weight, model.weight)
