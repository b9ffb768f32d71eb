"""SimOTA: YOLOX's dynamic label assignment (Ge et al., 2021), batched on the device.

The rule is mmdetection's ``SimOTAAssigner`` evaluated for a whole padded batch
at once, without host synchronisation and without a Python loop over images:

* a point is a *candidate* for a box when it lies strictly inside the box or
  within ``center_radius`` strides of the box centre (``|x - cx| < r·s`` and
  ``|y - cy| < r·s``); points that are candidates of no box are never assigned;
* cost of (point, box) = classification cost + ``iou_weight`` · IoU cost + a
  large penalty (``1e5``) when the point is not both inside the box and inside
  its centre region. The classification cost is the binary cross-entropy,
  summed over classes, between the point's score (``sqrt(sigmoid(cls) ·
  sigmoid(obj))`` with objectness, ``sigmoid(cls)`` without) and the box's
  one-hot label; the IoU cost is ``-log(IoU + 1e-8)`` of the point's predicted
  box with the box;
* each box takes its ``k`` cheapest candidate points, ``k = max(floor(Σ of its
  10 largest IoUs over candidate points), 1)`` (dynamic k);
* a point taken by several boxes keeps the cheapest of them (the lowest box
  index on equal costs).

Memory is ``O(B · P · chunk)`` for a chunk of boxes (``max_boxes_per_chunk``);
the boxes are walked in chunks of a size known on the host, so a crowded image
does not need a ``[B, P, M]`` cost matrix of every box at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.nn.utils.rnn import pad_sequence

from autotimm.constants import BACKGROUND
from autotimm.ops.boxes import box_area

__all__ = ["SimOTAAssignment", "pad_boxes", "simota_assign"]

#: Number of largest IoUs whose sum gives a box's dynamic k (YOLOX: 10).
CANDIDATE_TOP_K = 10
#: Cost added when a point is not inside both the box and its centre region.
OUTSIDE_PENALTY = 1e5
_NOT_CANDIDATE = float("inf")
_LOG_CLAMP = 100.0  # torch's binary_cross_entropy clamps log terms at -100


class SimOTAAssignment(NamedTuple):
    """Result of :func:`simota_assign` for a batch of B images and P points.

    Attributes
    ----------
    gt_index : Tensor [B, P] int64
        Index of the assigned box in the padded box dimension, or -1.
    labels : Tensor [B, P] int64
        Class of the assigned box, ``BACKGROUND`` (-1) for unassigned points.
    ious : Tensor [B, P] float32
        IoU of the point's predicted box with its assigned box (0 if unassigned).
    boxes : Tensor [B, P, 4] float32
        The assigned box (xyxy; zeros if unassigned).
    """

    gt_index: torch.Tensor
    labels: torch.Tensor
    ious: torch.Tensor
    boxes: torch.Tensor

    @property
    def foreground(self) -> torch.Tensor:
        """Tensor [B, P] bool: assigned points."""
        return self.gt_index >= 0


def pad_boxes(
    boxes: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad per-image boxes [N_i, 4] and labels [N_i] to [B, M, 4] float32 and [B, M] int64.

    M = max(N_i) (0 when every image is empty); padded labels are -1. Sizes are
    read from the list's shapes, so there is no host synchronisation.
    """
    if len(boxes) != len(labels) or len(boxes) == 0:
        raise ValueError(
            f"boxes and labels must be non-empty lists of equal length, got {len(boxes)} "
            f"and {len(labels)}"
        )
    padded_boxes = pad_sequence(
        [b.to(device, torch.float32, non_blocking=True).reshape(-1, 4) for b in boxes],
        batch_first=True,
    )
    padded_labels = pad_sequence(
        [lab.to(device, torch.int64, non_blocking=True).reshape(-1) for lab in labels],
        batch_first=True,
        padding_value=BACKGROUND,
    )
    return padded_boxes, padded_labels


