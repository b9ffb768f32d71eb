"""FCOS-style detection losses on dense per-point targets."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence

import torch
import torch.nn as nn

from autotimm.constants import DEFAULT_STRIDES
from autotimm.losses._distributed import mean_over_ranks
from autotimm.losses.centerness import CenternessLoss
from autotimm.losses.focal import FocalLoss
from autotimm.losses.iou import GIoULoss
from autotimm.ops.boxes import level_points, ltrb_to_xyxy

#: How the positives' box losses are weighted: equally (torchvision, the
#: default) or by centerness target (FCOS authors, mmdetection).
BOX_WEIGHTINGS = ("uniform", "centerness")


@functools.lru_cache(maxsize=64)
def _takes_weights(cls: type) -> bool:
    try:
        return "weights" in inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        return False


def box_loss_sum(
    reg_loss_fn: nn.Module,
    pred_boxes: torch.Tensor,
    target_boxes: torch.Tensor,
    positive: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum of ``reg_loss_fn`` over the positive points of xyxy boxes [..., 4].

    ``weights`` [...] (optional) scales each point's term. Dense and sync-free
    when ``reg_loss_fn.forward`` takes ``weights`` (the built-in losses do). A
    user loss without ``weights`` is called on the positives selected by a
    boolean mask (which synchronises); ``weights`` then scale its result by
    the positives' mean weight (per-point weighting needs a ``weights``
    argument).
    """
    pred = pred_boxes.reshape(-1, 4)
    target = target_boxes.to(pred.dtype).reshape(-1, 4)
    pos = positive.reshape(-1)
    point_weights = pos.to(pred.dtype)
    if weights is not None:
        point_weights = point_weights * weights.reshape(-1).to(pred.dtype)
    if _takes_weights(type(reg_loss_fn)):
        return reg_loss_fn(pred, target, weights=point_weights)
    if weights is None:
        return reg_loss_fn(pred[pos], target[pos])
    return reg_loss_fn(pred[pos], target[pos]) * point_weights[pos].mean().nan_to_num(0.0)


