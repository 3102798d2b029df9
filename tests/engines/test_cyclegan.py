from __future__ import annotations

import copy
import itertools

import pytest
import torch
from monai.networks.nets import PatchDiscriminator

from pipelines.engines import (
    CycleGANKeys,
    CycleGANStep,
    ImagePool,
    LinearDecay,
    checkpoint_objects,
    create_cyclegan_trainer,
    linear_decay,
)
from pipelines.networks import ResnetGenerator

LOSSES = [CycleGANKeys.LOSS_G, CycleGANKeys.LOSS_ADV, CycleGANKeys.LOSS_CYCLE, CycleGANKeys.LOSS_IDENTITY,
          CycleGANKeys.LOSS_D_CT, CycleGANKeys.LOSS_D_MR]


def tiny_step(seed: int = 0, lambda_identity: float | None = None) -> CycleGANStep:
    torch.manual_seed(seed)
    g, f = (ResnetGenerator(features=4, n_blocks=1) for _ in range(2))
    d_ct, d_mr = (PatchDiscriminator(spatial_dims=2, channels=4, in_channels=1, num_layers_d=2) for _ in range(2))
    return CycleGANStep(
        g, f, d_ct, d_mr,
        optimizer_g=torch.optim.Adam(itertools.chain(g.parameters(), f.parameters()), lr=2e-4, betas=(0.5, 0.999)),
        optimizer_d=torch.optim.Adam(itertools.chain(d_ct.parameters(), d_mr.parameters()), lr=2e-4, betas=(0.5, 0.999)),
        pool_ct=ImagePool(4, seed=0), pool_mr=ImagePool(4, seed=1), lambda_identity=lambda_identity,
    )


def random_batch(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.rand(2, 1, 32, 32, generator=generator) * 2 - 1 for k in ("mr", "ct")}


def snapshot(*nets: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for net in nets for p in net.parameters()]


def test_losses_are_finite_and_the_generator_loss_adds_up():
    step = tiny_step()
    for seed in range(2):
        out = step(None, random_batch(seed))
        assert all(isinstance(out[k], float) and torch.isfinite(torch.tensor(out[k])) for k in LOSSES)
        weighted = out[CycleGANKeys.LOSS_ADV] + out[CycleGANKeys.LOSS_CYCLE] + out[CycleGANKeys.LOSS_IDENTITY]
        assert out[CycleGANKeys.LOSS_G] == pytest.approx(weighted, rel=1e-5)
        assert out[CycleGANKeys.FAKE_CT].shape == (2, 1, 32, 32) and not out[CycleGANKeys.FAKE_CT].requires_grad
    assert step.lambda_identity == 5.0 and len(step.pool_ct) == len(step.pool_mr) == 4


def test_generator_update_leaves_discriminators_alone_and_vice_versa(monkeypatch):
    step = tiny_step()
    g_nets, d_nets = (step.g_mr_to_ct, step.f_ct_to_mr), (step.d_ct, step.d_mr)
    calls = []
    for name in ("optimizer_g", "optimizer_d"):
        optimizer = getattr(step, name)
        original = optimizer.step

        def recording_step(*args, name=name, original=original, **kwargs):
            # at each optimiser step, record which weights have changed since the previous one
            calls.append((name, snapshot(*g_nets), snapshot(*d_nets)))
            if name == "optimizer_g":  # frozen: the generator loss's backward left no gradient in D_CT, D_MR
                assert all(p.grad is None for net in d_nets for p in net.parameters())
            return original(*args, **kwargs)

        monkeypatch.setattr(optimizer, "step", recording_step)
    g_before, d_before = snapshot(*g_nets), snapshot(*d_nets)
    step(None, random_batch(0))
    g_after, d_after = snapshot(*g_nets), snapshot(*d_nets)
    (name_g, g_at_g, d_at_g), (name_d, g_at_d, d_at_d) = calls
    assert (name_g, name_d) == ("optimizer_g", "optimizer_d")

    def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b))

    assert same(d_at_d, d_before)  # the generator step did not touch D_CT, D_MR
    assert not same(g_at_d, g_before)  # ... but did update G, F
    assert same(g_after, g_at_d)  # the discriminator step did not touch G, F
    assert not same(d_after, d_at_d)  # ... but did update D_CT, D_MR
    assert all(p.requires_grad for net in d_nets for p in net.parameters())  # unfrozen afterwards


def test_identity_term_can_be_switched_off():
    out = tiny_step(lambda_identity=0.0)(None, random_batch(0))
    assert out[CycleGANKeys.LOSS_IDENTITY] == 0.0


@pytest.mark.parametrize(
    "epoch, factor",
    [(0, 1.0), (2, 1.0), (3, 1 - 1 / 5), (4, 1 - 2 / 5), (6, 1 / 5), (7, 0.0), (20, 0.0)],
)
def test_linear_decay_follows_the_formula(epoch, factor):
    """n_epochs=3, n_epochs_decay=4: factor(e) = 1 - max(0, e + 1 - 3) / 5, clamped at 0."""
    assert LinearDecay(3, 4)(epoch) == pytest.approx(factor)


def test_trainer_steps_the_schedule_each_epoch_and_checkpoints_everything():
    step = tiny_step()
    schedulers = [linear_decay(step.optimizer_g, 1, 3), linear_decay(step.optimizer_d, 1, 3)]
    trainer = create_cyclegan_trainer(step, schedulers)
    trainer.run([random_batch(0)], max_epochs=3)
    assert set(trainer.state.output) >= set(LOSSES)
    for optimizer in (step.optimizer_g, step.optimizer_d):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-4 * LinearDecay(1, 3)(3))  # 3 epochs done
    objects = checkpoint_objects(step, *schedulers, trainer=trainer)
    assert len(objects) == 11
    assert all(hasattr(o, "state_dict") and hasattr(o, "load_state_dict") for o in objects.values())
    assert schedulers[0].state_dict()["lr_lambdas"][0] == {"n_epochs": 1, "n_epochs_decay": 3}


def test_resumed_run_reproduces_the_next_losses():
    """State restored from checkpoint_objects (pools included) gives bit-identical losses to the uninterrupted run."""
    step = tiny_step(seed=0)
    for seed in range(3):  # fills the pools (size 4) so the resumed part draws from them
        step(None, random_batch(seed))
    saved = {name: copy.deepcopy(obj.state_dict()) for name, obj in checkpoint_objects(step).items()}
    expected = [step(None, random_batch(seed)) for seed in (3, 4)]

    resumed = tiny_step(seed=1)  # different initial weights, overwritten by the checkpoint
    for name, obj in checkpoint_objects(resumed).items():
        obj.load_state_dict(saved[name])
    for seed, want in zip((3, 4), expected):
        got = resumed(None, random_batch(seed))
        assert [got[k] for k in LOSSES] == [want[k] for k in LOSSES]
