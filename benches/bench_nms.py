"""``autotimm.ops.batched_nms`` beside ``torchvision.ops.batched_nms`` (CPU, one thread).

Inputs are detector-like: boxes clustered around objects in a 1333x800 image
(a few dozen boxes per object, sizes 16-400 px, jittered), 80 classes, most
boxes of an object sharing its class, skewed scores; seeded. Sizes 100 and
1000 exercise torchvision's coordinate-offset path, 5k and 20k its per-class
path. Each size has a pytest-benchmark group timing both implementations and
a side-by-side timing that prints the ratio; every test asserts that both
return the same indices in the same order, ties included (also with scores
rounded to float16, as under AMP, where ties are many).

    pytest benches/bench_nms.py                          # timings and ratios
    pytest benches/bench_nms.py --benchmark-disable      # quick correctness run
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from autotimm.ops import batched_nms

SIZES = [100, 1000, 5000, 20000]
NUM_CLASSES = 80
IOU_THRESHOLD = 0.5


def detector_boxes(
    n: int, num_classes: int = NUM_CLASSES, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 boxes (n, 4) xyxy, float32 scores (n,), int64 class ids (n,)."""
    g = torch.Generator().manual_seed(seed)
    objects = max(1, n // 25)
    centers = torch.rand(objects, 2, generator=g) * torch.tensor([1333.0, 800.0])
    sizes = torch.exp(torch.empty(objects, 1).uniform_(math.log(16), math.log(400), generator=g))
    aspect = torch.exp(torch.empty(objects, 1).uniform_(-0.5, 0.5, generator=g))
    wh_obj = torch.cat([sizes * aspect, sizes / aspect], 1)
    obj_class = torch.randint(0, num_classes, (objects,), generator=g)
    pick = torch.randint(0, objects, (n,), generator=g)
    wh = wh_obj[pick] * torch.empty(n, 2).uniform_(0.75, 1.3, generator=g)
    ctr = centers[pick] + torch.randn(n, 2, generator=g) * 0.1 * wh_obj[pick]
    boxes = torch.cat([ctr - wh / 2, ctr + wh / 2], 1)
    boxes = boxes.clamp(min=0).minimum(torch.tensor([1333.0, 800.0, 1333.0, 800.0]))
    scores = torch.rand(n, generator=g) ** 2
    other = torch.randint(0, num_classes, (n,), generator=g)
    idxs = torch.where(torch.rand(n, generator=g) < 0.75, obj_class[pick], other)
    return boxes.contiguous(), scores, idxs


def assert_same_keep(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """The same kept indices in the same order (ties included)."""
    assert torch.equal(ours, ref), (ours[:20].tolist(), ref[:20].tolist())


IMPLS = {"torchvision": torchvision.ops.batched_nms, "autotimm": batched_nms}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("n", SIZES)
def test_batched_nms(benchmark, single_thread, n: int, impl: str) -> None:
    benchmark.group = f"batched_nms {n} boxes, {NUM_CLASSES} classes"
    boxes, scores, idxs = detector_boxes(n)
    keep = benchmark(IMPLS[impl], boxes, scores, idxs, IOU_THRESHOLD)
    assert_same_keep(keep, torchvision.ops.batched_nms(boxes, scores, idxs, IOU_THRESHOLD))


@pytest.mark.parametrize("n", SIZES)
def test_batched_nms_speedup(compare_speed, single_thread, n: int) -> None:
    boxes, scores, idxs = detector_boxes(n)
    ref = torchvision.ops.batched_nms(boxes, scores, idxs, IOU_THRESHOLD)
    assert_same_keep(batched_nms(boxes, scores, idxs, IOU_THRESHOLD), ref)
    compare_speed(
        f"batched_nms {n:>5} boxes / {NUM_CLASSES} classes",
        lambda: torchvision.ops.batched_nms(boxes, scores, idxs, IOU_THRESHOLD),
        lambda: batched_nms(boxes, scores, idxs, IOU_THRESHOLD),
    )


@pytest.mark.parametrize("n", SIZES)
def test_batched_nms_same_order_with_fp16_scores(single_thread, n: int) -> None:
    boxes, scores, idxs = detector_boxes(n, seed=1)
    scores = scores.half().float()  # AMP-rounded: many exactly equal scores
    ref = torchvision.ops.batched_nms(boxes, scores, idxs, IOU_THRESHOLD)
    assert_same_keep(batched_nms(boxes, scores, idxs, IOU_THRESHOLD), ref)
    assert torch.equal(batched_nms(boxes, scores, idxs, IOU_THRESHOLD)[:100], ref[:100])