def flatten_levels(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-level maps [B, K, H_l, W_l] -> [B, P, K], levels in order, row-major."""
    return torch.cat([o.flatten(2) for o in outputs], dim=2).transpose(1, 2)


def detection_losses(
    cls_logits: torch.Tensor,
    ltrb_pred: torch.Tensor,
    ctr_logits: torch.Tensor | None,
    cls_targets: torch.Tensor,
    reg_targets: torch.Tensor,
    ctr_targets: torch.Tensor | None,
    points: torch.Tensor,
    cls_loss_fn: nn.Module,
    reg_loss_fn: nn.Module,
    ctr_loss_fn: nn.Module | None = None,
    box_weighting: str = "uniform",
) -> dict[str, torch.Tensor]:
    """Classification, box and centerness losses, each normalised by the positives.

    Every point is a sample of the classification loss (background, label -1,
    is a negative for every class); box and centerness losses use positives.
    The normaliser ``max(num_pos, 1)`` takes the mean of ``num_pos`` over
    data-parallel ranks (an all-reduce on the device, no host read), so the
    loss scale does not depend on how images fall on ranks.
    No host synchronisation when ``reg_loss_fn.forward`` takes ``weights``
    (the built-in losses do): losses are dense, masked by weights.

    Parameters
    ----------
    cls_logits : Tensor [B, P, C]
    ltrb_pred : Tensor [B, P, 4]
        Predicted distances in pixels (>= 0).
    ctr_logits : Tensor [B, P] or None
    cls_targets : Tensor [B, P] int64
        Class in [0, C) or -1 (background).
    reg_targets : Tensor [B, P, 4] float
        LTRB target distances in pixels.
    ctr_targets : Tensor [B, P] float or None
    points : Tensor [P, 2]
        Point coordinates, to decode LTRB into xyxy boxes.
    cls_loss_fn : module
        ``(logits [N, C], targets [N]) -> sum`` (e.g. ``FocalLoss(reduction="sum")``).
    reg_loss_fn : module
        ``(pred_xyxy [N, 4], target_xyxy [N, 4][, weights [N]]) -> sum``.
    ctr_loss_fn : module, optional
        ``(pred [N], target [N], weights [N]) -> sum``; default BCE.
    box_weighting : {"uniform", "centerness"}
        ``"uniform"`` (default, torchvision) weights the positives equally and
        divides by their count; ``"centerness"`` weights each positive's box
        loss by its centerness target and divides by their sum (the FCOS
        authors' and mmdetection's recipe), which on BCCD starved the tiny
        boxes, whose positives all have low centerness, and lost COCO mAP
        (README). Without ``ctr_targets`` the weighting is uniform.

    Returns
    -------
    dict
        ``cls_loss``, ``reg_loss``, ``centerness_loss`` (0 without centerness),
        ``num_pos`` (float tensor, the unclamped count), all 0-dim tensors.
    """
    num_classes = cls_logits.shape[-1]
    pos = cls_targets >= 0
    pos_f = pos.to(cls_logits.dtype).reshape(-1)
    num_pos = pos_f.sum()
    norm = mean_over_ranks(num_pos).clamp(min=1.0)

    cls_loss = cls_loss_fn(cls_logits.reshape(-1, num_classes), cls_targets.reshape(-1)) / norm

    pred_boxes = ltrb_to_xyxy(points, ltrb_pred)
    target_boxes = ltrb_to_xyxy(points, reg_targets.to(ltrb_pred.dtype))
    if box_weighting == "centerness" and ctr_targets is not None:
        box_weights = ctr_targets.to(ltrb_pred.dtype) * pos
        box_norm = mean_over_ranks(box_weights.sum()).clamp(min=1e-6)
        reg_loss = box_loss_sum(reg_loss_fn, pred_boxes, target_boxes, pos, box_weights) / box_norm
    elif box_weighting in BOX_WEIGHTINGS:
        reg_loss = box_loss_sum(reg_loss_fn, pred_boxes, target_boxes, pos) / norm
    else:
        raise ValueError(f"box_weighting must be one of {BOX_WEIGHTINGS}, got {box_weighting!r}")

    if ctr_logits is not None and ctr_targets is not None:
        ctr_loss_fn = ctr_loss_fn if ctr_loss_fn is not None else CenternessLoss(reduction="sum")
        ctr_loss = ctr_loss_fn(
            ctr_logits.reshape(-1), ctr_targets.reshape(-1).to(ctr_logits.dtype), weights=pos_f
        ) / norm
    else:
        ctr_loss = cls_logits.new_zeros(())
    return {
        "cls_loss": cls_loss,
        "reg_loss": reg_loss,
        "centerness_loss": ctr_loss,
        "num_pos": num_pos,
    }


class FCOSLoss(nn.Module):
    """FCOS losses from per-level head outputs and per-level targets.

    Parameters
    ----------
    num_classes : int
    focal_alpha, focal_gamma : float
        Of the default classification loss, ``FocalLoss(reduction="sum")``.
    cls_weight, reg_weight, centerness_weight : float
        Weights of the three terms in ``total_loss``.
    reg_loss_fn : module, optional
        Box loss on xyxy boxes with ``reduction="sum"``; default ``GIoULoss``.
    cls_loss_fn : module, optional
        Classification loss with ``reduction="sum"``; default focal.
    strides : sequence of int
        Stride of each level, to place the points (default P3-P7).
    box_weighting : {"uniform", "centerness"}
        How the positives' box losses are weighted (see :func:`detection_losses`).

    Forward
    -------
    cls_preds : list of [B, C, H, W]; reg_preds : list of [B, 4, H, W] (LTRB
    pixels); centerness_preds : list of [B, 1, H, W] or None; cls_targets : list
    of [B, H, W] int64 (-1 background); reg_targets : list of [B, 4, H, W];
    centerness_targets : list of [B, H, W] or None.

    Returns a dict ``cls_loss``, ``reg_loss``, ``centerness_loss``,
    ``total_loss``, ``num_pos``: every term divided by max(num_pos, 1).
    """

    def __init__(
        self,
        num_classes: int,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        cls_weight: float = 1.0,
        reg_weight: float = 1.0,
        centerness_weight: float = 1.0,
        reg_loss_fn: nn.Module | None = None,
        cls_loss_fn: nn.Module | None = None,
        strides: Sequence[int] = DEFAULT_STRIDES,
        box_weighting: str = "uniform",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        self.num_classes = num_classes
        self.cls_weight = cls_weight
        self.reg_weight = reg_weight
        self.centerness_weight = centerness_weight
        self.strides = tuple(strides)
        if box_weighting not in BOX_WEIGHTINGS:
            raise ValueError(
                f"box_weighting must be one of {BOX_WEIGHTINGS}, got {box_weighting!r}"
            )
        self.box_weighting = box_weighting
        self.cls_loss_fn = cls_loss_fn or FocalLoss(focal_alpha, focal_gamma, reduction="sum")
        self.reg_loss_fn = reg_loss_fn or GIoULoss(reduction="sum")
        self.ctr_loss_fn = CenternessLoss(reduction="sum")

    def forward(
        self,
        cls_preds: Sequence[torch.Tensor],
        reg_preds: Sequence[torch.Tensor],
        centerness_preds: Sequence[torch.Tensor] | None,
        cls_targets: Sequence[torch.Tensor],
        reg_targets: Sequence[torch.Tensor],
        centerness_targets: Sequence[torch.Tensor] | None,
    ) -> dict[str, torch.Tensor]:
        n = len(cls_preds)
        if not (len(reg_preds) == len(cls_targets) == len(reg_targets) == n):
            raise ValueError("cls_preds, reg_preds, cls_targets and reg_targets must have "
                             f"one entry per level; got {len(cls_preds)}, {len(reg_preds)}, "
                             f"{len(cls_targets)}, {len(reg_targets)}")
        if n != len(self.strides):
            raise ValueError(f"got {n} levels but strides has {len(self.strides)}: "
                             f"{self.strides}")
        sizes = [tuple(p.shape[-2:]) for p in cls_preds]
        points = level_points(sizes, self.strides, device=cls_preds[0].device)
        ctr = centerness_preds is not None and centerness_targets is not None
        losses = detection_losses(
            flatten_levels(cls_preds),
            flatten_levels(reg_preds),
            flatten_levels(centerness_preds)[..., 0] if ctr else None,
            torch.cat([t.flatten(1) for t in cls_targets], dim=1),
            flatten_levels(reg_targets),
            torch.cat([t.flatten(1) for t in centerness_targets], dim=1) if ctr else None,
            points,
            self.cls_loss_fn,
            self.reg_loss_fn,
            self.ctr_loss_fn,
            self.box_weighting,
        )
        losses["total_loss"] = (
            self.cls_weight * losses["cls_loss"]
            + self.reg_weight * losses["reg_loss"]
            + self.centerness_weight * losses["centerness_loss"]
        )
        return losses
