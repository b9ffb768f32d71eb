"""SimOTA assignment: hand-built cases and a property test against a per-image reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autotimm.ops.boxes import level_points
from autotimm.ops.simota import OUTSIDE_PENALTY, pad_boxes, simota_assign


def grid(size: int = 64, strides: tuple[int, ...] = (8, 16)) -> tuple[torch.Tensor, torch.Tensor]:
    sizes = [(size // s, size // s) for s in strides]
    points = level_points(sizes, strides)
    point_strides = torch.cat(
        [torch.full((h * w,), float(s)) for (h, w), s in zip(sizes, strides, strict=True)]
    )
    return points, point_strides


def reference_assign(cls_logits, pred_boxes, points, strides, boxes, labels, radius=2.5):
    """One image, plain loops over boxes and points (mmdetection's SimOTAAssigner)."""
    num_points, num_boxes = points.shape[0], boxes.shape[0]
    gt_index = torch.full((num_points,), -1, dtype=torch.int64)
    if num_boxes == 0:
        return gt_index
    scores = cls_logits.sigmoid()
    x, y = points[:, 0:1], points[:, 1:2]
    in_box = (x > boxes[:, 0]) & (y > boxes[:, 1]) & (x < boxes[:, 2]) & (y < boxes[:, 3])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    r = radius * strides[:, None]
    in_centre = ((x - cx).abs() < r) & ((y - cy).abs() < r)
    candidate = (in_box | in_centre).any(1)
    cand_idx = torch.nonzero(candidate).flatten().tolist()
    cost = torch.full((num_points, num_boxes), math.inf, dtype=scores.dtype)
    ious = torch.zeros((num_points, num_boxes), dtype=scores.dtype)
    for p in cand_idx:
        for m in range(num_boxes):
            a, b = pred_boxes[p], boxes[m]
            iw = (torch.minimum(a[2], b[2]) - torch.maximum(a[0], b[0])).clamp(min=0)
            ih = (torch.minimum(a[3], b[3]) - torch.maximum(a[1], b[1])).clamp(min=0)
            inter = iw * ih
            union = (a[2] - a[0]).clamp(min=0) * (a[3] - a[1]).clamp(min=0) + (b[2] - b[0]) * (
                b[3] - b[1]
            ) - inter
            iou = inter / union if union > 0 else union * 0
            one_hot = torch.zeros_like(scores[p])
            one_hot[labels[m]] = 1
            bce = torch.nn.functional.binary_cross_entropy(scores[p], one_hot, reduction="sum")
            penalty = 0.0 if (in_box[p, m] and in_centre[p, m]) else OUTSIDE_PENALTY
            cost[p, m] = bce + 3.0 * -torch.log(iou + 1e-8) + penalty
            ious[p, m] = iou
    chosen: dict[int, list[int]] = {}
    for m in range(num_boxes):
        if not cand_idx:
            break
        top = sorted((float(ious[p, m]) for p in cand_idx), reverse=True)[:10]
        k = max(int(sum(top)), 1)
        for p in sorted(cand_idx, key=lambda q: float(cost[q, m]))[:k]:
            chosen.setdefault(p, []).append(m)
    for p, ms in chosen.items():
        gt_index[p] = min(ms, key=lambda m: (float(cost[p, m]), m))
    return gt_index


def assign(cls_logits, pred_boxes, points, strides, boxes, labels, **kwargs):
    """simota_assign on a batch of lists."""
    gt_boxes, gt_labels = pad_boxes(boxes, labels, torch.device("cpu"))
    return simota_assign(cls_logits, pred_boxes, points, strides, gt_boxes.to(pred_boxes.dtype),
                         gt_labels, **kwargs)


def test_one_box_dynamic_k_from_ious() -> None:
    points, strides = grid()
    box = torch.tensor([[16.0, 16.0, 48.0, 48.0]])
    num_points = points.shape[0]
    cls = torch.zeros(1, num_points, 2)
    # Every point predicts the box exactly: IoU 1 everywhere, so k = 10 (sum of ten 1s).
    pred = box.expand(1, num_points, 4).clone()
    out = assign(cls, pred, points, strides, [box], [torch.tensor([1])])
    fg = out.foreground[0]
    assert int(fg.sum()) == 10
    assert (out.labels[0][fg] == 1).all() and (out.labels[0][~fg] == -1).all()
    assert torch.allclose(out.ious[0][fg], torch.ones(10)) and (out.ious[0][~fg] == 0).all()
    assert torch.equal(out.boxes[0][fg], box.expand(10, 4))
    # Predictions that barely overlap: sum of IoUs < 1, so k = 1 (the clamp).
    far = box.expand(1, num_points, 4) + torch.tensor([30.0, 30.0, 30.0, 30.0])
    out = assign(cls, far, points, strides, [box], [torch.tensor([0])])
    assert int(out.foreground.sum()) == 1


def test_centre_prior_prefers_points_inside_box_and_centre() -> None:
    points, strides = grid()
    box = torch.tensor([[0.0, 0.0, 64.0, 64.0]])
    num_points = points.shape[0]
    cls = torch.zeros(1, num_points, 1)
    pred = box.expand(1, num_points, 4).clone()
    out = assign(cls, pred, points, strides, [box], [torch.tensor([0])])
    x, y = points[:, 0], points[:, 1]
    in_centre = ((x - 32).abs() < 2.5 * strides) & ((y - 32).abs() < 2.5 * strides)
    assert out.foreground[0].any()
    assert in_centre[out.foreground[0]].all()


def test_conflict_goes_to_the_cheapest_box() -> None:
    # Two identical boxes of different classes: the point's class score decides.
    points, strides = grid(32, (8,))
    box = torch.tensor([[0.0, 0.0, 32.0, 32.0]])
    num_points = points.shape[0]
    cls = torch.full((1, num_points, 2), -4.0)
    cls[..., 1] = 4.0  # every point is confident in class 1
    pred = box.expand(1, num_points, 4).clone()
    out = assign(cls, pred, points, strides, [torch.cat([box, box])], [torch.tensor([0, 1])])
    fg = out.foreground[0]
    assert fg.any() and (out.gt_index[0][fg] == 1).all()
    # Equal costs: the lower box index wins.
    cls = torch.zeros(1, num_points, 1)
    out = assign(cls, pred, points, strides, [torch.cat([box, box])], [torch.tensor([0, 0])])
    fg = out.foreground[0]
    assert fg.any() and (out.gt_index[0][fg] == 0).all()


def test_empty_images_and_padding() -> None:
    points, strides = grid()
    num_points = points.shape[0]
    cls = torch.zeros(2, num_points, 3)
    pred = torch.tensor([10.0, 10.0, 30.0, 30.0]).expand(2, num_points, 4).clone()
    none = [torch.zeros(0, 4), torch.zeros(0, 4)]
    out = assign(cls, pred, points, strides, none, [torch.zeros(0, dtype=torch.int64)] * 2)
    assert not out.foreground.any() and out.gt_index.shape == (2, num_points)
    one = [torch.zeros(0, 4), torch.tensor([[8.0, 8.0, 32.0, 32.0]])]
    out = assign(cls, pred, points, strides, one, [torch.zeros(0, dtype=torch.int64),
                                                   torch.tensor([2])])
    assert not out.foreground[0].any() and out.foreground[1].any()
    assert (out.labels[1][out.foreground[1]] == 2).all()


def test_chunking_gives_the_same_assignment() -> None:
    g = torch.Generator().manual_seed(0)
    points, strides = grid()
    num_points = points.shape[0]
    xy = torch.rand(2, 30, 2, generator=g) * 48
    boxes = torch.cat([xy, xy + 4 + torch.rand(2, 30, 2, generator=g) * 20], dim=-1)
    labels = torch.randint(0, 3, (2, 30), generator=g)
    labels[1, 20:] = -1  # padding
    cls = torch.randn(2, num_points, 3, generator=g)
    pred = torch.cat([points - 8, points + 8], dim=-1).expand(2, -1, -1)
    whole = simota_assign(cls, pred, points, strides, boxes, labels)
    chunked = simota_assign(cls, pred, points, strides, boxes, labels, max_boxes_per_chunk=7)
    assert torch.equal(whole.gt_index, chunked.gt_index)
    assert (whole.gt_index[1] < 20).all()


def test_bad_shapes_name_the_argument() -> None:
    points, strides = grid()
    cls = torch.zeros(1, points.shape[0], 2)
    with pytest.raises(ValueError, match="pred_boxes"):
        simota_assign(cls, torch.zeros(1, 3, 4), points, strides, torch.zeros(1, 1, 4),
                      torch.zeros(1, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="gt_boxes"):
        simota_assign(cls, torch.zeros(1, points.shape[0], 4), points, strides,
                      torch.zeros(1, 4), torch.zeros(1, 1, dtype=torch.int64))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    counts=st.lists(st.integers(0, 6), min_size=1, max_size=3),
    num_classes=st.integers(1, 3),
)
def test_matches_the_per_image_reference(seed: int, counts: list[int], num_classes: int) -> None:
    g = torch.Generator().manual_seed(seed)
    points, strides = grid(32, (8, 16))
    points, strides = points.double(), strides.double()
    num_points, batch = points.shape[0], len(counts)
    boxes, labels = [], []
    for n in counts:
        xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 28
        wh = 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 20
        boxes.append(torch.cat([xy, xy + wh], dim=1).float().double())  # exact in float32
        labels.append(torch.randint(0, num_classes, (n,), generator=g))
    cls = torch.randn(batch, num_points, num_classes, generator=g, dtype=torch.float64) * 2
    half = 2 + torch.rand(batch, num_points, 2, generator=g, dtype=torch.float64) * 12
    shift = torch.randn(batch, num_points, 2, generator=g, dtype=torch.float64) * 3
    pred = torch.cat([points + shift - half, points + shift + half], dim=-1)
    gt_boxes, gt_labels = pad_boxes(boxes, labels, torch.device("cpu"))
    out = simota_assign(cls, pred, points, strides, gt_boxes.double(), gt_labels)
    for i in range(batch):
        ref = reference_assign(cls[i], pred[i], points, strides, boxes[i], labels[i])
        assert torch.equal(out.gt_index[i], ref), (i, counts)