def _pairwise_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU of pred [B, P, 4] with gt [B, M, 4] -> [B, P, M] (0 on empty unions)."""
    lt = torch.maximum(pred[:, :, None, :2], gt[:, None, :, :2])
    rb = torch.minimum(pred[:, :, None, 2:], gt[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(pred)[:, :, None] + box_area(gt)[:, None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)


def _check(
    cls_logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    points: torch.Tensor,
    strides: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    obj_logits: torch.Tensor | None,
) -> None:
    if cls_logits.dim() != 3:
        raise ValueError(f"cls_logits has shape {tuple(cls_logits.shape)}; expected (B, P, C)")
    b, p, _ = cls_logits.shape
    expected = {
        "pred_boxes": (pred_boxes, (b, p, 4)),
        "points": (points, (p, 2)),
        "strides": (strides, (p,)),
        "gt_labels": (gt_labels, (b, gt_boxes.shape[1] if gt_boxes.dim() == 3 else -1)),
    }
    if obj_logits is not None:
        expected["obj_logits"] = (obj_logits, (b, p))
    if gt_boxes.dim() != 3 or gt_boxes.shape[0] != b or gt_boxes.shape[2] != 4:
        raise ValueError(f"gt_boxes has shape {tuple(gt_boxes.shape)}; expected ({b}, M, 4)")
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}; expected {shape}")


@torch.no_grad()
def simota_assign(
    cls_logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    points: torch.Tensor,
    strides: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    obj_logits: torch.Tensor | None = None,
    center_radius: float = 2.5,
    iou_weight: float = 3.0,
    max_boxes_per_chunk: int = 64,
) -> SimOTAAssignment:
    """Assign points to boxes with SimOTA, for a padded batch.

    Parameters
    ----------
    cls_logits : Tensor [B, P, C] float
        Classification logits of every point.
    pred_boxes : Tensor [B, P, 4] float
        Predicted xyxy boxes (pixels) of every point.
    points : Tensor [P, 2] float
        (x, y) of every point.
    strides : Tensor [P] float
        Stride of every point's level.
    gt_boxes : Tensor [B, M, 4] float
        Boxes padded to M per image (see :func:`pad_boxes`); M may be 0.
    gt_labels : Tensor [B, M] int64
        Class in [0, C) of each box; negative for padding.
    obj_logits : Tensor [B, P] float, optional
        Objectness logits; the score is then ``sqrt(sigmoid(cls) · sigmoid(obj))``.
    center_radius : float
        Candidate radius around box centres, in strides.
    iou_weight : float
        Weight of the IoU cost.
    max_boxes_per_chunk : int
        Boxes whose ``[B, P, chunk]`` costs are held at once.

    Returns
    -------
    SimOTAAssignment
    """
    _check(cls_logits, pred_boxes, points, strides, gt_boxes, gt_labels, obj_logits)
    if max_boxes_per_chunk < 1:
        raise ValueError(f"max_boxes_per_chunk must be >= 1, got {max_boxes_per_chunk!r}")
    batch, num_points, _ = cls_logits.shape
    num_boxes = gt_boxes.shape[1]
    device = cls_logits.device
    if num_boxes == 0:
        return SimOTAAssignment(
            torch.full((batch, num_points), BACKGROUND, dtype=torch.int64, device=device),
            torch.full((batch, num_points), BACKGROUND, dtype=torch.int64, device=device),
            torch.zeros((batch, num_points), device=device),
            torch.zeros((batch, num_points, 4), device=device),
        )
    # float32 (or float64 when the predictions are float64)
    dtype = torch.promote_types(pred_boxes.dtype, torch.float32)
    gt_boxes = gt_boxes.to(dtype)
    pred_boxes = pred_boxes.to(dtype)
    valid_gt = gt_labels >= 0
    scores = cls_logits.to(dtype).sigmoid()
    if obj_logits is not None:
        scores = (scores * obj_logits.to(dtype).sigmoid()[..., None]).sqrt()
    # BCE(score, one_hot(l)) summed over classes = Σ_c -log(1 - s_c) + (-log s_l + log(1 - s_l))
    neg = (-torch.log1p(-scores)).clamp(max=_LOG_CLAMP)
    pos = (-torch.log(scores)).clamp(max=_LOG_CLAMP)
    neg_sum = neg.sum(-1)  # [B, P]
    pos_minus_neg = pos - neg  # [B, P, C]

    px, py = points[:, 0].to(dtype), points[:, 1].to(dtype)
    radius = center_radius * strides.to(dtype)

    def geometry(chunk: slice) -> tuple[torch.Tensor, torch.Tensor]:
        g = gt_boxes[:, chunk]  # [B, m, 4]
        x1, y1, x2, y2 = (g[..., i][:, None, :] for i in range(4))  # [B, 1, m]
        x, y = px[None, :, None], py[None, :, None]
        in_box = (x > x1) & (y > y1) & (x < x2) & (y < y2)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        r = radius[None, :, None]
        in_centre = ((x - cx).abs() < r) & ((y - cy).abs() < r)
        valid = valid_gt[:, None, chunk]
        return in_box & valid, in_centre & valid

    chunks = [
        slice(start, min(start + max_boxes_per_chunk, num_boxes))
        for start in range(0, num_boxes, max_boxes_per_chunk)
    ]
    # Points that are candidates of some box (mmdetection's ``valid_mask``).
    candidate = torch.zeros((batch, num_points), dtype=torch.bool, device=device)
    for chunk in chunks:
        in_box, in_centre = geometry(chunk)
        candidate |= (in_box | in_centre).any(-1)

    top_k = min(CANDIDATE_TOP_K, num_points)
    sel_cost, sel_point = [], []
    for chunk in chunks:
        in_box, in_centre = geometry(chunk)
        ious = _pairwise_iou(pred_boxes, gt_boxes[:, chunk]) * candidate[..., None]  # [B, P, m]
        labels = gt_labels[:, chunk].clamp(min=0)  # [B, m]
        cls_cost = neg_sum[..., None] + pos_minus_neg.gather(
            2, labels[:, None, :].expand(-1, num_points, -1)
        )
        cost = cls_cost + iou_weight * -torch.log(ious + 1e-8)
        cost = cost + OUTSIDE_PENALTY * (~(in_box & in_centre)).float()
        usable = candidate[..., None] & valid_gt[:, None, chunk]
        cost = torch.where(usable, cost, _NOT_CANDIDATE)
        dynamic_k = ious.topk(top_k, dim=1).values.sum(1).int().clamp(min=1)  # [B, m]
        cheapest, idx = cost.topk(top_k, dim=1, largest=False)  # [B, k, m]
        rank = torch.arange(top_k, device=device)[None, :, None]
        taken = (rank < dynamic_k[:, None, :]) & torch.isfinite(cheapest)
        sel_cost.append(torch.where(taken, cheapest, _NOT_CANDIDATE))
        sel_point.append(idx)
    costs = torch.cat(sel_cost, dim=2).flatten(1)  # [B, k * M] (box-major within chunk)
    point_idx = torch.cat(sel_point, dim=2).flatten(1)
    box_idx = (
        torch.arange(num_boxes, device=device)[None, None, :]
        .expand(batch, top_k, num_boxes)
        .reshape(batch, -1)
    )
    # Chunks are concatenated on the box axis: box_idx has the same [B, k, M] layout.
    best = torch.full((batch, num_points), _NOT_CANDIDATE, dtype=dtype, device=device)
    best = best.scatter_reduce(1, point_idx, costs, reduce="amin")
    wins = torch.isfinite(costs) & (costs == best.gather(1, point_idx))
    sentinel = num_boxes
    winner = torch.full((batch, num_points), sentinel, dtype=torch.int64, device=device)
    winner = winner.scatter_reduce(
        1, point_idx, torch.where(wins, box_idx, sentinel), reduce="amin"
    )
    foreground = winner < sentinel
    gt_index = torch.where(foreground, winner, BACKGROUND)
    safe = winner.clamp(max=num_boxes - 1)
    assigned_boxes = gt_boxes.float().gather(1, safe[..., None].expand(-1, -1, 4))
    assigned_boxes = assigned_boxes * foreground[..., None]
    labels = torch.where(foreground, gt_labels.gather(1, safe), BACKGROUND)
    ious = _matched_iou(pred_boxes.float(), assigned_boxes) * foreground
    return SimOTAAssignment(gt_index, labels, ious, assigned_boxes)


def _matched_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    lt = torch.maximum(pred[..., :2], gt[..., :2])
    rb = torch.minimum(pred[..., 2:], gt[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(pred) + box_area(gt) - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)
