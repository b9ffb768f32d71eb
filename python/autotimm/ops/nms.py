"""Non-maximum suppression with torchvision's signatures and results."""

from __future__ import annotations

import torch
import torchvision

from autotimm import _native


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS. boxes [N, 4] xyxy, scores [N] -> int64 [K] kept indices."""
    if boxes.is_cuda:
        return torchvision.ops.nms(boxes, scores, iou_threshold)
    keep = _native.nms_f32(boxes.float().contiguous().numpy(), scores.float().contiguous().numpy(), iou_threshold)
    return torch.from_numpy(keep)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Per-class NMS (placeholder: torchvision until the native path lands)."""
    return torchvision.ops.batched_nms(boxes, scores, idxs, iou_threshold)
