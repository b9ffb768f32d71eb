"""FCOS centerness: target from LTRB distances, BCE loss on logits."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from autotimm.losses._reduce import check_reduction, reduce_loss


def centerness_target(ltrb: torch.Tensor) -> torch.Tensor:
    """sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) for LTRB [..., 4] -> [...]."""
    lr = ltrb[..., [0, 2]]
    tb = ltrb[..., [1, 3]]
    ratio = (lr.min(dim=-1).values / lr.max(dim=-1).values.clamp(min=1e-7)) * (
        tb.min(dim=-1).values / tb.max(dim=-1).values.clamp(min=1e-7)
    )
    return ratio.clamp(min=0).sqrt()


class CenternessLoss(nn.Module):
    """Binary cross-entropy with logits between predicted and target centerness.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}

    Shapes
    ------
    pred : [N] or [N, 1] logits; target : [N] in [0, 1]; weights : [N], optional.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        if pred.dim() == 2 and pred.shape[1] == 1:
            pred = pred.squeeze(1)
        if pred.shape != target.shape:
            raise ValueError(
                f"pred has shape {tuple(pred.shape)} and target {tuple(target.shape)}; "
                "expected [N] (or [N, 1]) and [N]"
            )
        loss = F.binary_cross_entropy_with_logits(pred, target.to(pred.dtype), reduction="none")
        return reduce_loss(loss, self.reduction, weights)
