"""The class-conditional DCGAN networks: shapes, output range, and that the class changes the output."""

from __future__ import annotations

import pytest
import torch

from pipelines.networks.conditional_gan import ConditionalDiscriminator, ConditionalGenerator


@pytest.mark.parametrize(
    "channels, start_size, image_size",
    [((32, 16, 8, 4), 4, 64), ((16, 8), 4, 16), ((8, 4, 4), 2, 16)],
)
def test_generator_shapes_and_range(channels, start_size, image_size):
    torch.manual_seed(0)
    net = ConditionalGenerator(num_classes=6, latent_size=8, embedding_size=4, channels=channels, start_size=start_size)
    images = net(5 * torch.randn(3, 8), torch.tensor([0, 2, 5]))
    assert images.shape == (3, 1, image_size, image_size)
    assert images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("channels, image_size", [((8, 16, 32, 64), 64), ((8, 16), 16)])
def test_discriminator_gives_one_logit_per_image(channels, image_size):
    net = ConditionalDiscriminator(num_classes=6, image_size=image_size, channels=channels)
    assert net(torch.rand(3, 1, image_size, image_size), torch.tensor([1, 3, 4])).shape == (3, 1)


def test_discriminator_refuses_more_halvings_than_pixels():
    with pytest.raises(ValueError, match="halvings"):
        ConditionalDiscriminator(image_size=8, channels=(4, 4, 4, 4))


def test_generator_refuses_latents_of_the_wrong_size():
    with pytest.raises(ValueError, match=r"\[N, 8\]"):
        ConditionalGenerator(latent_size=8, channels=(8, 4))(torch.randn(2, 9), torch.tensor([0, 1]))


def test_the_class_changes_both_networks_outputs():
    torch.manual_seed(0)
    generator = ConditionalGenerator(latent_size=8, embedding_size=4, channels=(16, 8, 8, 4)).eval()
    discriminator = ConditionalDiscriminator(channels=(8, 8, 8, 8)).eval()
    z = torch.randn(1, 8).expand(6, 8)  # one latent, every class
    labels = torch.arange(6)
    with torch.no_grad():
        images = generator(z, labels)
        logits = discriminator(images[:1].expand(6, -1, -1, -1), labels)
    # with the same z, each class gives a different image, and D scores the same image differently per class
    assert all((images[i] - images[j]).abs().max() > 1e-4 for i in range(6) for j in range(i))
    assert logits.unique().numel() == 6


def test_gradients_reach_every_parameter_of_both_networks():
    torch.manual_seed(0)
    generator = ConditionalGenerator(latent_size=8, embedding_size=4, channels=(16, 8, 8, 4))
    discriminator = ConditionalDiscriminator(channels=(8, 8, 8, 8))
    labels = torch.tensor([0, 1, 2, 3])
    discriminator(generator(torch.randn(4, 8), labels), labels).mean().backward()
    for net in (generator, discriminator):
        for name, parameter in net.named_parameters():
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
            assert parameter.grad.abs().sum() > 0, name
