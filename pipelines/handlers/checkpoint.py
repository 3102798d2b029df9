"""Atomic checkpoints for Ignite engines.

MONAI's ``CheckpointSaver`` writes with ``DiskSaver(atomic=False)``, so a crash mid-write can leave a truncated
file. These handlers write every checkpoint to a temporary file and rename it into place (MONAI lacks that).
Checkpoints hold only ``state_dict`` tensors and plain Python values, so they load with
``torch.load(weights_only=True)`` (e.g. by MONAI's ``CheckpointLoader``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from pipelines.io.atomic import atomic_torch_save

logger = logging.getLogger(__name__)

__all__ = ["AtomicCheckpoint", "BestMetricState", "RNGState"]


def _unwrap(obj: Any) -> Any:
    parallel = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    return obj.module if isinstance(obj, parallel) else obj


class AtomicCheckpoint:
    """Save ``{name: obj.state_dict()}`` atomically to ``save_dir/filename``.

    Two uses:

    * resumable checkpoint, attached to the trainer: rewritten every ``every`` epochs (model, optimiser, scheduler,
      trainer counters, ...), so ``--resume`` always finds a complete file;
    * best model, attached to the validator with ``save_best=True``: rewritten when the validator's key metric
      improved in this run (MONAI workflows set ``state.best_metric_epoch`` to the epoch of the best value).

    Args:
        save_dir: folder of the checkpoint.
        save_dict: objects with ``state_dict()`` (modules, optimisers, schedulers, engines, ...).
        filename: name of the file, rewritten in place.
        save_best: save when the key metric improves instead of every ``every`` epochs.
        every: epochs between saves (ignored with ``save_best``).
        bare: with a single object, save its state dict itself rather than ``{name: state_dict}`` (the model-zoo
            convention for ``models/model.pt``).
        engine_key: if set, the attached engine's own state (epoch and iteration counters) is saved under this
            key too; a bundle config cannot list the trainer in ``save_dict`` without a circular reference.
        resume: at ``STARTED``, load an existing checkpoint into ``save_dict`` (and the engine) before training.
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: Mapping[str, Any],
        filename: str = "checkpoint.pt",
        save_best: bool = False,
        every: int = 1,
        bare: bool = False,
        engine_key: str | None = None,
        resume: bool = False,
    ) -> None:
        if bare and (len(save_dict) != 1 or engine_key):
            raise ValueError("bare=True needs exactly one object in save_dict and no engine_key")
        self.path = Path(save_dir) / filename
        self.save_dict = dict(save_dict)
        self.save_best = save_best
        self.every = every
        self.bare = bare
        self.engine_key = engine_key
        self.resume = resume
        self._engine: Engine | None = None

    def attach(self, engine: Engine) -> None:
        """Register on ``engine``'s ``EPOCH_COMPLETED`` (once), and on ``STARTED`` to resume."""
        self._engine = engine
        if self.resume and not engine.has_event_handler(self.load, Events.STARTED):
            engine.add_event_handler(Events.STARTED, self.load)
        if self.save_best:
            if not engine.has_event_handler(self._save_if_best, Events.EPOCH_COMPLETED):
                engine.add_event_handler(Events.EPOCH_COMPLETED, self._save_if_best)
        elif not engine.has_event_handler(self, Events.EPOCH_COMPLETED):
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.every), self)

    def _objects(self) -> dict[str, Any]:
        objects = dict(self.save_dict)
        if self.engine_key and self._engine is not None:
            objects[self.engine_key] = self._engine
        return objects

    def state(self) -> dict[str, Any]:
        """The checkpoint's content; (Distributed)DataParallel models are saved unwrapped, loadable without DDP."""
        states = {name: _unwrap(obj).state_dict() for name, obj in self._objects().items()}
        return next(iter(states.values())) if self.bare else states

    def load(self, engine: Engine) -> None:
        """Load the checkpoint (``weights_only=True``) into the objects and the engine, keeping ``max_epochs``."""
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no checkpoint to resume from")
        checkpoint = torch.load(self.path, map_location="cpu", weights_only=True)
        max_epochs = engine.state.max_epochs
        objects = {name: _unwrap(obj) for name, obj in self._objects().items()}
        Checkpoint.load_objects(to_load=objects, checkpoint=checkpoint)
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ValueError(f"{self.path}: checkpoint is at epoch {engine.state.epoch}, beyond max_epochs {max_epochs}")
        engine.state.max_epochs = max_epochs
        logger.info("resumed from %s at epoch %d", self.path, engine.state.epoch)

    def __call__(self, engine: Engine) -> None:
        atomic_torch_save(self.state(), self.path)
        logger.debug("saved %s at epoch %d", self.path, engine.state.epoch)

    def _save_if_best(self, engine: Engine) -> None:
        if getattr(engine.state, "best_metric_epoch", -1) == engine.state.epoch:
            self(engine)
            logger.info("epoch %d: new best %.4f, saved %s", engine.state.epoch, engine.state.best_metric, self.path)


class BestMetricState:
    """The best key-metric value and epoch of a MONAI workflow, as a checkpointable object.

    Without it a resumed run would forget its best validation Dice and overwrite ``model.pt`` with a worse model.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def state_dict(self) -> dict[str, float | int]:
        return {
            "best_metric": float(getattr(self.engine.state, "best_metric", -1.0)),
            "best_metric_epoch": int(getattr(self.engine.state, "best_metric_epoch", -1)),
        }

    def load_state_dict(self, state: Mapping[str, float | int]) -> None:
        self.engine.state.best_metric = float(state["best_metric"])
        self.engine.state.best_metric_epoch = int(state["best_metric_epoch"])


class RNGState:
    """PyTorch's global random generator state, as a checkpointable object (a uint8 tensor)."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"torch": torch.get_rng_state()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        torch.set_rng_state(state["torch"])
