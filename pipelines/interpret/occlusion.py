"""Occlusion sensitivity for segmentation networks: which parts of a slice does the prediction depend on?

Occlusion sensitivity (Zeiler & Fergus, ECCV 2014) hides one patch of the image at a time and records how much a
scalar score of the network's output changes. For a 2D slice ``x`` (C x H x W), a set ``P`` of square patches laid on
a regular grid (stride ``s``; the last row and column of patches are flush with the image edge, so every pixel is
covered) and a score ``S``::

    x_p      = x with the pixels of patch p replaced by the occlusion value (the slice mean, 0, or the blurred slice)
    Δ(p)     = S(x) - S(x_p)                  one occluded forward pass per patch
    sens(i)  = mean over {p in P : i in p} of Δ(p)      average over the patches covering pixel i

Positive sensitivity: hiding the region lowers the score, so the prediction relies on it. Negative: hiding it
raises the score (the region argues against the prediction). A 64x64 slice with 8x8 patches and stride 4 has
15 x 15 = 225 patches, hence 225 occluded forward passes plus one for ``S(x)``. The overlap of neighbouring patches is
``1 - stride / patch_size``.

The score (:class:`SegmentationScore`). A segmentation network has no single class probability to perturb, so the
score compares the occluded prediction with the prediction on the un-occluded slice. With ``M`` the mask of the
scored class (myocardium) predicted on ``x`` (argmax) and ``q`` that class's probability on ``x_p``:

- ``dice`` (default), soft Dice against the un-occluded prediction: ``S = (2 Σ q·M + 1) / (Σ q + Σ M + 1)``.
  It drops when occlusion removes myocardium from the prediction *and* when it makes the network predict
  myocardium elsewhere, and it is continuous in ``q``, so changes too small to flip a pixel's argmax still count
  (the hard Dice of the argmax would be flat almost everywhere). The ``+1`` (in pixels) keeps it defined on slices
  where nothing is predicted: there it is ``1 / (Σ q + 1)`` and measures what makes myocardium appear.
- ``mean_probability``: the mean probability of the scored class inside ``M``, ``S = Σ q·M / Σ M`` (0 where ``M``
  is empty, so such slices get an all-zero map). It only sees losses inside the predicted mask.

Relation to :class:`monai.visualize.OcclusionSensitivity`. MONAI's class is written for classifiers, and two
of its behaviours make it wrong or unusable for a segmentation network as it stands: it expects ``[B, C]`` outputs
(a ``[B, C, H, W]`` segmentation fails inside its sliding-window aggregation), and with ``activate=True`` it chooses
sigmoid or softmax from the number of channels of the *input*, not of the output (a one-channel MR slice gets a
sigmoid per class even from a softmax network). :class:`SegmentationScore` fixes both: it returns the ``[B, 1]``
score with its own activation (softmax for several output channels, sigmoid for one), so
``OcclusionSensitivity(SegmentationScore(...), mask_size=k, overlap=1 - s / k, mode="mean_img", activate=False)``
computes ``mean over covering patches of S(x_p)``, and ``S(x)`` minus it is exactly our map (tested). A third trap:
MONAI's ``eval_mode`` puts a module that was in training mode back into it on exit, and a freshly built wrapper
is in training mode, which would turn dropout on in the wrapped network afterwards; :class:`SegmentationScore`
therefore starts in eval mode. Note also that MONAI's map is ``S(x_p)`` itself (important regions are *low*),
ours the drop ``S(x) - S(x_p)`` (important regions are high).

The engine (:func:`occlusion_sensitivity`) is nevertheless a thin loop of its own, because:

1. the "Gaussian blur" occlusion replaces a patch by the blurred image. MONAI's ``gaussian`` mode is something
   else (it multiplies the patch by ``1 - gaussian``, fading it to 0 at the centre), and a callable ``mode`` receives
   the patch without its position, so it cannot fetch the blurred pixels;
2. cost: MONAI pastes each patch in a Python loop, then lets ``sliding_window_inference`` expand every score into
   a patch-sized map and blend those into an image-sized buffer; here the occluded batch is built with one
   broadcast ``torch.where`` and a pixel's average is a sum of masks, under ``torch.inference_mode()`` (MONAI
   uses ``no_grad``). ``benchmarks/occlusion.py`` measures both against the bare forward passes;
3. a bounding box gives the full-size map with zeros outside (a NIfTI map must have the input's shape), and
   inside the box it equals the unbounded map, since every patch that covers a pixel of the box is evaluated.

Memory is bounded by ``batch_size`` occluded copies of one slice, whatever the number of patches or slices.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from monai.inferers import Inferer
from monai.networks.layers import separable_filtering
from monai.networks.layers.convutils import gaussian_1d
from monai.networks.utils import eval_mode
from monai.utils import StrEnum, convert_to_dst_type, convert_to_tensor, ensure_tuple_rep
from torch import nn

__all__ = [
    "OcclusionMode",
    "OcclusionResult",
    "OcclusionSliceInferer",
    "ScoreKind",
    "SegmentationScore",
    "occlusion_fill",
    "occlusion_sensitivity",
    "patch_starts",
]

logger = logging.getLogger(__name__)


class OcclusionMode(StrEnum):
    """What an occluded patch is replaced with."""

    MEAN = "mean"  # the slice's mean intensity (per channel); MONAI's "mean_img"
    BLUR = "blur"  # the slice blurred with a Gaussian (sigma = patch size / 2 unless given)
    ZERO = "zero"  # 0, the darkest value after the bundle's [0, 1] intensity scaling


class ScoreKind(StrEnum):
    """The segmentation quantity occlusion perturbs (see the module docstring)."""

    DICE = "dice"
    MEAN_PROBABILITY = "mean_probability"


@dataclass(frozen=True)
class OcclusionResult:
    """The occlusion sensitivity map of one slice.

    Attributes:
        sensitivity: ``(H, W)`` float32, ``sens(i)`` of the module docstring; 0 where no patch was evaluated.
        coverage: ``(H, W)`` int64, the number of evaluated patches covering each pixel (0 outside a bounding box).
        baseline: ``S(x)``, the score of the un-occluded slice.
        forward_passes: images scored: the occluded copies plus the un-occluded slice.
    """

    sensitivity: torch.Tensor
    coverage: torch.Tensor
    baseline: float
    forward_passes: int


class SegmentationScore(nn.Module):
    """``S``: one score per image, comparing the network's prediction with a reference mask.

    ``forward`` returns ``[B, 1]``, a "classification-shaped" output, so that this module serves both
    :func:`occlusion_sensitivity` and :class:`monai.visualize.OcclusionSensitivity` (with ``activate=False``). Build
    it for an image with :meth:`for_image`, which takes the reference mask from the un-occluded prediction. It puts
    itself, and so ``network`` when that is a module, in eval mode.

    Args:
        network: segmentation network, ``(B, C_in, H, W) -> (B, K, H, W)`` logits.
        reference: ``(H, W)`` boolean mask ``M`` of the scored class.
        kind: ``dice`` or ``mean_probability`` (:class:`ScoreKind`).
        channel: output channel of the scored class (1 = myocardium in this project's bundles).
        smooth: the additive term of the soft Dice, in pixels.
    """

    def __init__(
        self,
        network: Callable[[torch.Tensor], torch.Tensor],
        reference: torch.Tensor,
        kind: ScoreKind | str = ScoreKind.DICE,
        channel: int = 1,
        smooth: float = 1.0,
    ) -> None:
        super().__init__()
        self.network = network
        self.kind = ScoreKind(kind)
        self.channel = channel
        self.smooth = smooth
        self.register_buffer("reference", torch.as_tensor(reference, dtype=torch.float32), persistent=False)
        # An explanation is of the deterministic inference network (no dropout, running batch-norm statistics). A
        # new module starts in training mode, which MONAI's eval_mode would restore, network included, on exit.
        self.eval()

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, H, W)`` probability of the scored class: softmax over several output channels, sigmoid for one."""
        return _scored_class(self.network(images), self.channel)

    def score(self, probabilities: torch.Tensor) -> torch.Tensor:
        """``(B,)`` scores of ``(B, H, W)`` probabilities against the reference mask."""
        m = self.reference
        overlap = (probabilities * m).sum(dim=(-2, -1))
        if self.kind == ScoreKind.DICE:
            return (2 * overlap + self.smooth) / (probabilities.sum(dim=(-2, -1)) + m.sum() + self.smooth)
        return overlap / m.sum().clamp_min(1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` images -> ``(B, 1)`` scores."""
        return self.score(self.probabilities(images))[:, None]

    @classmethod
    def for_image(
        cls,
        network: Callable[[torch.Tensor], torch.Tensor],
        image: torch.Tensor,
        kind: ScoreKind | str = ScoreKind.DICE,
        channel: int = 1,
        smooth: float = 1.0,
    ) -> tuple[SegmentationScore, torch.Tensor]:
        """The score for ``image`` (``(1, C_in, H, W)``) and the scored class's probability on it, ``(H, W)``.

        The reference mask is where the scored class wins: the argmax over the output channels, or ``p > 0.5``
        for a single sigmoid output.
        """
        logits = network(image)
        probability = _scored_class(logits, channel)[0]
        reference = probability > 0.5 if logits.shape[1] == 1 else logits[0].argmax(dim=0) == channel
        return cls(network, reference, kind=kind, channel=channel, smooth=smooth), probability


def _scored_class(logits: torch.Tensor, channel: int) -> torch.Tensor:
    """``(B, H, W)`` probability of the scored class: softmax over several output channels, sigmoid for one."""
    logits = logits.float()
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=1)[:, channel]


def patch_starts(size: int, patch: int, stride: int) -> list[int]:
    """First indices of the patches along one axis: ``0, s, 2s, ...`` and ``size - patch`` (flush with the edge).

    Raises:
        ValueError: ``patch`` is not in ``[1, size]`` or ``stride < 1``.
    """
    if not 1 <= patch <= size:
        raise ValueError(f"patch size {patch} must be between 1 and the image size {size}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def occlusion_fill(
    image: torch.Tensor, mode: OcclusionMode | str, blur_sigma: float | None = None, patch: int = 8
) -> torch.Tensor:
    """The ``(C, H, W)`` values an occluded patch takes, for every pixel of the ``(C, H, W)`` slice ``image``.

    Args:
        image: the slice.
        mode: ``mean`` (each channel's mean), ``zero``, or ``blur`` (Gaussian blur, edges replicated).
        blur_sigma: the blur's standard deviation in pixels; default ``patch / 2``, so the patch's own content is
            wiped out while its neighbourhood's mean brightness stays.
        patch: the (largest) patch side, for the default ``blur_sigma``.
    """
    mode = OcclusionMode(mode)
    if mode == OcclusionMode.MEAN:
        return image.mean(dim=(-2, -1), keepdim=True).expand_as(image)
    if mode == OcclusionMode.ZERO:
        return torch.zeros_like(image)
    sigma = float(blur_sigma) if blur_sigma is not None else patch / 2
    kernel = gaussian_1d(torch.tensor(sigma), truncated=4.0, normalize=True).to(image)
    return separable_filtering(image[None], [kernel, kernel], mode="replicate")[0]


def _bbox_ranges(bbox: Sequence[int] | None, shape: Sequence[int]) -> list[tuple[int, int]]:
    """``[(first, last), ...]`` inclusive pixel ranges per axis; -1 (or no box) means the whole axis."""
    if bbox is None:
        return [(0, n - 1) for n in shape]
    if len(bbox) != 2 * len(shape):
        raise ValueError(f"bounding box needs {2 * len(shape)} values (min, max per axis), got {list(bbox)}")
    ranges = []
    for axis, n in enumerate(shape):
        low, high = int(bbox[2 * axis]), int(bbox[2 * axis + 1])
        low, high = (0 if low < 0 else low), (n - 1 if high < 0 else high)
        if not 0 <= low <= high < n:
            raise ValueError(f"bounding box {list(bbox)} does not fit the image shape {tuple(shape)}")
        ranges.append((low, high))
    return ranges


def occlusion_sensitivity(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    patch_size: int | Sequence[int] = 8,
    stride: int | Sequence[int] = 4,
    mode: OcclusionMode | str = OcclusionMode.MEAN,
    batch_size: int = 32,
    bbox: Sequence[int] | None = None,
    blur_sigma: float | None = None,
) -> OcclusionResult:
    """Occlusion sensitivity map of one 2D slice (see the module docstring for the maths).

    Args:
        score_fn: ``(B, C, H, W)`` images -> ``(B,)`` or ``(B, 1)`` scores, e.g. a :class:`SegmentationScore`.
            Called under ``torch.inference_mode()``.
        image: the slice, ``(C, H, W)`` or ``(1, C, H, W)``.
        patch_size: patch side in pixels (one value, or one per axis).
        stride: distance between neighbouring patches in pixels (one value, or one per axis).
        mode: occlusion value, ``mean``, ``blur`` or ``zero`` (:class:`OcclusionMode`).
        batch_size: occluded copies scored per forward pass; bounds the memory used.
        bbox: ``[row_min, row_max, col_min, col_max]``, inclusive, -1 for the image edge: evaluate only the
            patches overlapping this box. The map is exact inside the box and 0 outside it.
        blur_sigma: standard deviation of the ``blur`` mode in pixels (default ``patch_size / 2``).

    Returns:
        The map, the coverage counts, ``S(x)`` and the number of forward passes.
    """
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected one slice, got a batch of {image.shape[0]}")
        image = image[0]
    if image.ndim != 3:
        raise ValueError(f"expected a (C, H, W) slice, got shape {tuple(image.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    image = convert_to_tensor(image, track_meta=False)
    shape = image.shape[1:]
    patch = ensure_tuple_rep(patch_size, 2)
    steps = ensure_tuple_rep(stride, 2)
    box = _bbox_ranges(bbox, shape)
    starts = []
    for n, p, s, (low, high) in zip(shape, patch, steps, box):
        # a patch [a, a + p) overlaps the box [low, high] when a <= high and a + p - 1 >= low
        starts.append(torch.tensor([a for a in patch_starts(n, p, s) if a <= high and a + p - 1 >= low]))
    rows = starts[0].repeat_interleave(len(starts[1]))
    cols = starts[1].repeat(len(starts[0]))
    row_index = torch.arange(shape[0])
    col_index = torch.arange(shape[1])
    total = torch.zeros(shape, dtype=torch.float64)
    coverage = torch.zeros(shape, dtype=torch.int64)
    with torch.inference_mode():
        fill = occlusion_fill(image, mode, blur_sigma=blur_sigma, patch=max(patch))
        baseline = float(score_fn(image[None]).reshape(-1)[0])
        for first in range(0, len(rows), batch_size):
            r, c = rows[first : first + batch_size, None], cols[first : first + batch_size, None]
            in_rows = (row_index >= r) & (row_index < r + patch[0])  # (B, H)
            in_cols = (col_index >= c) & (col_index < c + patch[1])  # (B, W)
            masks = in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W): the occluded pixels
            occluded = torch.where(masks[:, None].to(image.device), fill, image)
            drops = baseline - score_fn(occluded).reshape(-1).double().cpu()
            total += (masks * drops[:, None, None]).sum(dim=0)
            coverage += masks.sum(dim=0)
    # pixels outside the box are covered only by some of their patches: their averages would be partial
    in_box = torch.zeros(shape, dtype=torch.bool)
    in_box[box[0][0] : box[0][1] + 1, box[1][0] : box[1][1] + 1] = True
    coverage = torch.where(in_box, coverage, 0)
    sensitivity = torch.where(coverage > 0, total / coverage.clamp_min(1), 0.0).float()
    return OcclusionResult(sensitivity, coverage, baseline, len(rows) + 1)


class OcclusionSliceInferer(Inferer):
    """A MONAI inferer giving the occlusion sensitivity of every slice of a batch of volumes.

    ``(B, C, H, W, D)`` volumes -> ``(B, 2, H, W, D)``: channel 0 the sensitivity map of each slice (from
    :func:`occlusion_sensitivity` with a :class:`SegmentationScore` built for that slice), channel 1 the scored
    class's probability on the un-occluded slice (for drawing the predicted contour). A 2D network is applied to
    each slice along the last axis, through ``slice_inferer`` if given: the bundle passes the sliding-window inferer
    its ``SliceInferer`` uses for prediction, which also pads slices smaller than the network's window. No
    test-time flips: the map explains the network itself.

    Args:
        patch_size: patch side in pixels.
        stride: distance between patches in pixels.
        mode: ``mean``, ``blur`` or ``zero``.
        batch_size: occluded copies per forward pass.
        bbox: ``[row_min, row_max, col_min, col_max]`` in the network's pixel grid, applied to every slice.
        score: ``dice`` or ``mean_probability``.
        channel: the scored output channel.
        blur_sigma: for ``mode="blur"``; default ``patch_size / 2``.
        slice_inferer: how the network is applied to a batch of ``(B, C, H, W)`` slices, e.g.
            ``SlidingWindowInferer(roi_size=(64, 64), sw_batch_size=batch_size)``; None calls the network directly.
    """

    def __init__(
        self,
        patch_size: int = 8,
        stride: int = 4,
        mode: OcclusionMode | str = OcclusionMode.MEAN,
        batch_size: int = 32,
        bbox: Sequence[int] | None = None,
        score: ScoreKind | str = ScoreKind.DICE,
        channel: int = 1,
        blur_sigma: float | None = None,
        slice_inferer: Inferer | None = None,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.stride = stride
        self.mode = OcclusionMode(mode)
        self.batch_size = batch_size
        self.bbox = bbox
        self.score = ScoreKind(score)
        self.channel = channel
        self.blur_sigma = blur_sigma
        self.slice_inferer = slice_inferer

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """``(B, C, H, W, D)`` volumes -> ``(B, 2, H, W, D)``: sensitivity and probability of every slice."""
        volumes = convert_to_tensor(inputs, track_meta=False)
        if volumes.ndim != 5:
            raise ValueError(f"expected (B, C, H, W, D) volumes, got shape {tuple(volumes.shape)}")
        out = torch.zeros((volumes.shape[0], 2, *volumes.shape[2:]), dtype=torch.float32)

        def segment(images: torch.Tensor) -> torch.Tensor:
            if self.slice_inferer is None:
                return network(images, *args, **kwargs)
            return self.slice_inferer(images, network, *args, **kwargs)

        # a module is scored in eval mode (no dropout, running batch-norm statistics), as SupervisedEvaluator does
        with eval_mode(*[network] if isinstance(network, nn.Module) else []), torch.inference_mode():
            for b in range(volumes.shape[0]):
                for k in range(volumes.shape[-1]):
                    image = volumes[b : b + 1, ..., k]
                    scorer, probability = SegmentationScore.for_image(
                        segment, image, kind=self.score, channel=self.channel
                    )
                    result = occlusion_sensitivity(
                        scorer, image, patch_size=self.patch_size, stride=self.stride, mode=self.mode,
                        batch_size=self.batch_size, bbox=self.bbox, blur_sigma=self.blur_sigma,
                    )
                    logger.debug("slice %d: S(x)=%.4f, %d forward passes", k, result.baseline, result.forward_passes)
                    out[b, 0, ..., k] = result.sensitivity
                    out[b, 1, ..., k] = probability.cpu()
        # a MetaTensor carrying the input's metadata and applied transforms, so that Invertd can resample it back
        return convert_to_dst_type(out, dst=inputs, dtype=torch.float32)[0]
