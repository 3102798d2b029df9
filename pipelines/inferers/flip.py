"""Test-time augmentation by flips: average the class probabilities of flipped copies of the input.

MONAI's ``TestTimeAugmentation`` draws random transforms to estimate uncertainty; this is the deterministic
ensemble nnU-Net uses ("mirroring"): for each set of flipped axes F (always including the identity),

    p = mean_F  flip_F( softmax( f( flip_F(x) ) ) )

and the inferer returns ``log p``, so that a ``softmax`` in the post-processing (as after any inferer) gives back
exactly ``p``. With ``transpose_axes`` the ensemble also runs on the transposed input, T(x) swapping two spatial
axes: the mean is then over the pairs (F, t) with t in {identity, T}, ``flip_F(t(softmax(f(t(flip_F(x))))))``
(T is its own inverse). Two flipped axes and a transpose of the same plane give the 8 symmetries of the square.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer

__all__ = ["FlipEnsembleInferer"]


class FlipEnsembleInferer(Inferer):
    """Wrap ``inferer`` with a flip ensemble over the given spatial axes.

    Args:
        inferer: the inferer to wrap (e.g. ``SliceInferer``); default ``SimpleInferer``.
        flip_axes: spatial axes to flip (0-based, after batch and channel); every subset is used, so
            ``(0, 1)`` gives 4 passes: identity, flip 0, flip 1, flip 0 and 1.
        transpose_axes: two spatial axes (0-based) to swap as well, doubling the passes; ``None`` (default): no
            transpose. The network must accept the transposed shape (square slices, or a fully convolutional net).
        eps: floor of the probabilities before the log.
    """

    def __init__(
        self,
        inferer: Inferer | None = None,
        flip_axes: Sequence[int] = (0, 1),
        transpose_axes: Sequence[int] | None = None,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.inferer = inferer if inferer is not None else SimpleInferer()
        axes = [int(a) for a in flip_axes]
        self.flips: list[tuple[int, ...]] = [
            tuple(a + 2 for i, a in enumerate(axes) if mask >> i & 1) for mask in range(1 << len(axes))
        ]
        self.transposes: list[tuple[int, int] | None] = [None]
        if transpose_axes is not None and len(transpose_axes) > 0:
            pair = tuple(int(a) + 2 for a in transpose_axes)
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"transpose_axes needs two different spatial axes, got {list(transpose_axes)}")
            self.transposes.append((pair[0], pair[1]))
        self.eps = eps

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        total: torch.Tensor | None = None
        for swap in self.transposes:
            for dims in self.flips:
                x = torch.flip(inputs, dims) if dims else inputs
                x = x.transpose(*swap) if swap else x
                logits = self.inferer(x, network, *args, **kwargs)
                probs = torch.softmax(torch.as_tensor(logits).float(), dim=1)
                probs = probs.transpose(*swap) if swap else probs
                probs = torch.flip(probs, dims) if dims else probs
                total = probs if total is None else total + probs
        assert total is not None
        return torch.log((total / (len(self.flips) * len(self.transposes))).clamp_min(self.eps))
