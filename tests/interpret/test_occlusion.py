"""Tests of :mod:`pipelines.interpret.occlusion`: patch grid, hand-checked maps, equality with MONAI's
``OcclusionSensitivity``, the segmentation score, and the volume inferer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from monai.visualize import OcclusionSensitivity
from torch import nn

from pipelines.interpret import (
    OcclusionSliceInferer,
    SegmentationScore,
    occlusion_fill,
    occlusion_sensitivity,
    patch_starts,
)


def mean_intensity(images: torch.Tensor) -> torch.Tensor:
    """A toy score: the mean of each image."""
    return images.mean(dim=(1, 2, 3))


@pytest.mark.parametrize(
    ("size", "patch", "stride", "expected"),
    [
        (64, 8, 4, list(range(0, 57, 4))),
        (10, 4, 4, [0, 4, 6]),  # the last patch is moved flush with the edge
        (8, 8, 3, [0]),
        (5, 1, 2, [0, 2, 4]),
    ],
)
def test_patch_starts(size: int, patch: int, stride: int, expected: list[int]) -> None:
    assert patch_starts(size, patch, stride) == expected


@pytest.mark.parametrize(("size", "patch", "stride"), [(8, 9, 1), (8, 0, 1), (8, 4, 0)])
def test_patch_starts_rejects_impossible_grids(size: int, patch: int, stride: int) -> None:
    with pytest.raises(ValueError):
        patch_starts(size, patch, stride)


@pytest.mark.parametrize(
    ("shape", "patch", "stride", "passes"),
    [
        ((1, 64, 64), 8, 4, 15 * 15 + 1),  # the example: 225 occluded copies
        ((1, 30, 20), 6, 3, 9 * 6 + 1),  # rows 0, 3, ..., 24; columns 0, 3, ..., 12 and 14
        ((2, 16, 16), 16, 4, 1 + 1),
        ((1, 12, 16), (4, 8), (4, 2), 3 * 5 + 1),
    ],
)
def test_map_shape_coverage_and_forward_passes(shape, patch, stride, passes: int) -> None:
    image = torch.rand(shape)
    result = occlusion_sensitivity(mean_intensity, image, patch_size=patch, stride=stride, mode="zero")
    assert result.sensitivity.shape == shape[1:] and result.sensitivity.dtype == torch.float32
    assert result.coverage.shape == shape[1:] and bool((result.coverage > 0).all())
    assert result.forward_passes == passes
    assert result.baseline == pytest.approx(float(image.mean()))


def test_hand_checked_map_of_a_score_that_sees_one_pixel() -> None:
    """S(x) = x[3, 3] on an image of ones, zero occlusion, 4x4 patches at stride 2 on 8x8 (starts 0, 2, 4).

    Δ(p) = 1 for the patches covering (3, 3) (row and column starts in {0, 2}), else 0. Along one axis, the share
    of the patches covering index i that also cover index 3 is f = [1, 1, 1, 1, 1/2, 1/2, 0, 0] (rows 4-5 are
    covered by starts 2 and 4, rows 6-7 by start 4 only), and the map is the outer product f fᵀ.
    """
    result = occlusion_sensitivity(
        lambda x: x[:, 0, 3, 3], torch.ones(1, 8, 8), patch_size=4, stride=2, mode="zero", batch_size=4
    )
    f = np.array([1, 1, 1, 1, 0.5, 0.5, 0, 0])
    np.testing.assert_allclose(result.sensitivity.numpy(), np.outer(f, f), atol=1e-7)
    np.testing.assert_array_equal(result.coverage.numpy(), np.outer([1, 1, 2, 2, 2, 2, 1, 1], [1, 1, 2, 2, 2, 2, 1, 1]))
    assert result.baseline == 1.0 and result.forward_passes == 10


def test_batch_size_bounds_the_forward_passes_and_does_not_change_the_map(tiny_unet: nn.Module) -> None:
    image = torch.rand(1, 1, 24, 24)  # 7 x 7 = 49 patches of 6 at stride 3
    scorer, _ = SegmentationScore.for_image(tiny_unet, image)
    maps, batches = [], []
    for batch_size in (1, 7, 1000):
        sizes: list[int] = []
        recording = lambda x: sizes.append(len(x)) or scorer(x)  # noqa: E731 - records each batch's size
        maps.append(occlusion_sensitivity(recording, image, 6, 3, batch_size=batch_size))
        batches.append(sizes)
    assert [max(sizes) for sizes in batches] == [1, 7, 49] and [sum(sizes) for sizes in batches] == [50, 50, 50]
    torch.testing.assert_close(maps[0].sensitivity, maps[1].sensitivity)
    torch.testing.assert_close(maps[0].sensitivity, maps[2].sensitivity)


def test_bounding_box_gives_the_full_map_inside_it_and_zero_outside(tiny_unet: nn.Module) -> None:
    image = torch.rand(1, 1, 32, 32)
    scorer, _ = SegmentationScore.for_image(tiny_unet, image)
    full = occlusion_sensitivity(scorer, image, 8, 4)
    boxed = occlusion_sensitivity(scorer, image, 8, 4, bbox=[10, 17, 12, -1])  # rows 10-17, columns 12-31
    inside = np.s_[10:18, 12:32]
    torch.testing.assert_close(boxed.sensitivity[inside], full.sensitivity[inside])
    torch.testing.assert_close(boxed.coverage[inside], full.coverage[inside])
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[inside] = False
    assert bool((boxed.sensitivity[outside] == 0).all()) and bool((boxed.coverage[outside] == 0).all())
    assert boxed.forward_passes < full.forward_passes
    with pytest.raises(ValueError, match="bounding box"):
        occlusion_sensitivity(scorer, image, 8, 4, bbox=[0, 40, 0, 10])


def test_occlusion_fill_modes() -> None:
    image = torch.rand(2, 16, 16)
    mean = occlusion_fill(image, "mean")
    torch.testing.assert_close(mean[:, 5, 7], image.mean(dim=(1, 2)))
    assert bool((occlusion_fill(image, "zero") == 0).all())
    blurred = occlusion_fill(image, "blur", patch=8)
    assert blurred.shape == image.shape and float(blurred.std()) < 0.5 * float(image.std())
    constant = torch.full((1, 16, 16), 0.3)
    torch.testing.assert_close(occlusion_fill(constant, "blur", blur_sigma=3.0), constant)  # edges replicated
    with pytest.raises(ValueError):
        occlusion_fill(image, "noise")


@pytest.mark.filterwarnings("ignore::UserWarning")  # MONAI's own indexing deprecation warnings
@pytest.mark.parametrize(("mode", "monai_mode"), [("mean", "mean_img"), ("zero", 0.0)])
@pytest.mark.parametrize(("shape", "patch", "stride"), [((32, 32), 8, 4), ((30, 32), 6, 3), ((16, 24), 4, 4)])
def test_equals_monai_occlusion_sensitivity_with_the_wrapped_score(
    tiny_unet: nn.Module, mode: str, monai_mode, shape, patch: int, stride: int
) -> None:
    """MONAI's map is the mean over covering patches of S(x_p); ours is S(x) minus it."""
    image = torch.rand(1, 1, *shape)
    scorer, _ = SegmentationScore.for_image(tiny_unet, image)
    ours = occlusion_sensitivity(scorer, image, patch, stride, mode=mode, batch_size=5)
    monai = OcclusionSensitivity(
        scorer, mask_size=patch, overlap=1 - stride / patch, mode=monai_mode, n_batch=16, verbose=False,
        activate=False,
    )
    occluded_scores, _ = monai(image)
    assert occluded_scores.shape == (1, 1, *shape)
    torch.testing.assert_close(ours.sensitivity, ours.baseline - occluded_scores[0, 0].as_tensor(), atol=1e-6, rtol=0)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_monai_occlusion_sensitivity_cannot_take_a_segmentation_output(tiny_unet: nn.Module) -> None:
    """The pitfall the [B, 1] score wrapper exists for: MONAI expects classification-shaped outputs."""
    with pytest.raises((RuntimeError, ValueError)):
        OcclusionSensitivity(tiny_unet, mask_size=8, overlap=0.5, verbose=False)(torch.rand(1, 1, 16, 16))


