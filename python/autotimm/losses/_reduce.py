"""Reduction shared by the losses."""

from __future__ import annotations

import torch

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def reduce_loss(
    loss: torch.Tensor, reduction: str, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Reduce per-sample losses [N]; with weights, ``mean`` is sum(w * l) / sum(w).

    No host synchronisation: empty inputs give 0 through ``clamp``, not a branch.
    """
    if weights is not None:
        loss = loss * weights.to(loss.dtype)
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    denom = weights.to(loss.dtype).sum() if weights is not None else loss.new_tensor(loss.numel())
    return total / denom.clamp(min=torch.finfo(loss.dtype).eps)
