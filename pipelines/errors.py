"""User-facing errors.

A :class:`PipelineError` carries a one-line message that names the file and the problem. The CLI prints it as
``error: <message>`` and exits non-zero, without a traceback; every other exception is a bug and keeps its traceback.
The errors pickle with their arguments, so they cross process boundaries (a worker of a process pool) intact.
"""

from __future__ import annotations

from pathlib import Path


class PipelineError(Exception):
    """An error caused by the user's input or environment, reported as one line."""


class InputError(PipelineError):
    """A file the user gave us is missing, unreadable or not what it should be."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self) -> tuple:
        return type(self), (self.path, self.problem)


class ChecksumError(InputError):
    """A file's sha256 does not match the published one."""

    def __init__(self, path: str | Path, expected: str, actual: str) -> None:
        super().__init__(path, f"sha256 mismatch (expected {expected}, got {actual}); refusing to use it")
        self.expected = expected
        self.actual = actual

    def __reduce__(self) -> tuple:
        return type(self), (self.path, self.expected, self.actual)


class OutputExistsError(PipelineError):
    """An output file exists already and overwriting was not asked for."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: output exists already; pass --overwrite to replace it")

    def __reduce__(self) -> tuple:
        return type(self), (self.path,)
