"""IoU-family box regression losses on xyxy boxes (and LTRB distances)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from autotimm.losses._reduce import check_reduction, reduce_loss

_KINDS = ("iou", "giou", "diou", "ciou")


def ltrb_as_boxes(ltrb: torch.Tensor) -> torch.Tensor:
    """LTRB distances [..., 4] as xyxy boxes around the origin: (-l, -t, r, b).

    IoU-family losses are translation invariant, so a loss on these boxes is the
    loss on the boxes around the real point.
    """
    return torch.stack([-ltrb[..., 0], -ltrb[..., 1], ltrb[..., 2], ltrb[..., 3]], dim=-1)


def paired_iou(
    pred: torch.Tensor, target: torch.Tensor, kind: str = "iou", eps: float = 1e-7
) -> torch.Tensor:
    """IoU, GIoU, DIoU or CIoU of matching xyxy boxes.

    Parameters
    ----------
    pred, target : Tensor [..., 4]
        xyxy boxes; inverted sides count as zero size.
    kind : {"iou", "giou", "diou", "ciou"}
    eps : float
        Added to denominators; results are finite for degenerate boxes.

    Returns
    -------
    Tensor [...]
        IoU in [0, 1]; GIoU / DIoU / CIoU in [-1, 1].
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if pred.shape != target.shape or pred.shape[-1] != 4:
        raise ValueError(
            f"pred has shape {tuple(pred.shape)} and target {tuple(target.shape)}; "
            "expected equal shapes [..., 4]"
        )
    pw = (pred[..., 2] - pred[..., 0]).clamp(min=0)
    ph = (pred[..., 3] - pred[..., 1]).clamp(min=0)
    tw = (target[..., 2] - target[..., 0]).clamp(min=0)
    th = (target[..., 3] - target[..., 1]).clamp(min=0)
    iw = (torch.minimum(pred[..., 2], target[..., 2]) - torch.maximum(pred[..., 0], target[..., 0]))
    ih = (torch.minimum(pred[..., 3], target[..., 3]) - torch.maximum(pred[..., 1], target[..., 1]))
    inter = iw.clamp(min=0) * ih.clamp(min=0)
    union = pw * ph + tw * th - inter
    iou = inter / (union + eps)
    if kind == "iou":
        return iou
    cw = torch.maximum(pred[..., 2], target[..., 2]) - torch.minimum(pred[..., 0], target[..., 0])
    ch = torch.maximum(pred[..., 3], target[..., 3]) - torch.minimum(pred[..., 1], target[..., 1])
    if kind == "giou":
        enclose = cw.clamp(min=0) * ch.clamp(min=0)
        return iou - (enclose - union) / (enclose + eps)
    diag = cw**2 + ch**2 + eps
    dx = (pred[..., 0] + pred[..., 2] - target[..., 0] - target[..., 2]) / 2
    dy = (pred[..., 1] + pred[..., 3] - target[..., 1] - target[..., 3]) / 2
    diou = iou - (dx**2 + dy**2) / diag
    if kind == "diou":
        return diou
    v = (4 / math.pi**2) * (torch.atan(tw / (th + eps)) - torch.atan(pw / (ph + eps))) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


class _BoxLoss(nn.Module):
    kind = "iou"

    def __init__(self, reduction: str = "mean", eps: float = 1e-7) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.eps = eps

    def per_box(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1 - paired_iou(pred, target, self.kind, self.eps)

    def forward(
        self,
        pred_boxes: torch.Tensor,
        target_boxes: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss of matching boxes.

        Parameters
        ----------
        pred_boxes, target_boxes : Tensor [N, 4]
            xyxy boxes.
        weights : Tensor [N], optional
            Per-box weights; ``mean`` becomes sum(w * l) / sum(w).

        Returns
        -------
        Tensor
            Scalar (``mean`` / ``sum``; 0 for N = 0) or [N] (``none``).
        """
        loss = self.per_box(pred_boxes, target_boxes)
        return reduce_loss(loss, self.reduction, weights)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, eps={self.eps}"


class IoULoss(_BoxLoss):
    """``1 - IoU`` (``mode="linear"``) or ``-log(IoU)`` (``mode="log"``) on xyxy boxes."""

    kind = "iou"

    def __init__(self, reduction: str = "mean", eps: float = 1e-7, mode: str = "linear") -> None:
        super().__init__(reduction, eps)
        if mode not in ("linear", "log"):
            raise ValueError(f"mode must be 'linear' or 'log', got {mode!r}")
        self.mode = mode

    def per_box(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        iou = paired_iou(pred, target, "iou", self.eps)
        return -torch.log(iou.clamp(min=self.eps)) if self.mode == "log" else 1 - iou


class GIoULoss(_BoxLoss):
    """``1 - GIoU`` on xyxy boxes, in [0, 2]."""

    kind = "giou"


class DIoULoss(_BoxLoss):
    """``1 - DIoU`` on xyxy boxes, in [0, 2]."""

    kind = "diou"


class CIoULoss(_BoxLoss):
    """``1 - CIoU`` on xyxy boxes."""

    kind = "ciou"
