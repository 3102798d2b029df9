"""Training throughput: images per second through the training iterations (data loading included).

Time spent in ``EPOCH_COMPLETED`` handlers (validation, checkpoints, figures) is left out, so the figure measures
the training loop itself.
"""

from __future__ import annotations

import time

from ignite.engine import Engine, Events

__all__ = ["Throughput"]


class Throughput:
    """Put ``images_per_s`` (this epoch) and ``train_time_s`` (cumulative) into ``engine.state.metrics``.

    images/s = (images in the epoch's batches) / (time from ``EPOCH_STARTED`` to the last ``ITERATION_COMPLETED``).

    Args:
        batch_key: key of the image tensor in a batch dict; its first dimension counts the images.
    """

    def __init__(self, batch_key: str = "image") -> None:
        self.batch_key = batch_key
        self.total_time = 0.0
        self._start = 0.0
        self._last = 0.0
        self._images = 0

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self._epoch_started, Events.EPOCH_STARTED):
            engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
            # registered before the other EPOCH_COMPLETED handlers of the bundle, so metrics are set for them
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _epoch_started(self, engine: Engine) -> None:
        self._start = self._last = time.perf_counter()
        self._images = 0

    def _iteration_completed(self, engine: Engine) -> None:
        self._last = time.perf_counter()
        batch = engine.state.batch
        if isinstance(batch, dict):
            self._images += int(batch[self.batch_key].shape[0])
        else:  # decollated: one entry per image
            self._images += len(batch)

    def _epoch_completed(self, engine: Engine) -> None:
        elapsed = max(self._last - self._start, 1e-9)
        self.total_time += elapsed
        engine.state.metrics["images_per_s"] = self._images / elapsed
        engine.state.metrics["train_time_s"] = self.total_time

    def state_dict(self) -> dict[str, float]:
        return {"total_time": self.total_time}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.total_time = float(state["total_time"])
