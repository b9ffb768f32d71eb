"""Multi-class non-maximum suppression as one operator that exports to ONNX.

``multiclass_nms`` (registered as the torch operator ``autotimm::multiclass_nms``)
has the contract of ONNX ``NonMaxSuppression``: per image and per class,
greedy suppression of boxes whose IoU with a kept, higher-scoring box of the
same image and class is strictly greater than the threshold. In PyTorch it runs
:func:`autotimm.ops.batched_nms` (the native core on CPU, torchvision
elsewhere); the ONNX exporter writes it as one ``NonMaxSuppression`` node, so
classes and images never suppress each other and no coordinate offsets are
involved.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.onnx import symbolic_helper

__all__ = ["ONNX_MIN_OPSET", "multiclass_nms"]

#: First ONNX opset with ``NonMaxSuppression`` taking these inputs.
ONNX_MIN_OPSET = 11


@torch.library.custom_op("autotimm::multiclass_nms", mutates_args=())
def multiclass_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    score_threshold: float,
    max_per_class: int,
) -> torch.Tensor:
    """Kept boxes per image and class, as ONNX ``NonMaxSuppression`` returns them.

    Parameters
    ----------
    boxes : Tensor [B, N, 4] float32
        xyxy boxes of each image.
    scores : Tensor [B, C, N] float32
        Score of each box for each class; only scores strictly above
        ``score_threshold`` take part.
    iou_threshold : float
        A box is suppressed when its IoU with a kept box of the same image and
        class is strictly greater.
    score_threshold : float
    max_per_class : int
        Boxes kept at most per image and class (the highest-scoring ones).

    Returns
    -------
    Tensor [K, 3] int64
        ``(image, class, box)`` of the kept boxes, grouped by image then class,
        each group in decreasing score order.
    """
    from autotimm.ops import batched_nms

    num_classes = scores.shape[1]
    image, label, box = (scores > score_threshold).nonzero(as_tuple=True)
    group = image * num_classes + label
    keep = batched_nms(boxes[image, box], scores[image, label, box], group, iou_threshold)
    # Stable sort by group keeps the decreasing score order inside each group.
    kept_group, order = torch.sort(group[keep], stable=True)
    keep = keep[order]
    first_of_group = torch.searchsorted(kept_group, kept_group)
    rank = torch.arange(kept_group.numel(), device=kept_group.device) - first_of_group
    keep = keep[rank < max_per_class]
    return torch.stack([image[keep], label[keep], box[keep]], dim=1)


@multiclass_nms.register_fake
def _multiclass_nms_fake(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    score_threshold: float,
    max_per_class: int,
) -> torch.Tensor:
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept, 3), dtype=torch.int64)


@symbolic_helper.parse_args("v", "v", "f", "f", "i")
def _onnx_symbolic(
    g: Any,  # the TorchScript exporter's graph context
    boxes: torch.Value,
    scores: torch.Value,
    iou_threshold: float,
    score_threshold: float,
    max_per_class: int,
) -> torch.Value:
    def constant(value: torch.Tensor) -> torch.Value:
        return g.op("Constant", value_t=value)

    return g.op(
        "NonMaxSuppression",
        boxes,
        scores,
        constant(torch.tensor([max_per_class], dtype=torch.int64)),
        constant(torch.tensor([iou_threshold], dtype=torch.float32)),
        constant(torch.tensor([score_threshold], dtype=torch.float32)),
    )


torch.onnx.register_custom_op_symbolic("autotimm::multiclass_nms", _onnx_symbolic, ONNX_MIN_OPSET)
