"""Box helpers: LTRB <-> xyxy around points, pairwise IoU, point grids."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def level_points(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Cell centres of every level, in the layout of ``fcos_targets``.

    Parameters
    ----------
    feature_sizes : sequence of (h, w)
        Feature-map size of each level.
    strides : sequence of int
        Stride of each level (same length).

    Returns
    -------
    Tensor [P, 2], float32
        ``((x + 0.5) * s, (y + 0.5) * s)``, levels in order, row-major per level;
        P = sum of h * w.
    """
    if len(feature_sizes) != len(strides):
        raise ValueError(
            f"feature_sizes has {len(feature_sizes)} levels but strides has {len(strides)}"
        )
    points = []
    for (h, w), s in zip(feature_sizes, strides, strict=True):
        ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * s
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1))
    return torch.cat(points, dim=0)


def ltrb_to_xyxy(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """Boxes from distances to the four sides.

    Parameters
    ----------
    points : Tensor [..., 2]
        (x, y) of each point.
    ltrb : Tensor [..., 4]
        (left, top, right, bottom) distances, broadcastable with ``points``.

    Returns
    -------
    Tensor [..., 4]
        (x1, y1, x2, y2) = (x - l, y - t, x + r, y + b).
    """
    x, y = points[..., 0], points[..., 1]
    return torch.stack(
        [x - ltrb[..., 0], y - ltrb[..., 1], x + ltrb[..., 2], y + ltrb[..., 3]], dim=-1
    )


def xyxy_to_ltrb(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Distances from points to the sides of boxes (inverse of :func:`ltrb_to_xyxy`)."""
    x, y = points[..., 0], points[..., 1]
    return torch.stack(
        [x - boxes[..., 0], y - boxes[..., 1], boxes[..., 2] - x, boxes[..., 3] - y], dim=-1
    )


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of xyxy boxes [..., 4] -> [...] (negative sizes count as 0)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(
        min=0
    )


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes.

    Parameters
    ----------
    boxes1 : Tensor [N, 4]
    boxes2 : Tensor [M, 4]

    Returns
    -------
    Tensor [N, M]
        IoU; 0 where the union is empty.
    """
    for name, b in (("boxes1", boxes1), ("boxes2", boxes2)):
        if b.dim() != 2 or b.shape[-1] != 4:
            raise ValueError(f"{name} has shape {tuple(b.shape)}; expected (N, 4)")
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)


def clip_boxes(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Clamp xyxy boxes [..., 4] to an image of size (H, W)."""
    h, w = image_size
    x1 = boxes[..., 0].clamp(0, w)
    y1 = boxes[..., 1].clamp(0, h)
    x2 = boxes[..., 2].clamp(0, w)
    y2 = boxes[..., 3].clamp(0, h)
    return torch.stack([x1, y1, x2, y2], dim=-1)
