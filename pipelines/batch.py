"""Running an image-to-files bundle workflow over many inputs, carrying on past an input that fails.

``predict`` and ``explain`` give all their (validated) inputs to one MONAI workflow, whose evaluator reads, infers
and writes them one at a time, in order. An exception ends an Ignite run, so when one input fails mid-run
(unreadable after all, out of memory, a write error) :func:`run_carrying_on` reports that input, deletes the files
it had written, and builds a new workflow for the inputs after it. The input that failed is the last one the
evaluator started to fetch: the runner counts ``GET_BATCH_STARTED`` events (batch size 1, no shuffling). A failure
before the first input is fetched (loading the weights, starting the tracker) is not an input's fault and is raised.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from pipelines.errors import PipelineError

__all__ = ["WorkItem", "BatchOutcome", "run_carrying_on", "failure_reason"]

logger = logging.getLogger(__name__)

MAX_REASON = 300  # characters of an unexpected exception's message kept in the one-line report


@dataclass(frozen=True)
class WorkItem:
    """One input of a batch.

    Args:
        item: the dataset item given to the workflow (``{"image": ..., "name": ...}``).
        source: the file or folder the user gave, named in messages.
        outputs: every file the workflow writes for this input.
    """

    item: dict[str, Any]
    source: str
    outputs: tuple[Path, ...]


@dataclass
class BatchOutcome:
    """The inputs whose outputs were all written, and the inputs that failed with their one-line reasons."""

    done: list[WorkItem]
    failed: dict[str, str]


def run_carrying_on(
    items: Sequence[WorkItem], build: Callable[[Sequence[WorkItem]], ConfigWorkflow], engine_id: str = "evaluator"
) -> BatchOutcome:
    """Run the workflows ``build(remaining)`` until every input is written or has failed.

    After a failure, the stopped engine is completed (``COMPLETED`` fired) so that its handlers close what they
    opened: a tracked batch with failures is one MLflow run per stretch of inputs between failures, each closed.

    Args:
        items: the inputs, in the order the workflow processes them.
        build: makes a workflow that processes ``remaining``.
        engine_id: config id of the engine that iterates over the inputs.

    Returns:
        The inputs done and the inputs failed. Files of a failed input written by the failing workflow are
        deleted (also when they replaced older files with ``--overwrite``: the old content is gone already, and
        half a set of outputs from a failed input must not pass for a result).

    Raises:
        Exception: what the workflow raised when no input was being processed (the first :class:`PipelineError`
            in its chain of causes, if any, for a one-line message).
    """
    remaining, outcome = list(items), BatchOutcome(done=[], failed={})
    while remaining:
        workflow = build(remaining)
        before = {path: _signature(path) for work in remaining for path in work.outputs}
        fetched: list[int] = []  # one entry per input the engine started to fetch
        workflow.initialize()
        engine = None
        try:
            if engine_id in workflow.parser:
                engine = workflow.parser.get_parsed_content(engine_id)
                engine.add_event_handler(Events.GET_BATCH_STARTED, lambda e: fetched.append(e.state.iteration))
            workflow.run()
        except Exception as exc:
            index = len(fetched) - 1
            if engine is None or not 0 <= index < len(remaining):
                raise _pipeline_error(exc) or exc
            failed = remaining[index]
            _remove_new(failed.outputs, before)
            outcome.done += remaining[:index]
            outcome.failed[failed.source] = failure_reason(failed.source, exc)
            logger.error("%s", outcome.failed[failed.source])
            logger.debug("traceback of the failure of %s", failed.source, exc_info=True)
            remaining = remaining[index + 1 :]
            _complete(engine)
        else:
            outcome.done += remaining
            remaining = []
        finally:
            workflow.finalize()
    return outcome


def _complete(engine: Any) -> None:
    """Fire ``COMPLETED`` on an engine stopped by a failure.

    Its handlers then finish as after a normal run: the MLflow handler logs the artifacts of the inputs done and
    closes its run instead of leaving it open for ever.
    """
    try:
        engine.fire_event(Events.COMPLETED)
    except Exception:  # noqa: BLE001 - the outputs are written; a tracker that cannot close only warrants a warning
        logger.warning("could not complete the run stopped by a failed input", exc_info=True)


def failure_reason(source: str, exc: BaseException) -> str:
    """``<source>: <problem>`` on one line: a :class:`PipelineError`'s message, else the innermost exception's.

    MONAI wraps an exception raised in a transform in ``RuntimeError("applying transform ...")``; the message
    worth showing is the one at the bottom of the chain of causes.
    """
    error = _pipeline_error(exc)
    if error is not None:
        problem = str(error)
    else:
        root = _chain(exc)[-1]
        message = " ".join(str(root).split())
        problem = f"failed ({type(root).__name__}: {message})" if message else f"failed ({type(root).__name__})"
    problem = " ".join(problem.split())
    if len(problem) > MAX_REASON:
        problem = problem[: MAX_REASON - 3] + "..."
    return f"{source}: {problem}"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes (``raise ... from``) or contexts, outermost first."""
    chain = [exc]
    while True:
        nxt = chain[-1].__cause__ or chain[-1].__context__
        if nxt is None or nxt in chain:
            return chain
        chain.append(nxt)


def _pipeline_error(exc: BaseException) -> PipelineError | None:
    return next((e for e in _chain(exc) if isinstance(e, PipelineError)), None)


def _signature(path: Path) -> tuple[int, int, int] | None:
    """Identity of the file at ``path`` (inode, modification time, size), or None if there is none."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _remove_new(paths: Sequence[Path], before: dict[Path, tuple[int, int, int] | None]) -> None:
    """Delete the files among ``paths`` written since ``before`` was taken."""
    for path in paths:
        if _signature(path) not in (None, before.get(path)):
            path.unlink()
            logger.info("removed %s, written for an input that failed", path)
