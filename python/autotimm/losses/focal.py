"""Sigmoid focal loss (Lin et al., 2017) with background as negatives."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from autotimm.constants import BACKGROUND
from autotimm.losses._reduce import check_reduction, reduce_loss


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Element-wise sigmoid focal loss.

    Parameters
    ----------
    logits : Tensor [..., C], float
    targets : Tensor [..., C], float in {0, 1}
    alpha : float
        Weight of positives (negatives get ``1 - alpha``); ``< 0`` disables it.
    gamma : float
        Focusing exponent.

    Returns
    -------
    Tensor [..., C], >= 0
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


class FocalLoss(nn.Module):
    """Sigmoid focal loss over one-hot class targets.

    A target of ``BACKGROUND`` (-1) is a negative for every class: the
    classifier learns to say "nothing here". (AutoTimm ignored -1, so
    background never contributed.) Use ``ignore_index`` to leave samples out.

    Parameters
    ----------
    alpha : float
        Weight of positives, default 0.25.
    gamma : float
        Focusing exponent, default 2.0.
    reduction : {"mean", "sum", "none"}
        Over samples, after summing over classes; ``mean`` divides by the number
        of samples that are not ignored.
    ignore_index : int, optional
        Target value whose samples contribute nothing (must not be -1).

    Shapes
    ------
    inputs : [N, C] or [N, C, H, W] logits; targets : [N] or [N, H, W] int64 in
    ``[0, C)`` or -1. Output: scalar, or [N] / [N*H*W] with ``reduction="none"``.
    """

    def __init__(
        self,
        alpha: float = 0.25,
        gamma: float = 2.0,
        reduction: str = "mean",
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma!r}")
        if ignore_index == BACKGROUND:
            raise ValueError(
                f"ignore_index must differ from the background label {BACKGROUND}"
            )
        self.alpha = alpha
        self.gamma = gamma
        self.reduction = check_reduction(reduction)
        self.ignore_index = ignore_index

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if inputs.dim() == 4:
            inputs = inputs.permute(0, 2, 3, 1).reshape(-1, inputs.shape[1])
            targets = targets.reshape(-1)
        if inputs.dim() != 2 or targets.shape != inputs.shape[:1]:
            raise ValueError(
                f"FocalLoss got inputs {tuple(inputs.shape)} and targets "
                f"{tuple(targets.shape)}; expected [N, C] and [N] (or [N, C, H, W] and [N, H, W])"
            )
        classes = torch.arange(inputs.shape[1], device=inputs.device)
        one_hot = (targets.unsqueeze(1) == classes).to(inputs.dtype)
        loss = sigmoid_focal_loss(inputs, one_hot, self.alpha, self.gamma).sum(dim=1)
        weights = None
        if self.ignore_index is not None:
            weights = (targets != self.ignore_index).to(inputs.dtype)
        return reduce_loss(loss, self.reduction, weights)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}"
