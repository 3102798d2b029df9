"""Tests for :mod:`pipelines.batch`: which input a failure is blamed on, what is deleted, when it is raised.

A stub workflow drives a tiny Ignite ``Engine`` that "predicts" by writing one or two files per input, so the
runner is exercised without a model: failures while fetching an input, while processing it, after its first file,
and before any input.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from ignite.engine import Engine, Events

from pipelines.batch import WorkItem, failure_reason, run_carrying_on
from pipelines.errors import InputError, PipelineError


class Inputs:
    """The data an engine iterates over: the items, raising ``OSError`` when ``unreadable`` is fetched."""

    def __init__(self, items: Sequence[dict[str, Any]], unreadable: str | None) -> None:
        self.items, self.unreadable = items, unreadable

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for item in self.items:
            if item["name"] == self.unreadable:
                raise OSError(f"cannot read {item['name']}")
            yield item


class StubWorkflow:
    """What :func:`run_carrying_on` uses of a ``ConfigWorkflow``: initialize, run, finalize and ``parser``."""

    def __init__(self, items: Sequence[dict[str, Any]], failures: dict[str, str], folder: Path) -> None:
        self.data = Inputs(items, failures.get("fetch"))
        self.failures, self.folder = failures, folder
        self.engine = Engine(self._process)
        self.completed = 0
        self.engine.add_event_handler(Events.COMPLETED, self._on_completed)
        if "start" in failures:
            self.engine.add_event_handler(Events.STARTED, self._fail_at_start)
        self.parser = {"evaluator": self.engine}
        self.finalized = False

    def _process(self, engine: Engine, item: dict[str, Any]) -> None:
        (self.folder / f"{item['name']}_prob.txt").write_text("probabilities")
        if item["name"] == self.failures.get("write"):
            raise RuntimeError("applying transform <Compose>") from OSError(28, "No space left on device")
        (self.folder / f"{item['name']}_seg.txt").write_text("labels")

    def _on_completed(self, engine: Engine) -> None:
        self.completed += 1

    def _fail_at_start(self, engine: Engine) -> None:
        raise RuntimeError("loading weights") from InputError(self.failures["start"], "not a readable checkpoint")

    def initialize(self) -> None:
        pass

    def run(self) -> None:
        self.engine.run(self.data)

    def finalize(self) -> None:
        self.finalized = True


class StubParser(dict):
    def get_parsed_content(self, key: str) -> Any:
        return self[key]


@pytest.fixture
def batch(tmp_path: Path) -> tuple[list[WorkItem], list[StubWorkflow], Any]:
    """Four inputs a-d, the workflows built for them, and ``build(failures)`` making the runner's callback."""
    names = ["a", "b", "c", "d"]
    items = [
        WorkItem({"name": n}, f"in/{n}.nii.gz", (tmp_path / f"{n}_prob.txt", tmp_path / f"{n}_seg.txt")) for n in names
    ]
    built: list[StubWorkflow] = []

    def build_with(failures: dict[str, str]):
        def build(remaining: Sequence[WorkItem]) -> StubWorkflow:
            workflow = StubWorkflow([w.item for w in remaining], failures, tmp_path)
            workflow.parser = StubParser(workflow.parser)
            built.append(workflow)
            return workflow

        return build

    return items, built, build_with


def _names(items: Sequence[WorkItem]) -> list[str]:
    return [w.item["name"] for w in items]


def test_an_unreadable_input_is_skipped_and_the_rest_run(batch, tmp_path: Path) -> None:
    items, built, build_with = batch

    outcome = run_carrying_on(items, build_with({"fetch": "b"}))

    assert _names(outcome.done) == ["a", "c", "d"]
    assert outcome.failed == {"in/b.nii.gz": "in/b.nii.gz: failed (OSError: cannot read b)"}
    assert [len(w.data) for w in built] == [4, 2]  # the second workflow starts after b
    assert all(w.finalized for w in built)
    assert not list(tmp_path.glob("b_*"))


def test_a_failure_after_the_first_file_deletes_it(batch, tmp_path: Path) -> None:
    items, built, build_with = batch

    outcome = run_carrying_on(items, build_with({"write": "c"}))

    assert _names(outcome.done) == ["a", "b", "d"]
    assert outcome.failed["in/c.nii.gz"] == "in/c.nii.gz: failed (OSError: [Errno 28] No space left on device)"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{n}_{k}.txt" for n in "abd" for k in ("prob", "seg")]
    assert [w.completed for w in built] == [1, 1]  # the stopped engine was completed too (trackers close their run)


def test_the_last_input_failing_still_completes_the_run(batch) -> None:
    items, built, build_with = batch

    outcome = run_carrying_on(items, build_with({"write": "d"}))

    assert _names(outcome.done) == ["a", "b", "c"] and list(outcome.failed) == ["in/d.nii.gz"]
    assert len(built) == 1 and built[0].completed == 1


def test_older_files_an_input_did_not_touch_are_kept(batch, tmp_path: Path) -> None:
    items, _, build_with = batch
    (tmp_path / "c_seg.txt").write_text("from an earlier run")  # --overwrite: c fails before rewriting it

    run_carrying_on(items, build_with({"write": "c"}))

    assert (tmp_path / "c_seg.txt").read_text(encoding="utf-8") == "from an earlier run"
    assert not (tmp_path / "c_prob.txt").exists()


def test_a_failure_before_any_input_is_raised(batch, tmp_path: Path) -> None:
    items, built, build_with = batch

    with pytest.raises(InputError, match="model.pt: not a readable checkpoint"):
        run_carrying_on(items, build_with({"start": "model.pt"}))
    assert len(built) == 1 and built[0].finalized
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (PipelineError("out/a_seg.nii.gz: output exists already"), "src: out/a_seg.nii.gz: output exists already"),
        (ValueError("bad\n  affine"), "src: failed (ValueError: bad affine)"),
        (MemoryError(), "src: failed (MemoryError)"),
    ],
)
def test_failure_reasons_are_one_line(exc: BaseException, reason: str) -> None:
    assert failure_reason("src", exc) == reason


def test_long_failure_reasons_are_cut() -> None:
    reason = failure_reason("src", ValueError("x" * 1000))
    assert reason.startswith("src: failed (ValueError: xxx") and reason.endswith("...")
    assert len(reason) == len("src: ") + 300
