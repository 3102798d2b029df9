"""Tests for :mod:`pipelines.engines.pix2pix` and the shared step trainer (:func:`create_step_trainer`)."""

from __future__ import annotations

import copy

import pytest
import torch
from ignite.engine import Engine, Events
from monai.networks.nets import PatchDiscriminator

from pipelines.engines import Pix2PixKeys, Pix2PixStep, create_step_trainer, loss_averages
from pipelines.networks import ResnetGenerator

LOSSES = [Pix2PixKeys.LOSS, Pix2PixKeys.LOSS_G, Pix2PixKeys.LOSS_ADV, Pix2PixKeys.LOSS_L1, Pix2PixKeys.LOSS_D]


def tiny_step(seed: int = 0, lambda_l1: float = 100.0) -> Pix2PixStep:
    torch.manual_seed(seed)
    g = ResnetGenerator(features=4, n_blocks=1)
    d = PatchDiscriminator(spatial_dims=2, channels=4, in_channels=2, out_channels=1, num_layers_d=1)
    return Pix2PixStep(
        g, d,
        optimizer_g=torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999)),
        optimizer_d=torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999)),
        lambda_l1=lambda_l1,
    )


def random_batch(seed: int, batch_size: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.rand(batch_size, 1, 16, 16, generator=generator) * 2 - 1 for k in ("mr", "ct")}


def snapshot(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def changed(before: list[torch.Tensor], net: torch.nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


def test_returns_every_key_and_the_generator_loss_adds_up() -> None:
    out = tiny_step()(None, random_batch(0))
    assert set(out) == set(Pix2PixKeys)
    assert all(isinstance(out[k], float) and torch.isfinite(torch.tensor(out[k])) for k in LOSSES)
    assert out[Pix2PixKeys.LOSS_G] == pytest.approx(out[Pix2PixKeys.LOSS_ADV] + out[Pix2PixKeys.LOSS_L1], rel=1e-6)
    assert out[Pix2PixKeys.LOSS] == out[Pix2PixKeys.LOSS_G]
    fake = out[Pix2PixKeys.FAKE_CT]
    assert fake.shape == (2, 1, 16, 16) and not fake.requires_grad


@pytest.mark.parametrize("lambda_l1", [100.0, 2.5])
def test_l1_term_is_lambda_times_the_mean_absolute_error_before_the_update(lambda_l1: float) -> None:
    step = tiny_step(lambda_l1=lambda_l1)
    batch = random_batch(1)
    generator_before = copy.deepcopy(step.generator).train()
    with torch.no_grad():
        expected = lambda_l1 * (generator_before(batch["mr"]) - batch["ct"]).abs().mean().item()
    out = step(None, batch)
    assert out[Pix2PixKeys.LOSS_L1] == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(out[Pix2PixKeys.FAKE_CT], generator_before(batch["mr"]).detach())


def test_one_step_updates_both_networks_with_d_frozen_during_the_generator_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    step = tiny_step()
    g_before, d_before = snapshot(step.generator), snapshot(step.discriminator)
    original_step_g = step.optimizer_g.step
    d_at_g_step: list[tuple[bool, bool]] = []  # (no gradient in D, D frozen) when G's optimiser steps

    def recording_step(*args, **kwargs):
        parameters = list(step.discriminator.parameters())
        d_at_g_step.append((all(p.grad is None for p in parameters), not any(p.requires_grad for p in parameters)))
        return original_step_g(*args, **kwargs)

    monkeypatch.setattr(step.optimizer_g, "step", recording_step)
    step(None, random_batch(2))
    assert d_at_g_step == [(True, True)]
    assert changed(g_before, step.generator) and changed(d_before, step.discriminator)
    assert all(p.requires_grad for p in step.discriminator.parameters())  # D is trainable again afterwards


class RecordingHandler:
    """An object with ``attach(engine)``, as MONAI's train handlers; records the epoch metrics it sees."""

    def __init__(self) -> None:
        self.engines: list[Engine] = []
        self.seen: list[dict[str, float]] = []

    def attach(self, engine: Engine) -> None:
        self.engines.append(engine)
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: self.seen.append(dict(e.state.metrics)))


def test_step_trainer_averages_losses_steps_schedulers_per_epoch_and_attaches_handlers() -> None:
    step = tiny_step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(step.optimizer_g, lambda epoch: 0.5**epoch)
    handler = RecordingHandler()
    names = [Pix2PixKeys.LOSS_G, Pix2PixKeys.LOSS_L1, Pix2PixKeys.LOSS_D]
    trainer = create_step_trainer(step, schedulers=[scheduler], handlers=[handler], metrics=loss_averages(names))
    outputs: list[dict] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(e.state.output))
    trainer.run([random_batch(seed, batch_size=1) for seed in range(3)], max_epochs=2)

    assert handler.engines == [trainer]
    assert scheduler.last_epoch == 2
    assert step.optimizer_g.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.25)
    assert step.optimizer_d.param_groups[0]["lr"] == pytest.approx(2e-4)  # not scheduled
    assert len(handler.seen) == 2
    for epoch, metrics in enumerate(handler.seen):  # metrics are attached first, so handlers see this epoch's
        epoch_outputs = outputs[3 * epoch: 3 * epoch + 3]
        for name in names:
            assert metrics[name] == pytest.approx(sum(o[name] for o in epoch_outputs) / 3, rel=1e-5)
    assert set(names) <= set(trainer.state.metrics)


def test_step_trainer_keeps_max_epochs_for_runs_that_name_none() -> None:
    trainer = create_step_trainer(lambda engine, batch: {"loss": float(batch)}, metrics=loss_averages(["loss"]),
                                  max_epochs=3)
    trainer.run([1.0, 2.0, 6.0])
    assert trainer.state.epoch == 3
    assert trainer.state.metrics["loss"] == pytest.approx(3.0)
