"""DiffAugment: the transforms on hand-checkable cases, gradients through them, identity in eval mode."""

from __future__ import annotations

import torch

from pipelines.networks.diffaugment import DiffAugment, random_cutout, random_translation


def test_translation_shifts_whole_pixels_with_zero_fill() -> None:
    torch.manual_seed(0)
    image = torch.arange(1, 17, dtype=torch.float32).reshape(1, 1, 4, 4).repeat(8, 2, 1, 1)
    shifted = random_translation(image, 0.5)
    for k in range(8):  # each output is the input moved by some (dy, dx) in [-2, 2], zeros elsewhere
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                expected = torch.zeros(2, 4, 4)
                src = image[k, :, max(0, -dy):4 - max(0, dy), max(0, -dx):4 - max(0, dx)]
                expected[:, max(0, dy):4 - max(0, -dy), max(0, dx):4 - max(0, -dx)] = src
                found |= torch.equal(shifted[k], expected)
        assert found
    assert torch.equal(random_translation(image, 0.0), image)


def test_cutout_zeros_one_square_per_image() -> None:
    torch.manual_seed(1)
    out = random_cutout(torch.ones(16, 2, 8, 8), 0.5)
    zeros = (out == 0).float()
    assert torch.equal(zeros.sum(dim=(2, 3)), torch.full((16, 2), 16.0))  # a 4x4 square, same in every channel
    for k in range(16):
        rows, cols = torch.nonzero(zeros[k, 0], as_tuple=True)
        assert rows.max() - rows.min() == 3 and cols.max() - cols.min() == 3


def test_gradients_flow_and_eval_is_identity() -> None:
    torch.manual_seed(2)
    critic = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(1))

    class WithLabels(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = critic

        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return self.net(x) + labels[:, None].float()

    d = DiffAugment(WithLabels())
    images = torch.rand(4, 2, 16, 16, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3])
    d(images, labels).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    d.eval()
    assert torch.equal(d(images, labels), WithLabels.forward(d.discriminator, images, labels))
