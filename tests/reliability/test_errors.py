"""The one-line errors survive a process boundary: the benchmarks run folds in a process pool, whose workers send
exceptions back pickled, and an error that cannot be rebuilt there breaks the whole pool instead of naming a file."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from pipelines.errors import ChecksumError, InputError, OutputExistsError, PipelineError

ERRORS = [
    PipelineError("out: cannot create output folder"),
    InputError(Path("in/a.nii.gz"), "not a readable NIfTI file"),
    ChecksumError("scd_lvsegs.npz", "ab" * 32, "cd" * 32),
    OutputExistsError("out/a_seg.nii.gz"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_pickle_with_their_message_and_fields(error: PipelineError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert vars(copy) == vars(error)


def _raise(error: PipelineError) -> None:
    raise error


def test_an_error_raised_in_a_worker_process_reaches_the_caller() -> None:
    with ProcessPoolExecutor(max_workers=1) as pool:
        with pytest.raises(InputError, match="in/a.nii.gz: not a readable NIfTI file") as caught:
            pool.submit(_raise, ERRORS[1]).result()
    assert caught.value.path == Path("in/a.nii.gz")
