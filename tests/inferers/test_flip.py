"""Tests for :mod:`pipelines.inferers.flip`: the flip (and transpose) test-time ensemble, against hand computations."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SliceInferer
from torch import nn

from pipelines.inferers import FlipEnsembleInferer


class Recorder(nn.Module):
    """A position-dependent 2-class 'network': logits (x * w, 0) with a fixed, asymmetric weight map w, which
    records every input it sees."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.w = torch.arange(size * size, dtype=torch.float32).reshape(size, size) / (size * size)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return torch.cat([x * self.w, torch.zeros_like(x)], dim=1)


def _expected(x: torch.Tensor, net: Recorder, transforms: list) -> torch.Tensor:
    """mean over the (forward, inverse) pairs of inverse(softmax(f(forward(x)))), computed by hand."""
    probs = [inverse(torch.softmax(torch.cat([forward(x) * net.w, torch.zeros_like(x)], 1), 1))
             for forward, inverse in transforms]
    return torch.stack(probs).mean(0)


def test_four_flips_average_the_mapped_back_probabilities() -> None:
    x = torch.rand(1, 1, 4, 4)
    net = Recorder(4)
    out = FlipEnsembleInferer(flip_axes=(0, 1))(x, net)
    flips = [(), (2,), (3,), (2, 3)]
    expected = _expected(x, net, [(lambda t, d=d: torch.flip(t, d) if d else t,) * 2 for d in flips])
    assert len(net.seen) == 4
    torch.testing.assert_close(torch.softmax(out, 1), expected)
    assert torch.equal(net.seen[3], torch.flip(x, (2, 3)))


def test_transpose_doubles_the_passes_with_the_eight_symmetries_of_the_square() -> None:
    x = torch.rand(1, 1, 4, 4)
    net = Recorder(4)
    out = FlipEnsembleInferer(flip_axes=(0, 1), transpose_axes=(0, 1))(x, net)
    assert len(net.seen) == 8
    seen = {tuple(t.flatten().tolist()) for t in net.seen}
    assert len(seen) == 8  # 8 distinct views of an asymmetric input
    pairs = []
    for d in [(), (2,), (3,), (2, 3)]:
        flip = (lambda t, d=d: torch.flip(t, d) if d else t)
        pairs.append((flip, flip))
        pairs.append((lambda t, f=flip: f(t).transpose(2, 3), lambda t, f=flip: f(t.transpose(2, 3))))
    torch.testing.assert_close(torch.softmax(out, 1), _expected(x, net, pairs))


def test_an_equivariant_network_is_unchanged_by_the_ensemble() -> None:
    net = nn.Conv2d(1, 2, 1)  # a 1x1 convolution commutes with every flip and transpose
    x = torch.rand(2, 1, 8, 8)
    out = FlipEnsembleInferer(flip_axes=(0, 1), transpose_axes=(0, 1))(x, net)
    torch.testing.assert_close(torch.softmax(out, 1), torch.softmax(net(x), 1), atol=1e-6, rtol=1e-5)


def test_transpose_of_in_plane_axes_through_a_slice_inferer() -> None:
    """A 3D volume (B, C, H, W, D) inferred slice by slice: the transpose swaps H and W, and the ensemble of a 1x1
    convolution still equals its plain output."""
    net = nn.Conv2d(1, 2, 1)
    x = torch.rand(1, 1, 8, 8, 3)
    inferer = FlipEnsembleInferer(SliceInferer(roi_size=(8, 8), spatial_dim=2), (0, 1), transpose_axes=(0, 1))
    out = inferer(x, net)
    plain = SliceInferer(roi_size=(8, 8), spatial_dim=2)(x, net)
    assert out.shape == (1, 2, 8, 8, 3)
    torch.testing.assert_close(torch.softmax(out, 1), torch.softmax(plain, 1), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("axes", [(0,), (1, 1), (0, 1, 2)])
def test_transpose_needs_two_different_axes(axes: tuple) -> None:
    with pytest.raises(ValueError, match="two different spatial axes"):
        FlipEnsembleInferer(transpose_axes=axes)


def test_no_transpose_by_default_and_for_an_empty_list() -> None:
    assert FlipEnsembleInferer().transposes == [None]
    assert FlipEnsembleInferer(transpose_axes=[]).transposes == [None]
