"""Tests of :mod:`pipelines.handlers.figures`, driving the handlers with tiny Ignite engines (nothing is trained)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from pipelines.handlers.figures import OverlayGrid, TrainingCurves, binary_mask

LOSSES = [0.9, 0.7, 0.6, 0.55]
DICES = [0.2, 0.5, 0.6, 0.58]


def _colour_codes(pixels: np.ndarray) -> np.ndarray:
    """One integer per pixel for its 8-bit RGB colour (1-D, so that counting colours is fast)."""
    rgb = np.round(pixels[..., :3] * 255).astype(np.int64)
    return (rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]).ravel()


def _assert_png(path: Path) -> np.ndarray:
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) >= 100
    assert len(np.unique(_colour_codes(pixels))) > 10  # not blank
    return pixels


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _trainer_with_validator(validate_every: int = 1) -> tuple[Engine, Engine]:
    """A trainer whose epoch mean loss is ``LOSSES[epoch-1]`` and a fake validator that MONAI's
    ``ValidationHandler`` would run: it sets ``state.epoch`` to the trainer's epoch and ``val_mean_dice``."""
    trainer = Engine(lambda engine, batch: batch)
    validator = Engine(lambda engine, batch: batch)

    @trainer.on(Events.EPOCH_COMPLETED)
    def _metrics_and_validation(engine: Engine) -> None:
        engine.state.metrics["train_loss"] = LOSSES[engine.state.epoch - 1]
        if engine.state.epoch % validate_every == 0:
            validator.state.epoch = engine.state.epoch
            validator.state.metrics["val_mean_dice"] = torch.tensor(DICES[engine.state.epoch - 1])

    return trainer, validator


def test_training_curves_writes_png_and_csv(tmp_path: Path) -> None:
    trainer, validator = _trainer_with_validator()
    handler = TrainingCurves(str(tmp_path), validator=validator, val_metrics=("val_mean_dice", "missing_metric"))
    handler.attach(trainer)
    handler.attach(trainer)  # a second attach must not register twice
    assert len(trainer._event_handlers[Events.EPOCH_COMPLETED]) == 2
    trainer.run([0, 1], max_epochs=3)

    _assert_png(tmp_path / "curves.png")
    rows = _read_csv(tmp_path / "history.csv")
    assert list(rows[0]) == ["epoch", "train_loss", "val_mean_dice"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["train_loss"]) for r in rows] == LOSSES[:3]
    assert [float(r["val_mean_dice"]) for r in rows] == pytest.approx(DICES[:3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "history.csv"]


def test_training_curves_skips_epochs_without_validation(tmp_path: Path) -> None:
    trainer, validator = _trainer_with_validator(validate_every=2)
    TrainingCurves(str(tmp_path), validator=validator).attach(trainer)
    trainer.run([0], max_epochs=3)
    rows = _read_csv(tmp_path / "history.csv")
    # the validator's metrics of epoch 2 are stale at epoch 3 and must not be recorded there
    assert [r["val_mean_dice"] != "" for r in rows] == [False, True, False]


def test_training_curves_state_dict_resume(tmp_path: Path) -> None:
    trainer, validator = _trainer_with_validator()
    handler = TrainingCurves(str(tmp_path), validator=validator)
    handler.attach(trainer)
    trainer.run([0], max_epochs=2)

    torch.save({"curves": handler.state_dict()}, tmp_path / "checkpoint.pt")
    loaded = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["curves"]
    assert loaded == handler.state_dict()

    resumed_trainer, resumed_validator = _trainer_with_validator()
    resumed = TrainingCurves(str(tmp_path), validator=resumed_validator)
    resumed.load_state_dict(loaded)
    resumed.attach(resumed_trainer)
    resumed_trainer.load_state_dict({"epoch": 2, "max_epochs": 4, "epoch_length": 1})  # what a checkpoint restores
    resumed_trainer.run([0])

    rows = _read_csv(tmp_path / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["train_loss"]) for r in rows] == LOSSES
    assert resumed.history["val_mean_dice"] == [(e, pytest.approx(d)) for e, d in zip(range(1, 5), DICES)]


