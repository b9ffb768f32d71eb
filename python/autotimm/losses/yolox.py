"""YOLOX losses: SimOTA assignment, IoU-aware classification, box IoU loss, optional L1."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from autotimm.losses._distributed import mean_over_ranks
from autotimm.losses.fcos import box_loss_sum
from autotimm.ops.boxes import ltrb_to_xyxy, xyxy_to_ltrb
from autotimm.ops.simota import SimOTAAssignment, simota_assign

__all__ = ["YOLOX_REG_WEIGHT", "quality_focal_loss", "yolox_losses"]

#: Weight of the box loss in YOLOX (Ge et al., 2021, and mmdetection's config).
YOLOX_REG_WEIGHT = 5.0


def quality_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, beta: float = 2.0
) -> torch.Tensor:
    """Element-wise quality focal loss (Li et al., 2020): ``|t - σ(x)|^β · BCE(σ(x), t)``.

    Parameters
    ----------
    logits : Tensor [..., C] float
    targets : Tensor [..., C] float in [0, 1]
        Soft targets: the IoU of the point's box at its class, 0 elsewhere.
    beta : float

    Returns
    -------
    Tensor [..., C], >= 0
    """
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return bce * (targets - logits.sigmoid()).abs().pow(beta)


def yolox_losses(
    cls_logits: torch.Tensor,
    ltrb_pred: torch.Tensor,
    points: torch.Tensor,
    strides: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    reg_loss_fn: nn.Module,
    cls_loss_fn: nn.Module | None = None,
    use_l1: bool = False,
    obj_logits: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """YOLOX losses of a padded batch, each divided by the number of assigned points.

    Points are assigned by :func:`autotimm.ops.simota.simota_assign` on the
    detached predictions. Classification: with ``cls_loss_fn`` None, the
    quality focal loss against IoU-aware targets (``IoU(pred, box)`` at the
    box's class) over every point, so the score ranks localisation quality;
    otherwise ``cls_loss_fn(logits [N, C], labels [N])`` with -1 = background.
    Box: ``reg_loss_fn`` on the assigned points' xyxy boxes. L1 (``use_l1``):
    on the LTRB distances in strides. With ``obj_logits``, an objectness BCE
    over every point is added to the classification term (target: assigned).
    The normaliser is averaged over data-parallel ranks without host sync.

    Parameters
    ----------
    cls_logits : Tensor [B, P, C]
    ltrb_pred : Tensor [B, P, 4]
        Predicted distances in pixels.
    points : Tensor [P, 2]
    strides : Tensor [P]
    gt_boxes : Tensor [B, M, 4] float
        xyxy boxes padded per image.
    gt_labels : Tensor [B, M] int64
        Classes, negative for padding.
    reg_loss_fn : module
        ``(pred [N, 4], target [N, 4][, weights [N]]) -> sum``.
    cls_loss_fn : module, optional
    use_l1 : bool
    obj_logits : Tensor [B, P], optional

    Returns
    -------
    dict
        ``cls_loss``, ``reg_loss``, ``l1_loss`` (0 without ``use_l1``),
        ``num_pos`` (this rank's count), 0-dim tensors, and ``assignment``.
    """
    pred_boxes = ltrb_to_xyxy(points, ltrb_pred)
    assignment: SimOTAAssignment = simota_assign(
        cls_logits.detach(),
        pred_boxes.detach(),
        points,
        strides,
        gt_boxes,
        gt_labels,
        obj_logits=None if obj_logits is None else obj_logits.detach(),
    )
    fg = assignment.foreground
    fg_f = fg.to(cls_logits.dtype)
    num_pos = fg_f.sum()
    norm = mean_over_ranks(num_pos).clamp(min=1.0)
    num_classes = cls_logits.shape[-1]

    if cls_loss_fn is None:
        classes = torch.arange(num_classes, device=cls_logits.device)
        one_hot = (assignment.labels[..., None] == classes).to(cls_logits.dtype)  # no sync
        targets = one_hot * (assignment.ious * fg_f)[..., None]
        cls_sum = quality_focal_loss(cls_logits, targets).sum()
    else:
        cls_sum = cls_loss_fn(cls_logits.reshape(-1, num_classes), assignment.labels.reshape(-1))
    if obj_logits is not None:
        cls_sum = cls_sum + F.binary_cross_entropy_with_logits(obj_logits, fg_f, reduction="sum")
    cls_loss = cls_sum / norm

    reg_loss = box_loss_sum(reg_loss_fn, pred_boxes, assignment.boxes, fg) / norm

    if use_l1:
        target_ltrb = xyxy_to_ltrb(points, assignment.boxes)
        diff = (ltrb_pred - target_ltrb).abs() / strides[:, None]
        l1_loss = (diff.sum(-1) * fg_f).sum() / norm
    else:
        l1_loss = cls_logits.new_zeros(())
    return {
        "cls_loss": cls_loss,
        "reg_loss": reg_loss,
        "l1_loss": l1_loss,
        "num_pos": num_pos,
        "assignment": assignment,  # type: ignore[dict-item]
    }
