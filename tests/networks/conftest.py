"""Shared checks for the network tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn


def _gradients_reach_every_parameter(net: nn.Module, x: torch.Tensor) -> None:
    """Cross-entropy of ``net(x)`` against random labels, backpropagated: every parameter gets a finite gradient."""
    logits = net(x)
    labels = torch.randint(0, logits.shape[1], (logits.shape[0], *logits.shape[2:]))
    torch.nn.functional.cross_entropy(logits, labels).backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


@pytest.fixture
def gradients_reach_every_parameter() -> Callable[[nn.Module, torch.Tensor], None]:
    return _gradients_reach_every_parameter