def _volume_output(rng: np.random.Generator, depth: int, one_hot: bool, with_label: bool = True) -> dict:
    """One decollated evaluator output: image (1,H,W,D), label/pred one-hot (2,H,W,D) or indices (1,H,W,D)."""
    image = torch.as_tensor(rng.random((1, 64, 64, depth)), dtype=torch.float32)
    label = torch.zeros(1, 64, 64, depth)
    label[0, 20:44, 20:44, depth - 2] = 1  # the largest ground-truth area is on slice depth - 2
    label[0, 26:38, 26:38, depth - 2] = 0
    label[0, 30:34, 30:34, 1] = 1
    pred = torch.zeros_like(label)
    pred[0, 22:44, 20:44, :] = 1
    pred[0, 26:38, 26:38, :] = 0
    if one_hot:
        label, pred = torch.cat([1 - label, label]), torch.cat([1 - pred, pred])
    output = {"image": image, "pred": pred}
    if with_label:
        output["label"] = label
    return output


@pytest.mark.parametrize("one_hot", [True, False], ids=["one-hot", "indices"])
def test_overlay_grid_collects_and_writes(tmp_path: Path, one_hot: bool) -> None:
    rng = np.random.default_rng(0)
    batches = [  # two iterations of two volumes; decollated outputs and batches, as MONAI's evaluator leaves them
        [_volume_output(rng, 7, one_hot), _volume_output(rng, 10, one_hot)],
        [_volume_output(rng, 14, one_hot), _volume_output(rng, 8, one_hot)],
    ]
    evaluator = Engine(lambda engine, batch: batch)

    @evaluator.on(Events.ITERATION_COMPLETED)
    def _decollated_batch(engine: Engine) -> None:
        iteration = (engine.state.iteration - 1) % engine.state.epoch_length + 1
        engine.state.batch = [{"case_id": f"SC-{iteration}{i}"} for i in range(2)]

    handler = OverlayGrid(str(tmp_path), filename="grid_{epoch}.png", max_items=3)
    handler.attach(evaluator)
    handler.attach(evaluator)
    assert all(len(evaluator._event_handlers[e]) == 1 for e in (Events.EPOCH_STARTED, Events.EPOCH_COMPLETED))
    evaluator.run(batches, max_epochs=2)

    assert handler._titles == ["SC-10 z=5", "SC-11 z=8", "SC-20 z=12"]  # max_items; cleared every epoch
    assert all(image.shape == (64, 64) for image in handler._images)
    expected_dice = 2 * (np.sum(handler._labels[0] & handler._preds[0])) / (
        handler._labels[0].sum() + handler._preds[0].sum()
    )
    assert 0.8 < expected_dice < 1.0
    for epoch in (1, 2):
        pixels = _assert_png(tmp_path / f"grid_{epoch}.png")
        assert pixels.shape[1] > pixels.shape[0] / 3 * 2  # 3 rows of 3 columns


def test_overlay_grid_inference_without_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    outputs = [_volume_output(rng, 9, one_hot=True, with_label=False)]
    outputs[0]["label"] = None
    outputs[0]["pred"][:, 5:15, 5:15, 6] = torch.tensor([0.0, 1.0])[:, None, None]  # largest predicted area
    evaluator = Engine(lambda engine, batch: batch)
    handler = OverlayGrid(str(tmp_path))
    handler.attach(evaluator)
    evaluator.run([outputs], max_epochs=1)
    assert handler._labels == [None]
    assert handler._titles == ["item 0 z=6"]  # no label: the slice with the largest predicted area
    _assert_png(tmp_path / "overlay_grid.png")


def test_overlay_grid_collated_dict_output(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    volumes = [_volume_output(rng, 7, one_hot=True) for _ in range(2)]
    collated = {key: torch.stack([v[key] for v in volumes]) for key in volumes[0]}
    evaluator = Engine(lambda engine, batch: batch["output"])  # not decollated: batch and output are dicts
    handler = OverlayGrid(str(tmp_path))
    handler.attach(evaluator)
    evaluator.run([{"output": collated, "case_id": ["a", "b"]}], max_epochs=1)
    assert handler._titles == ["a z=5", "b z=5"]
    assert handler._images[0].shape == (64, 64)
    assert (tmp_path / "overlay_grid.png").exists()


@pytest.mark.parametrize(
    ("tensor", "expected"),
    [
        (torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]]), [[True, False]]),  # one-hot: channel 1
        (torch.tensor([[[0.0, 1.0, 2.0]]]), [[False, True, True]]),  # class indices
        (np.array([[[0.2, 0.7]]]), [[False, True]]),  # one-channel probability
    ],
)
def test_binary_mask(tensor: torch.Tensor | np.ndarray, expected: list) -> None:
    assert binary_mask(tensor).tolist() == expected
