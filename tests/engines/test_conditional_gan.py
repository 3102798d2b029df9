"""The conditional hooks around MONAI's GanTrainer: losses by hand, training mode, seeded validation latents."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader

from pipelines.engines.conditional_gan import (
    ClassConditionalSampler,
    ConditionalAdversarialLoss,
    ConditionalLatents,
    conditional_gan_trainer,
)
from pipelines.networks.conditional_gan import ConditionalDiscriminator, ConditionalGenerator


class FixedLogits(torch.nn.Module):
    """D(x, y) = the logit stored for the image's first pixel value (0 -> real_logit, 1 -> fake_logit)."""

    def __init__(self, real_logit: float, fake_logit: float) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor([real_logit, fake_logit]))

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.logits[images[:, 0, 0, 0].long()][:, None]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("real_logit, fake_logit", [(2.0, -1.0), (0.5, 0.3)])
def test_losses_match_the_hand_computed_values(real_logit: float, fake_logit: float) -> None:
    reals, fakes = torch.zeros(3, 1, 4, 4), torch.ones(3, 1, 4, 4)
    labels = torch.tensor([0, 1, 2])
    bce = ConditionalAdversarialLoss(FixedLogits(real_logit, fake_logit), criterion="bce")
    # non-saturating GAN: L_D = -log s(a) - log(1 - s(b)); L_G = -log s(b)
    expected_d = -math.log(_sigmoid(real_logit)) - math.log(1 - _sigmoid(fake_logit))
    assert bce.discriminator_loss((fakes, labels), (reals, labels)).item() == pytest.approx(expected_d, rel=1e-5)
    assert bce.generator_loss((fakes, labels)).item() == pytest.approx(-math.log(_sigmoid(fake_logit)), rel=1e-5)
    # LSGAN: L_D = 1/2 (a - 1)^2 + 1/2 b^2; L_G = (b - 1)^2
    lsgan = ConditionalAdversarialLoss(FixedLogits(real_logit, fake_logit), criterion="least_squares")
    expected_d = 0.5 * (real_logit - 1) ** 2 + 0.5 * fake_logit**2
    assert lsgan.discriminator_loss((fakes, labels), (reals, labels)).item() == pytest.approx(expected_d, rel=1e-5)
    assert lsgan.generator_loss((fakes, labels)).item() == pytest.approx((fake_logit - 1) ** 2, rel=1e-5)


def test_discriminator_loss_does_not_reach_the_generator() -> None:
    generator = ConditionalGenerator(latent_size=4, embedding_size=2, channels=(8, 4), start_size=4)
    discriminator = ConditionalDiscriminator(image_size=16, channels=(4, 4))
    labels = torch.tensor([0, 1])
    fakes = generator(torch.randn(2, 4), labels)
    loss = ConditionalAdversarialLoss(discriminator)
    loss.discriminator_loss((fakes, labels), (torch.rand(2, 1, 16, 16), labels)).backward()
    assert all(p.grad is None for p in generator.parameters())
    assert all(p.grad is not None for p in discriminator.parameters())


def test_latents_are_drawn_for_every_class_from_the_global_generator() -> None:
    torch.manual_seed(0)
    z, labels = ConditionalLatents(6)(600, 5)
    assert z.shape == (600, 5) and labels.shape == (600,) and set(labels.tolist()) == set(range(6))
    torch.manual_seed(0)
    assert torch.equal(ConditionalLatents(6)(600, 5)[1], labels)


def test_trainer_updates_both_networks_in_training_mode_and_reports_both_losses() -> None:
    torch.manual_seed(0)
    generator = ConditionalGenerator(latent_size=4, embedding_size=2, channels=(8, 4), start_size=4)
    discriminator = ConditionalDiscriminator(image_size=16, channels=(4, 4))
    data = [{"image": torch.rand(1, 16, 16), "label": torch.tensor(k % 6)} for k in range(8)]
    before = {name: p.detach().clone() for name, p in generator.named_parameters()}
    modes = []
    loss = ConditionalAdversarialLoss(discriminator)
    trainer = conditional_gan_trainer(
        6, generator, discriminator, loss, device="cpu", max_epochs=1,
        train_data_loader=DataLoader(data, batch_size=4),
        g_optimizer=torch.optim.Adam(generator.parameters(), 1e-3),
        d_optimizer=torch.optim.Adam(discriminator.parameters(), 1e-3),
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: modes.append(generator.training))
    generator.eval()  # as a validator leaves it
    trainer.run()
    assert modes == [True, True]
    output = trainer.state.output
    assert output["loss"] == output["loss_G"] == output["g_loss"] and output["loss_D"] == output["d_loss"]
    fakes, fake_labels = output["fakes"]
    assert fakes.shape == (4, 1, 16, 16) and fake_labels.shape == (4,)
    assert any(not torch.equal(before[name], p) for name, p in generator.named_parameters())


def test_sampler_repeats_its_latents_after_reset_and_leaves_the_global_generator_alone() -> None:
    sampler = ClassConditionalSampler(latent_size=3, seed=7)
    echo = lambda z, labels: z  # noqa: E731 - the latents themselves
    labels = torch.tensor([0, 1, 2, 3])
    torch.manual_seed(0)
    first, second = sampler(labels, echo), sampler(labels, echo)
    assert not torch.equal(first, second)  # consecutive batches get new latents
    sampler.reset()
    assert torch.equal(sampler(labels, echo), first)
    after = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), after)
