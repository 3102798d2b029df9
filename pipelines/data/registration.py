"""2D intensity-based registration of one slice onto another (SimpleITK), for aligning CT to MR slice by slice.

The paired brain slices are only roughly co-registered (:mod:`pipelines.data.brain_mr_ct`). A model trained on pairs
learns the mismatch as blur, and a metric against a misaligned CT penalises a sharp, correct prediction (on a grainy
brain window, even a small shift of the CT against itself costs MAE). As in Wolterink et al. 2017, the CT is
registered onto the MR: an affine transform ``T`` maximising the Mattes mutual information of ``MR(x)`` and
``CT(T(x))`` (multi-resolution, regular-step gradient descent), then ``CT(T(x))`` is resampled with **nearest
neighbour** interpolation, so every output value is one of the CT's own values and its grain is not smoothed.

A registration is kept only when it makes the outlines agree better: the Dice of the two head masks must rise by at
least ``min_gain``; otherwise the slice is left as it is. MI can lock onto the wrong structure on slices with little
anatomy (skull base, vertex), and this guard makes such failures harmless.

SimpleITK does the work; this module only sets it up for 8-bit slices and applies the guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import SimpleITK as sitk

__all__ = ["SliceRegistration", "register_slice", "mask_dice"]


@dataclass(frozen=True)
class SliceRegistration:
    """The outcome of :func:`register_slice`.

    Attributes:
        image: the moving slice resampled onto the fixed slice's grid (same dtype), or the moving slice unchanged.
        accepted: whether the registration was kept.
        dice_before: head-mask Dice of the fixed and the unmoved slice.
        dice_after: head-mask Dice of the fixed and the registered slice (equal to ``dice_before`` when rejected).
        parameters: the affine's 6 parameters (2x2 matrix row by row, then translation in pixels) and its centre
            (2 values); the identity when rejected.
    """

    image: np.ndarray
    accepted: bool
    dice_before: float
    dice_after: float
    parameters: tuple[float, ...]


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice ``2|A ∩ B| / (|A| + |B|)`` of two boolean masks; 1.0 when both are empty."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def _affine(fixed: sitk.Image, moving: sitk.Image, iterations: int, seed: int) -> sitk.Transform:
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.AffineTransform(2), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.REGULAR)
    method.SetMetricSamplingPercentage(0.25, seed)  # seed 0 would mean "wall clock" to SimpleITK
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-3, numberOfIterations=iterations, gradientMagnitudeTolerance=1e-6
    )
    method.SetOptimizerScalesFromPhysicalShift()
    # 1/4 and 1/2 resolution: the head outline and the ventricles fix an affine to well under a pixel of the full
    # grid, at a fraction of a full-resolution level's cost
    method.SetShrinkFactorsPerLevel([4, 2])
    method.SetSmoothingSigmasPerLevel([2, 1])
    method.SetInitialTransform(initial, inPlace=False)
    return method.Execute(fixed, moving)


def register_slice(
    fixed: np.ndarray,
    moving: np.ndarray,
    mask: Callable[[np.ndarray], np.ndarray],
    fixed_mask: np.ndarray | None = None,
    iterations: int = 50,
    min_gain: float = 0.0,
    seed: int = 1,
) -> SliceRegistration:
    """Register ``moving`` onto ``fixed`` (2D affine, Mattes MI) and keep it only if the head masks agree better.

    Args:
        fixed: (H, W) reference slice (the MR).
        moving: (H, W) slice to move (the CT), any numeric dtype; the output keeps it.
        mask: slice -> (H, W) bool head mask, applied to the moving slice before and after registration.
        fixed_mask: the fixed slice's head mask (default: ``mask(fixed)``).
        iterations: optimiser iterations per resolution level (2 levels: 1/4 and 1/2 resolution).
        min_gain: the registration is kept when ``dice_after > dice_before + min_gain``.
        seed: seed (positive) of the metric's sample positions; the result is deterministic for a given seed.

    Returns:
        A :class:`SliceRegistration`; outside the moved field of view the output is 0.
    """
    if seed <= 0:
        raise ValueError(f"seed must be positive (SimpleITK reads 0 as 'seed from the clock'), got {seed}")
    if fixed.shape != moving.shape or fixed.ndim != 2:
        raise ValueError(f"register_slice needs two 2D slices of one shape, got {fixed.shape} and {moving.shape}")
    fixed_mask = mask(fixed) if fixed_mask is None else fixed_mask
    before = mask_dice(fixed_mask, mask(moving))
    identity = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0)
    if not fixed.any() or not moving.any():
        return SliceRegistration(moving, False, before, before, identity)
    fixed_image = sitk.GetImageFromArray(np.ascontiguousarray(fixed, dtype=np.float32))
    moving_image = sitk.GetImageFromArray(np.ascontiguousarray(moving, dtype=np.float32))
    # ITK splits the metric's sums over a thread pool dynamically, so their rounding, and after a few hundred
    # optimiser steps the transform, changes from run to run; one thread makes a registration exactly reproducible
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        transform = _affine(fixed_image, moving_image, iterations, seed)
    except RuntimeError:  # the optimiser can fail outright on a slice with too little overlap: keep it as it is
        return SliceRegistration(moving, False, before, before, identity)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    resampled = sitk.Resample(moving_image, fixed_image, transform, sitk.sitkNearestNeighbor, 0.0)
    image = sitk.GetArrayFromImage(resampled).astype(moving.dtype)
    after = mask_dice(fixed_mask, mask(image))
    if after <= before + min_gain:
        return SliceRegistration(moving, False, before, before, identity)
    affine = sitk.AffineTransform(sitk.CompositeTransform(transform).GetNthTransform(0))
    parameters = tuple(float(v) for v in (*affine.GetMatrix(), *affine.GetTranslation(), *affine.GetCenter()))
    return SliceRegistration(image, True, before, after, parameters)
