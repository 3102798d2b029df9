"""Average the class probabilities of several trained networks, as one network with one weights file.

MONAI ensembles at the post-processing level (``EnsembleEvaluator`` + ``MeanEnsembled``: one checkpoint loader and
one prediction key per member), which does not fit a bundle whose evaluation, inference and explanation configs
each load a single ``model`` into a single ``network``. Written here: the ensemble is itself a network, so every
config, inferer (flip test-time augmentation included) and checkpoint check works on it unchanged.

For members f_1 ... f_M returning class logits,

    p(x) = (1/M) sum_m softmax(f_m(x)),      forward(x) = log max(p(x), eps)

so that the ``softmax`` every segmentation inferer or post-processing applies to a network's output gives back p
exactly (p sums to 1 over the classes, hence softmax(log p) = p). Flip test-time augmentation wrapped around the
ensemble averages over members and flips alike. Its weights file is the members' state dicts side by side under
``members.<m>.`` (:func:`ensemble_weights`), so the file itself says how many members it holds
(:func:`member_count`) and :func:`fit_to_weights` builds the matching network from a bundle's single
``network_def``: a bundle ships an ensemble by shipping its weights, and still runs a single model's weights.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from pipelines.errors import InputError
from pipelines.io.weights import load_weights

__all__ = ["ProbabilityEnsemble", "ensemble_weights", "member_count", "fit_to_weights"]

_MEMBER_KEY = re.compile(r"^members\.(\d+)\.")


class ProbabilityEnsemble(nn.Module):
    """Mean of the members' softmax probabilities, returned as log-probabilities (see the module docstring).

    Args:
        members: networks with the same input and output shapes (typically the same architecture trained with
            different seeds or on different folds). A bundle config builds it from a list of network configs.
        eps: floor of the mean probability before the log, so that the output stays finite.
    """

    def __init__(self, members: Sequence[nn.Module], eps: float = 1e-6) -> None:
        super().__init__()
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member network")
        self.members = nn.ModuleList(members)
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([torch.softmax(member(x), dim=1) for member in self.members]).mean(dim=0)
        return torch.log(probabilities.clamp_min(self.eps))


def ensemble_weights(paths: Sequence[str | Path], key: str = "model") -> dict[str, torch.Tensor]:
    """The state dict of a :class:`ProbabilityEnsemble` whose members are the weights in ``paths``, in order.

    Each file is read with ``weights_only=True`` (:func:`pipelines.io.weights.load_weights`); a bare ``model.pt``
    and a resumable checkpoint holding ``key`` are both accepted.

    Raises:
        InputError: a file is unreadable, or its weights are not a state dict.
    """
    combined: dict[str, torch.Tensor] = {}
    for m, path in enumerate(paths):
        state = load_weights(path)
        if isinstance(state.get(key), Mapping):
            state = state[key]
        if not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise InputError(path, "not a network state dict (its values are not all tensors)")
        combined.update({f"members.{m}.{name}": value for name, value in state.items()})
    return combined


def member_count(keys: Iterable[str]) -> int:
    """The number of members of an ensemble state dict (every key ``members.<m>.<name>``: ``max m + 1``); 0 for the
    state dict of a single network."""
    indices = [_MEMBER_KEY.match(key) for key in keys]
    if not indices or not all(indices):
        return 0
    return max(int(match.group(1)) for match in indices if match) + 1


def fit_to_weights(network: nn.Module, path: str | Path, key: str = "model") -> nn.Module:
    """``network``, or a :class:`ProbabilityEnsemble` of deep copies of it when the weights at ``path`` are an
    ensemble's (:func:`member_count` > 0) and ``network`` is not one already.

    A bundle config builds it (``"network": {"_target_": "pipelines.networks.ensemble.fit_to_weights", "network":
    ..., "path": "@ckpt_path"}``) so that the same inference config runs the shipped ensemble and a single
    model's weights. A missing file leaves ``network`` as it is (the checkpoint loader then names the file).

    Raises:
        InputError: the file exists but is unreadable (:func:`pipelines.io.weights.load_weights`).
    """
    if isinstance(network, ProbabilityEnsemble) or not Path(path).is_file():
        return network
    state = load_weights(path)
    if isinstance(state.get(key), Mapping):
        state = state[key]
    count = member_count(state.keys())
    if count == 0:
        return network
    return ProbabilityEnsemble([copy.deepcopy(network) for _ in range(count)])
