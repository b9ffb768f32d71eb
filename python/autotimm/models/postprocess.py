"""Post-processing of dense detection outputs into per-image detections.

The steps are torchvision's ``FCOS.postprocess_detections``, batched over the
images of a batch (no Python loop over images, no host read until the final
split into per-image results):

1. per level, a score for every (point, class): ``sigmoid(cls)``, combined with
   the quality branch when there is one (FCOS: ``sqrt(sigmoid(cls) ·
   sigmoid(centerness))`` as torchvision ranks them);
2. per level and image, the ``top_k`` best (point, class) pairs whose score is
   above ``score_thresh``;
3. boxes decoded from the LTRB distances around the points and clipped to each
   image's own size (the size before the batch was padded);
4. one batched NMS over the batch, per image and class;
5. the ``max_detections`` best of each image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from autotimm.ops.boxes import level_points, ltrb_to_xyxy

__all__ = ["QUALITY_MODES", "Detections", "postprocess_detections", "split_detections"]

#: How the quality branch enters the score: ``sqrt`` = sqrt(cls · q) (FCOS),
#: ``product`` = cls · q (YOLOX objectness).
QUALITY_MODES = ("sqrt", "product")


class Detections(NamedTuple):
    """Detections of a batch, flat over images and sorted by image then score.

    Attributes
    ----------
    boxes : Tensor [K, 4] float32
        xyxy pixels, clipped to the image.
    scores : Tensor [K] float32
    labels : Tensor [K] int64
    image_index : Tensor [K] int64
        Image of each detection in the batch.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    image_index: torch.Tensor


def _scores(
    cls: torch.Tensor, quality: torch.Tensor | None, quality_mode: str
) -> torch.Tensor:
    """[B, C, h, w] logits (and [B, 1, h, w] quality logits) -> [B, h*w*C] scores."""
    scores = cls.float().sigmoid()
    if quality is not None:
        scores = scores * quality.float().sigmoid()
        if quality_mode == "sqrt":
            scores = scores.sqrt()
    return scores.flatten(2).transpose(1, 2).flatten(1)


def _clip(boxes: torch.Tensor, image_sizes: torch.Tensor) -> torch.Tensor:
    """Clip [B, K, 4] xyxy boxes to per-image (H, W) sizes [B, 2]."""
    sizes = image_sizes.to(boxes)
    w = sizes[:, 1, None]
    h = sizes[:, 0, None]
    zero = torch.zeros_like(w)
    return torch.stack(
        [
            torch.minimum(torch.maximum(boxes[..., 0], zero), w),
            torch.minimum(torch.maximum(boxes[..., 1], zero), h),
            torch.minimum(torch.maximum(boxes[..., 2], zero), w),
            torch.minimum(torch.maximum(boxes[..., 3], zero), h),
        ],
        dim=-1,
    )