def test_segmentation_score_values(tiny_unet: nn.Module) -> None:
    image = torch.rand(1, 1, 16, 16)
    dice, probability = SegmentationScore.for_image(tiny_unet, image, kind="dice")
    with torch.no_grad():
        logits = tiny_unet(image)
    p = torch.softmax(logits, dim=1)[0, 1]
    m = (logits[0].argmax(dim=0) == 1).float()
    torch.testing.assert_close(probability, p)
    torch.testing.assert_close(dice.reference, m)
    expected = (2 * (p * m).sum() + 1) / (p.sum() + m.sum() + 1)
    torch.testing.assert_close(dice(image), expected.reshape(1, 1))
    mean_probability, _ = SegmentationScore.for_image(tiny_unet, image, kind="mean_probability")
    torch.testing.assert_close(mean_probability(image), ((p * m).sum() / m.sum().clamp_min(1)).reshape(1, 1))
    assert dice(torch.rand(3, 1, 16, 16)).shape == (3, 1)


def test_segmentation_score_uses_a_sigmoid_for_a_single_output_channel() -> None:
    network = nn.Conv2d(1, 1, 1)
    image = torch.rand(1, 1, 8, 8)
    scorer, probability = SegmentationScore.for_image(network, image, kind="mean_probability")
    with torch.no_grad():
        torch.testing.assert_close(probability, torch.sigmoid(network(image))[0, 0])
    torch.testing.assert_close(scorer.reference, (probability > 0.5).float())


def test_score_puts_the_network_in_eval_mode() -> None:
    network = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Dropout(0.5)).train()
    image = torch.rand(1, 1, 8, 8)
    scorer, _ = SegmentationScore.for_image(network, image)
    assert not network.training
    first = occlusion_sensitivity(scorer, image, 4, 2).sensitivity
    torch.testing.assert_close(occlusion_sensitivity(scorer, image, 4, 2).sensitivity, first)


def test_slice_inferer_maps_every_slice(tiny_unet: nn.Module) -> None:
    volume = MetaTensor(torch.rand(1, 1, 16, 16, 3))
    out = OcclusionSliceInferer(patch_size=4, stride=4, mode="mean", batch_size=8)(volume, tiny_unet)
    assert isinstance(out, MetaTensor) and out.shape == (1, 2, 16, 16, 3)  # Invertd needs a MetaTensor
    for k in range(3):
        scorer, probability = SegmentationScore.for_image(tiny_unet, volume.as_tensor()[..., k])
        expected = occlusion_sensitivity(scorer, volume.as_tensor()[..., k], 4, 4, mode="mean")
        torch.testing.assert_close(out[0, 0, ..., k].as_tensor(), expected.sensitivity)
        torch.testing.assert_close(out[0, 1, ..., k].as_tensor(), probability)


def test_slice_inferer_pads_slices_smaller_than_the_network_window(tiny_unet: nn.Module) -> None:
    volume = torch.rand(1, 1, 13, 11, 2)  # odd sizes: this U-Net needs even ones
    inferer = OcclusionSliceInferer(patch_size=4, stride=4, slice_inferer=SlidingWindowInferer((16, 16), 8))
    assert inferer(volume, tiny_unet).shape == (1, 2, 13, 11, 2)
