"""Atomic checkpoints for Ignite engines, and the checkpointable state that makes a resumed run exact.

MONAI's ``CheckpointSaver`` writes with ``DiskSaver(atomic=False)``, so a crash mid-write can leave a truncated
file. These handlers write every checkpoint to a temporary file and rename it into place (MONAI lacks that).
Checkpoints hold only ``state_dict`` tensors and plain Python values, so they load with
``torch.load(weights_only=True)`` (e.g. by MONAI's ``CheckpointLoader``).

A run resumed from the checkpoint of epoch k repeats the uninterrupted run exactly (on CPU, same seed) when the
checkpoint also holds every random generator that training draws from: :class:`RNGState` (PyTorch's generators,
which drive dropout and the DataLoader's shuffling; NumPy's and Python's global ones) and
:class:`TransformRNGState` (the private ``np.random.RandomState`` of each MONAI random transform).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from monai.transforms import Randomizable, Transform

from pipelines.io.atomic import atomic_torch_save

logger = logging.getLogger(__name__)

__all__ = ["AtomicCheckpoint", "BestMetricState", "RNGState", "TransformRNGState"]


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

    In a distributed run only rank 0 writes, but every rank loads on resume, so that all processes continue from
    the same weights, optimiser state and counters.

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
        """Load the checkpoint (``weights_only=True``) into the objects and the engine, keeping ``max_epochs``.

        Temporary files left by a process killed while writing this checkpoint are deleted first.
        """
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no checkpoint to resume from")
        if idist.get_rank() == 0:
            self._remove_stale_temporaries()
        checkpoint = torch.load(self.path, map_location="cpu", weights_only=True)
        max_epochs = engine.state.max_epochs
        objects = {name: _unwrap(obj) for name, obj in self._objects().items()}
        Checkpoint.load_objects(to_load=objects, checkpoint=checkpoint)
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ValueError(f"{self.path}: checkpoint is at epoch {engine.state.epoch}, beyond max_epochs {max_epochs}")
        engine.state.max_epochs = max_epochs
        logger.info("resumed from %s at epoch %d", self.path, engine.state.epoch)

    def _remove_stale_temporaries(self) -> None:
        # the names pipelines.io.atomic.atomic_path gives its temporary files; nothing else writes them while the
        # run is starting, so any that exist were left by a killed process
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp*"):
            logger.warning("removing %s, left by a run killed while writing its checkpoint", stale)
            stale.unlink(missing_ok=True)

    def __call__(self, engine: Engine) -> None:
        if idist.get_rank() != 0:
            return
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


def _encode_mt19937(state: tuple) -> dict[str, Any]:
    """A NumPy Mersenne Twister state (``get_state()``) as tensors and numbers: ``torch.load(weights_only=True)``
    refuses NumPy arrays."""
    name, keys, pos, has_gauss, cached_gaussian = state
    if name != "MT19937":
        raise ValueError(f"unsupported NumPy bit generator {name}")
    return {
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def _decode_mt19937(state: Mapping[str, Any]) -> tuple:
    """The inverse of :func:`_encode_mt19937`: a tuple for ``set_state``."""
    keys = state["keys"].numpy().astype(np.uint32)
    return "MT19937", keys, int(state["pos"]), int(state["has_gauss"]), float(state["cached_gaussian"])


class RNGState:
    """The global random generators as a checkpointable object: PyTorch's (CPU, and CUDA when available), NumPy's
    and Python's ``random``.

    PyTorch's generator drives dropout, weight initialisation and the DataLoader's shuffling (each epoch's
    ``RandomSampler`` and loader iterator draw their seeds from it); NumPy's and Python's serve any code that uses
    the global functions. MONAI's random transforms have generators of their own: see :class:`TransformRNGState`.
    Checkpoints written before NumPy's and Python's states were added load with those generators left as they are.
    """

    def state_dict(self) -> dict[str, Any]:
        version, mt_state, gauss_next = random.getstate()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": _encode_mt19937(np.random.get_state()),
            "python": {"version": version, "state": torch.tensor(mt_state, dtype=torch.int64), "gauss_next": gauss_next},
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if "numpy" in state:
            np.random.set_state(_decode_mt19937(state["numpy"]))
        if "python" in state:
            python = state["python"]
            random.setstate((python["version"], tuple(int(v) for v in python["state"].tolist()), python["gauss_next"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class TransformRNGState:
    """The random generators of every MONAI :class:`~monai.transforms.Randomizable` inside a transform, as a
    checkpointable object.

    Each random transform draws from its own ``np.random.RandomState`` (``self.R``), seeded when the pipeline is
    built; without these states a resumed run would augment its remaining epochs as the first epochs were, not as
    the uninterrupted run would have. The transform is walked through the attributes of its transforms (a
    ``Compose`` and its ``transforms``, and inner transforms such as ``RandAffined.rand_affine``), and each generator
    is saved under its attribute path (``"transform.transforms.5.rand_affine.rand_affine_grid"``).

    Args:
        transform: the pipeline whose random transforms to save (e.g. the training ``Compose``).
    """

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def generators(self) -> dict[str, np.random.RandomState]:
        """``{attribute path: generator}`` of every randomizable object reachable from the transform."""
        return dict(_walk_generators(self.transform, "transform", set()))

    def state_dict(self) -> dict[str, dict[str, Any]]:
        return {path: _encode_mt19937(generator.get_state()) for path, generator in self.generators().items()}

    def load_state_dict(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        generators = self.generators()
        if set(state) != set(generators):
            missing, unknown = sorted(set(generators) - set(state)), sorted(set(state) - set(generators))
            raise ValueError(
                "the checkpoint's random transforms differ from this pipeline's "
                f"(not in the checkpoint: {missing}; not in the pipeline: {unknown})"
            )
        for path, generator in generators.items():
            generator.set_state(_decode_mt19937(state[path]))


def _walk_generators(obj: Any, path: str, seen: set[int]) -> Iterator[tuple[str, np.random.RandomState]]:
    """Yield ``(path, obj.R)`` for ``obj`` and every transform it holds, depth first, each object once."""
    if id(obj) in seen:
        return
    if isinstance(obj, (list, tuple)):
        items: Iterator[tuple[Any, Any]] = iter(enumerate(obj))
    elif isinstance(obj, dict):
        items = iter(obj.items())
    elif isinstance(obj, (Transform, Randomizable)):
        seen.add(id(obj))
        if isinstance(obj, Randomizable) and isinstance(getattr(obj, "R", None), np.random.RandomState):
            yield path, obj.R
        items = iter(vars(obj).items())
    else:
        return
    for key, value in items:
        if isinstance(value, (list, tuple, dict, Transform, Randomizable)):
            yield from _walk_generators(value, f"{path}.{key}", seen)
