"""Non-maximum suppression with torchvision's signatures and results.

CPU tensors run on the native core (``autotimm._native``, GIL released);
tensors on any other device run ``torchvision.ops``. On CPU the results are
index-identical to ``torchvision.ops.nms`` / ``torchvision.ops.batched_nms``:
a stable descending score sort (equal scores keep ascending index order),
IoU computed in the boxes' dtype and suppression iff ``IoU > iou_threshold``
with the threshold taken as a double. ``batched_nms`` reproduces torchvision's
two CPU paths: up to 1000 boxes the coordinate-offset trick (with its float
rounding), above 1000 boxes NMS per class. On the per-class path torchvision
orders the kept boxes with torch's default (unstable) sort,
``keep[scores[keep].sort(descending=True)[1]]`` over the kept indices in
ascending order; this module finishes that path with the same call, so equal
scores come out in torchvision's order there too.

Differences from torchvision, all on invalid input: NaN or infinite boxes or
scores and a NaN threshold raise ``ValueError`` (torchvision returns an
arbitrary but defined result); float16/bfloat16 raise ``TypeError`` (as
torchvision does on CPU); ``idxs`` must have an integer dtype.
"""

from __future__ import annotations

import torch
import torchvision

from autotimm import _native

__all__ = ["batched_nms", "nms"]

_FLOAT_DTYPES = (torch.float32, torch.float64)
# torchvision's batched_nms runs NMS per class on CPU when boxes.numel() > 4000.
_VANILLA_ABOVE_NUMEL = 4000
_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _check_floats(boxes: torch.Tensor, scores: torch.Tensor) -> None:
    dtype = boxes.dtype
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"boxes has dtype {dtype}; expected torch.float32 or torch.float64")
    if scores.dtype != dtype:
        raise TypeError(f"scores has dtype {scores.dtype}; expected {dtype} (the dtype of boxes)")


def _array(tensor: torch.Tensor):  # -> numpy.ndarray, without copying when possible
    if tensor.requires_grad:
        tensor = tensor.detach()
    if not tensor.is_contiguous():
        tensor = tensor.contiguous()
    return tensor.numpy()


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression, as ``torchvision.ops.nms``.

    Parameters
    ----------
    boxes : torch.Tensor
        ``(N, 4)`` float32 or float64 boxes in ``(x1, y1, x2, y2)`` format.
    scores : torch.Tensor
        ``(N,)`` scores, same dtype as ``boxes``.
    iou_threshold : float
        Boxes whose IoU with a kept, higher-scoring box is strictly greater
        than this are discarded.

    Returns
    -------
    torch.Tensor
        ``(K,)`` int64 indices of the kept boxes, in decreasing score order
        (equal scores: lower index first).

    Raises
    ------
    TypeError
        If ``boxes`` is not float32/float64 or ``scores`` has another dtype.
    ValueError
        On wrong shapes, mismatched lengths, NaN/infinite values or a NaN
        threshold.
    """
    if not (boxes.is_cpu and scores.is_cpu):
        return torchvision.ops.nms(boxes, scores, iou_threshold)
    _check_floats(boxes, scores)
    keep = _native.nms(_array(boxes), _array(scores), iou_threshold)
    return torch.from_numpy(keep)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Per-class non-maximum suppression, as ``torchvision.ops.batched_nms``.

    Boxes with different ``idxs`` never suppress each other (up to the
    coordinate-offset rounding that torchvision itself applies to 1000 boxes
    or fewer, which is reproduced).

    Parameters
    ----------
    boxes : torch.Tensor
        ``(N, 4)`` float32 or float64 boxes in ``(x1, y1, x2, y2)`` format.
    scores : torch.Tensor
        ``(N,)`` scores, same dtype as ``boxes``.
    idxs : torch.Tensor
        ``(N,)`` integer class index of each box (any integer dtype).
    iou_threshold : float
        Boxes whose IoU with a kept, higher-scoring box of the same class is
        strictly greater than this are discarded.

    Returns
    -------
    torch.Tensor
        ``(K,)`` int64 indices of the kept boxes, in decreasing score order;
        equal scores in torchvision's order (lower index first up to 1000
        boxes, torch's default sort above).

    Raises
    ------
    TypeError
        If ``boxes`` is not float32/float64, ``scores`` has another dtype or
        ``idxs`` is not an integer tensor.
    ValueError
        On wrong shapes, mismatched lengths, NaN/infinite values or a NaN
        threshold.
    """
    if not (boxes.is_cpu and scores.is_cpu and idxs.is_cpu):
        return torchvision.ops.batched_nms(boxes, scores, idxs, iou_threshold)
    _check_floats(boxes, scores)
    if idxs.dtype != torch.int64:
        if idxs.dtype not in _INT_DTYPES:
            raise TypeError(f"idxs has dtype {idxs.dtype}; expected an integer dtype")
        idxs = idxs.to(torch.int64)
    per_class = boxes.numel() > _VANILLA_ABOVE_NUMEL
    keep = torch.from_numpy(
        _native.batched_nms(
            _array(boxes),
            _array(scores),
            _array(idxs),
            iou_threshold,
            torch.get_num_threads(),
            by_index=per_class,
        )
    )
    if per_class:
        keep = _torchvision_order(keep, scores)
    return keep


def _torchvision_order(ascending: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Orders kept indices as ``torchvision``'s per-class path does.

    Parameters
    ----------
    ascending : torch.Tensor
        ``(K,)`` int64 kept indices in ascending order (``torch.where(keep_mask)``).
    scores : torch.Tensor
        ``(N,)`` float scores of all boxes.

    Returns
    -------
    torch.Tensor
        ``ascending`` permuted by torch's default (unstable) descending sort of
        their scores, exactly as ``torchvision.ops.boxes._batched_nms_vanilla``
        does.
    """
    return ascending[scores.detach()[ascending].sort(descending=True)[1]]