def postprocess_detections(
    cls_logits: Sequence[torch.Tensor],
    ltrb: Sequence[torch.Tensor],
    quality_logits: Sequence[torch.Tensor] | None,
    strides: Sequence[int],
    image_sizes: torch.Tensor,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.6,
    top_k: int = 1000,
    max_detections: int = 100,
    quality_mode: str = "sqrt",
) -> Detections:
    """Detections of a batch from the head outputs of every level.

    Parameters
    ----------
    cls_logits : sequence of Tensor [B, C, h_l, w_l]
        Classification logits per level.
    ltrb : sequence of Tensor [B, 4, h_l, w_l]
        Distances in pixels from the cell centres ``((x + 0.5) s, (y + 0.5) s)``.
    quality_logits : sequence of Tensor [B, 1, h_l, w_l], or None
        Centerness (FCOS) or objectness logits per level.
    strides : sequence of int
        Stride of each level.
    image_sizes : Tensor [B, 2] int
        (H, W) of each image before padding; boxes are clipped to it.
    score_thresh : float
        Candidates must score strictly above it.
    nms_thresh : float
        IoU threshold of the per-image, per-class NMS.
    top_k : int
        Candidates kept per level and image before NMS.
    max_detections : int
        Detections kept per image after NMS.
    quality_mode : {"sqrt", "product"}
        How the quality logits enter the score.

    Returns
    -------
    Detections
        Flat over the batch, per image in descending score.
    """
    from autotimm.ops import batched_nms

    if quality_mode not in QUALITY_MODES:
        raise ValueError(f"quality_mode must be one of {QUALITY_MODES}, got {quality_mode!r}")
    if len(cls_logits) != len(ltrb) or len(cls_logits) > len(strides):
        raise ValueError(
            f"got {len(cls_logits)} cls levels, {len(ltrb)} ltrb levels and strides {strides}; "
            "expected as many cls as ltrb levels, at most one per stride"
        )
    batch = int(cls_logits[0].shape[0])
    if tuple(image_sizes.shape) != (batch, 2):
        raise ValueError(f"image_sizes has shape {tuple(image_sizes.shape)}; expected ({batch}, 2)")
    device = cls_logits[0].device
    all_boxes, all_scores, all_labels = [], [], []
    for level, (cls, reg) in enumerate(zip(cls_logits, ltrb, strict=True)):
        num_classes = int(cls.shape[1])
        h, w = int(cls.shape[-2]), int(cls.shape[-1])
        quality = None if quality_logits is None else quality_logits[level]
        scores = _scores(cls, quality, quality_mode)  # [B, h*w*C]
        k = min(top_k, scores.shape[1])
        scores, flat_idx = scores.topk(k, dim=1)
        # (point, class) order within the level: equal scores keep a fixed order in NMS
        flat_idx, order = flat_idx.sort(dim=1)
        scores = scores.gather(1, order)
        point_idx = torch.div(flat_idx, num_classes, rounding_mode="floor")
        labels = flat_idx - point_idx * num_classes
        points = level_points([(h, w)], [strides[level]], device=device)
        distances = reg.float().flatten(2).transpose(1, 2)  # [B, h*w, 4]
        distances = distances.gather(1, point_idx[..., None].expand(-1, -1, 4))
        all_boxes.append(ltrb_to_xyxy(points[point_idx], distances))
        all_scores.append(scores)
        all_labels.append(labels)
    boxes = _clip(torch.cat(all_boxes, dim=1), image_sizes)  # [B, K, 4]
    scores = torch.cat(all_scores, dim=1)
    labels = torch.cat(all_labels, dim=1)
    image_index = torch.arange(batch, device=device)[:, None].expand_as(scores)
    keep = scores > score_thresh
    boxes, scores, labels, image_index = (
        boxes[keep], scores[keep], labels[keep], image_index[keep]
    )
    num_classes = int(cls_logits[0].shape[1])
    order = batched_nms(boxes, scores, image_index * num_classes + labels, nms_thresh)
    # ``order`` is in descending score over the batch; a stable sort by image keeps
    # that order within each image, and the rank within the image caps the count.
    kept_image = image_index[order]
    by_image = torch.sort(kept_image, stable=True).indices
    order, kept_image = order[by_image], kept_image[by_image]
    counts = torch.bincount(kept_image, minlength=batch)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(order.shape[0], device=device) - first[kept_image]
    order = order[rank < max_detections]
    return Detections(boxes[order], scores[order], labels[order].long(), image_index[order])


def split_detections(detections: Detections, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """Per image ``{"boxes" [K_i, 4], "scores" [K_i], "labels" [K_i]}`` (reads the counts)."""
    counts = torch.bincount(detections.image_index, minlength=batch_size).tolist()
    boxes = detections.boxes.split(counts)
    scores = detections.scores.split(counts)
    labels = detections.labels.split(counts)
    return [
        {"boxes": b, "scores": s, "labels": lab}
        for b, s, lab in zip(boxes, scores, labels, strict=True)
    ]
