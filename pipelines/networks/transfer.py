"""Initialise the encoder of a MONAI UNet from another UNet's weights (pre-training, e.g. by denoising).

MONAI's UNet is built recursively as ``Sequential(down_k, SkipConnection(<level k+1>), up_k)`` with the bottom layer
innermost, so its *encoder* (contracting path) is the ``down_k`` of every level plus the bottom layer:
``model.0``, ``model.1.submodule.0``, ``model.1.submodule.1.submodule.0``, ..., and the innermost ``submodule``.
A denoising UNet (``mr_denoising_ae``: one output channel) and a segmentation UNet (``lv_segmentation_unet``: two)
built with the same channels, strides, residual units and norm have identical encoder parameter names and shapes;
only the last up-sampling layer differs. MONAI has no partial-loading helper for this (its ``CheckpointLoader``
with ``strict=False`` would also take the decoder and silently skip mismatches), hence this module.

Used from a bundle config (``lv_segmentation_unet`` override)::

    "network": {"_target_": "pipelines.networks.transfer.load_encoder", "network": "@network_def",
                "checkpoint": "bundles/mr_denoising_ae/models/model.pt", "device": "@device"}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from monai.networks.layers import SkipConnection
from monai.networks.nets import UNet
from torch import nn

from pipelines.errors import InputError
from pipelines.io.weights import load_weights

logger = logging.getLogger(__name__)

__all__ = ["encoder_prefixes", "encoder_keys", "load_encoder"]


def _find_unet(network: nn.Module) -> tuple[str, UNet]:
    """The first MONAI UNet inside ``network`` (itself, or wrapped: ``ScaledNetwork``) and its name prefix."""
    for name, module in network.named_modules():
        if isinstance(module, UNet):
            return (name + "." if name else ""), module
    raise ValueError(f"{type(network).__name__} holds no MONAI UNet")


def encoder_prefixes(unet: UNet) -> list[str]:
    """Module names (relative to ``unet``) of the down layer of every level, then the bottom layer."""
    prefixes: list[str] = []
    block: nn.Module = unet.model
    name = "model"
    while isinstance(block, nn.Sequential) and len(block) == 3 and isinstance(block[1], SkipConnection):
        prefixes.append(f"{name}.0")
        name, block = f"{name}.1.submodule", block[1].submodule
    prefixes.append(name)
    return prefixes


def encoder_keys(network: nn.Module) -> list[str]:
    """The state-dict keys of ``network``'s (possibly wrapped) UNet encoder, with the wrapper's prefix."""
    outer, unet = _find_unet(network)
    prefixes = tuple(outer + p + "." for p in encoder_prefixes(unet))
    return [key for key in network.state_dict() if key.startswith(prefixes)]


def load_encoder(
    network: nn.Module, checkpoint: str | Path, device: str | torch.device | None = None, key: str = "model"
) -> nn.Module:
    """Copy the encoder weights of ``checkpoint`` into ``network`` (in place) and return it, on ``device``.

    Args:
        network: a UNet, or a wrapper holding one under the same name as in the checkpoint.
        checkpoint: a bare state dict (``model.pt``) or a resumable checkpoint whose ``key`` entry is one.
        device: where to move the network afterwards; None leaves it.
        key: the entry of a resumable checkpoint holding the model.

    Raises:
        InputError: the checkpoint lacks an encoder weight or holds one of another shape (naming the first).
    """
    state: Mapping[str, object] = load_weights(checkpoint)
    if key in state and isinstance(state[key], Mapping):
        state = state[key]  # type: ignore[assignment]
    own = network.state_dict()
    keys = encoder_keys(network)
    for name in keys:
        if name not in state:
            raise InputError(checkpoint, f"no encoder weight {name!r} for {type(network).__name__}")
        if tuple(state[name].shape) != tuple(own[name].shape):  # type: ignore[union-attr]
            raise InputError(checkpoint, f"{name}: shape {tuple(state[name].shape)} != {tuple(own[name].shape)}")  # type: ignore[union-attr]
    network.load_state_dict({name: state[name] for name in keys}, strict=False)
    logger.info("initialised %d encoder tensors from %s", len(keys), checkpoint)
    return network.to(device) if device is not None else network
