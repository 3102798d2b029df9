"""Tests for :mod:`pipelines.data.registration`: a known misalignment is undone, values are kept, the guard works."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pipelines.data.registration import mask_dice, register_slice


def _phantom(shift: tuple[float, float] = (0.0, 0.0), scale: float = 1.0) -> np.ndarray:
    """A 128x128 'head': a bright ring (skull) around a grey disc with two dark 'ventricles', uint8."""
    yy, xx = np.mgrid[:128, :128].astype(float)
    y, x = (yy - 64 - shift[0]) / scale, (xx - 64 - shift[1]) / scale
    radius = np.hypot(y / 1.1, x)
    image = np.zeros((128, 128), np.uint8)
    image[radius < 44] = 200
    image[radius < 40] = 100
    image[(np.hypot(y + 6, x - 9) < 7) | (np.hypot(y + 6, x + 9) < 7)] = 20
    return image


def _mask(image: np.ndarray) -> np.ndarray:
    return ndimage.binary_fill_holes(image > 10)


def test_a_shifted_and_scaled_slice_is_brought_back():
    fixed, moving = _phantom(), _phantom(shift=(5.0, -4.0), scale=1.08)
    result = register_slice(fixed, moving, _mask)
    assert result.accepted and result.dice_before < 0.91 and result.dice_after > 0.98
    assert result.dice_after == pytest.approx(mask_dice(_mask(fixed), _mask(result.image)))
    # nearest neighbour: every value of the output is one of the moving slice's values (0 outside its field)
    assert set(np.unique(result.image).tolist()) <= set(np.unique(moving).tolist()) | {0}
    assert result.image.dtype == moving.dtype and len(result.parameters) == 8
    again = register_slice(fixed, moving, _mask)
    np.testing.assert_array_equal(again.image, result.image)  # one thread, fixed seed: reproducible to the pixel
    assert again.parameters == result.parameters


def test_a_registration_that_does_not_help_is_not_kept():
    fixed = _phantom()
    result = register_slice(fixed, fixed.copy(), _mask)
    assert not result.accepted and result.dice_after == result.dice_before == 1.0
    np.testing.assert_array_equal(result.image, fixed)
    assert result.parameters[:4] == (1.0, 0.0, 0.0, 1.0)
    empty = register_slice(fixed, np.zeros_like(fixed), _mask)
    assert not empty.accepted and not empty.image.any()


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="seed must be positive"):
        register_slice(_phantom(), _phantom(), _mask, seed=0)
    with pytest.raises(ValueError, match="2D slices of one shape"):
        register_slice(_phantom(), _phantom()[:64], _mask)
    assert mask_dice(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
