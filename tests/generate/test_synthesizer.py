"""The Synthesizer base: seeded, strict weights, no overwrite, nothing drawn when a target exists."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pipelines.errors import InputError, OutputExistsError
from pipelines.generate import SUMMARY_FILE, Synthesizer


class LinearSynthesizer(Synthesizer):
    """Writes ``count`` vectors ``W z`` with ``z ~ N(0, I)`` as ``.npy`` files."""

    drawn = 0

    def targets(self) -> Sequence[Path]:
        return [self.output_dir / f"sample_{i:03d}.npy" for i in range(self.count)]

    def write(self, generator: torch.Generator) -> Mapping[str, Any]:
        LinearSynthesizer.drawn += 1
        for path in self.targets():
            z = torch.randn(1, 3, generator=generator)
            np.save(path, self.network(z).numpy())
        return {"written": list(self.targets())}


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    torch.save({"model": torch.nn.Linear(3, 2).state_dict()}, path)
    return path


def _run(weights: Path, output: Path, **kwargs: Any) -> dict:
    return LinearSynthesizer(torch.nn.Linear(3, 2), weights, output, **{"count": 3, **kwargs}).run()


def test_same_seed_same_files_and_a_summary(weights: Path, tmp_path: Path) -> None:
    first = _run(weights, tmp_path / "a", seed=7)
    torch.rand(10)  # the global generator's state must not matter
    _run(weights, tmp_path / "b", seed=7)
    _run(weights, tmp_path / "c", seed=8)
    a, b, c = ([np.load(tmp_path / d / f"sample_{i:03d}.npy") for i in range(3)] for d in "abc")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    saved = json.loads((tmp_path / "a" / SUMMARY_FILE).read_text(encoding="utf-8"))
    assert saved["count"] == 3 and saved["seed"] == 7 and len(saved["written"]) == 3
    assert first["checkpoint"] == str(weights)


def test_existing_file_stops_before_drawing(weights: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "sample_001.npy").write_bytes(b"the user's file")
    drawn = LinearSynthesizer.drawn
    with pytest.raises(OutputExistsError):
        _run(weights, output)
    assert LinearSynthesizer.drawn == drawn
    assert sorted(p.name for p in output.iterdir()) == ["sample_001.npy"]
    assert (output / "sample_001.npy").read_bytes() == b"the user's file"
    _run(weights, output, overwrite=True)
    assert len(list(output.glob("sample_*.npy"))) == 3


def test_weights_of_another_network_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), other)
    with pytest.raises(InputError, match="weights do not fit"):
        _run(other, tmp_path / "out")
    with pytest.raises(InputError, match="positive number"):
        LinearSynthesizer(torch.nn.Linear(3, 2), other, tmp_path, count=0)
