"""The base of every ``pipelines synthesize`` bundle: load a generator, draw seeded samples, write them safely.

A generative bundle's ``configs/synthesize.json`` (layered on its ``train.json``) builds a subclass of
:class:`Synthesizer` as ``synthesizer`` and runs ``$@synthesizer.run()``. The subclass says which files ``count``
samples become (:meth:`Synthesizer.targets`) and how to draw and write them (:meth:`Synthesizer.write`); the base
class does what every generator needs the same way:

- weights come from ``checkpoint`` with ``weights_only=True`` and load strictly (a wrong file is a one-line error);
- every target is checked before the first sample is drawn: an existing file stops the run, unless ``overwrite``, so
  a user's earlier samples are never replaced by accident and nothing is half-written;
- sampling uses a private ``torch.Generator`` seeded with ``seed``: the same seed gives the same files, whatever
  else consumed random numbers before;
- ``synthesis.json`` in the output folder records the bundle's own summary, the seed, the count and the checkpoint.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pipelines.errors import InputError, OutputExistsError
from pipelines.io.atomic import atomic_write_json, json_safe, writable_dir
from pipelines.io.weights import check_weights, load_weights

logger = logging.getLogger(__name__)

__all__ = ["Synthesizer", "SUMMARY_FILE"]

SUMMARY_FILE = "synthesis.json"


class Synthesizer(ABC):
    """Draw ``count`` samples from a trained generator into ``output_dir``.

    Args:
        network: the generator (or the part of a model that generates), built from the bundle's ``network_def``.
        checkpoint: its weights: a bare state dict, or a checkpoint holding it under ``key``.
        output_dir: folder for the samples and ``synthesis.json``; created if missing.
        count: number of samples (at least 1).
        seed: seed of the sampling generator.
        label: the condition of a conditional generator (a class name), or None for the bundle's default.
        overwrite: replace existing files instead of stopping.
        device: where the generator runs.
        key: the network's name in a resumable checkpoint (``{"model": state_dict, ...}``).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        checkpoint: str | Path,
        output_dir: str | Path,
        count: int,
        seed: int = 0,
        label: str | None = None,
        overwrite: bool = False,
        device: str | torch.device = "cpu",
        key: str = "model",
    ) -> None:
        if int(count) < 1:
            raise InputError("--count", f"expected a positive number of samples, got {count}")
        self.network = network
        self.checkpoint = Path(checkpoint)
        self.output_dir = Path(output_dir)
        self.count = int(count)
        self.seed = int(seed)
        self.label = label
        self.overwrite = bool(overwrite)
        self.device = torch.device(device)
        self.key = key

    @abstractmethod
    def targets(self) -> Sequence[Path]:
        """Every file :meth:`write` will create (``synthesis.json`` excluded), checked before anything is drawn."""

    @abstractmethod
    def write(self, generator: torch.Generator) -> Mapping[str, Any]:
        """Draw the samples with ``generator`` (seeded, on the CPU), write them atomically, return a JSON-able
        summary (at least ``{"written": [paths]}``)."""

    def load(self) -> torch.nn.Module:
        """Load the checkpoint strictly into :attr:`network` (after a keys-and-shapes check), in eval mode."""
        check_weights(self.checkpoint, self.network, key=self.key)
        state = load_weights(self.checkpoint)
        if isinstance(state.get(self.key), Mapping):
            state = state[self.key]
        self.network.load_state_dict(state)
        return self.network.to(self.device).eval()

    def run(self) -> dict[str, Any]:
        """Check the targets, load the weights, draw and write; return (and save) the summary."""
        writable_dir(self.output_dir)
        summary_file = self.output_dir / SUMMARY_FILE
        existing = [path for path in [*self.targets(), summary_file] if path.exists()]
        if existing and not self.overwrite:
            raise OutputExistsError(existing[0])
        self.load()
        generator = torch.Generator().manual_seed(self.seed)
        with torch.inference_mode():
            summary = dict(self.write(generator))
        summary = {
            "count": self.count, "seed": self.seed, "label": self.label, "checkpoint": str(self.checkpoint), **summary
        }
        atomic_write_json(summary_file, json_safe({k: _plain(v) for k, v in summary.items()}))
        logger.info("wrote %d samples to %s", self.count, self.output_dir)
        return summary


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
