"""Deep supervision for networks that stack their heads along one axis (MONAI's ``DynUNet`` in training mode).

MONAI's ``DeepSupervisionLoss`` takes a *list* of head outputs, while ``DynUNet(deep_supervision=True)`` returns them
stacked as one ``[B, K, C, *spatial]`` tensor (head 0 is the final output, heads 1..K-1 come from coarser decoder
levels, already resized to the output grid). This loss unbinds the stack and hands the list to MONAI:

    L = sum_k w_k L_0(y_hat_k, y),    w_k = max(2^-k, 1/16)    (MONAI's ``weight_mode="exp"``)

so the coarse decoder levels learn the segmentation directly instead of only through the finest level's gradient.
A plain ``[B, C, *spatial]`` prediction (evaluation mode) gets ``L_0`` alone.
"""

from __future__ import annotations

import torch
from monai.losses import DeepSupervisionLoss

__all__ = ["StackedDeepSupervisionLoss"]


class StackedDeepSupervisionLoss(DeepSupervisionLoss):
    """``DeepSupervisionLoss`` over heads stacked along dim 1 of the prediction.

    Args:
        loss: the loss of every head, for example ``DiceCELoss(to_onehot_y=True, softmax=True)``.
        weight_mode: ``"exp"`` (1, 0.5, 0.25, ...), ``"same"`` or ``"two"``, as in MONAI.
        weights: explicit per-head weights; override ``weight_mode``.
    """

    def forward(self, input: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(input, torch.Tensor) and input.ndim == target.ndim + 1:
            input = list(torch.unbind(input, dim=1))
        return super().forward(input, target)
