"""``autotimm.ops.fcos_targets`` (native, CPU) beside the seed's loop and our batched torch path.

Workload: a batch of 16 images of 800x800 with 50 boxes each (sizes 16-400 px
log-uniform, jittered aspect ratios, 80 classes; seeded), default strides
(8..128) and regress ranges: P = 13,343 points per image.

* ``seed loop``: the seed's training-step assignment (per level, per image,
  ``_compute_targets_per_level`` on dense [P, N] tensors), written out below.
* ``torch batched``: our torch implementation (the CUDA path), run on CPU.
* ``native``: ``fcos_targets`` on CPU tensors (one call, GIL released).

Single-threaded unless stated; the 2-thread row times the native path with 1
thread (reference) and 2 threads (ours). Every test asserts that the outputs
agree: native and the batched torch path bit for bit, the seed's loop bit for
bit on classes and regression targets and within 1 ulp on centerness (its
``torch.sqrt`` on CPU is not correctly rounded; see ``_sqrt_f32``).

    pytest benches/bench_fcos_targets.py -s                 # timings and ratios
    pytest benches/bench_fcos_targets.py --benchmark-disable  # quick correctness run
"""

from __future__ import annotations

import math

import pytest
import torch

from autotimm.constants import DEFAULT_REGRESS_RANGES, DEFAULT_STRIDES
from autotimm.ops import fcos_targets
from autotimm.ops.fcos_targets import _fcos_targets_torch

BATCH = 16
BOXES = 50
SIZE = (800, 800)
NUM_CLASSES = 80


def detector_targets(
    batch: int = BATCH, n: int = BOXES, size: tuple[int, int] = SIZE, seed: int = 0
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per image: float32 boxes [n, 4] xyxy inside the image, int64 labels [n]."""
    g = torch.Generator().manual_seed(seed)
    height, width = size
    boxes, labels = [], []
    for _ in range(batch):
        side = torch.exp(torch.empty(n, 1).uniform_(math.log(16), math.log(400), generator=g))
        aspect = torch.exp(torch.empty(n, 1).uniform_(-0.7, 0.7, generator=g))
        wh = torch.cat([side * aspect, side / aspect], 1)
        centre = torch.rand(n, 2, generator=g) * torch.tensor([float(width), float(height)])
        b = torch.cat([centre - wh / 2, centre + wh / 2], 1)
        b = b.clamp(min=0).minimum(
            torch.tensor([width, height, width, height], dtype=torch.float32)
        )
        boxes.append(b.contiguous())
        labels.append(torch.randint(0, NUM_CLASSES, (n,), generator=g))
    return boxes, labels


# --------------------------------------------------------------------------- #
# The seed's assignment, as its training_step runs it (per level, per image)
# --------------------------------------------------------------------------- #
def _seed_per_level(points, boxes, labels, regress_range):
    feat_h, feat_w = points.shape[:2]
    points_flat = points.reshape(-1, 2)
    num_points = points_flat.shape[0]
    boxes_exp = boxes.unsqueeze(0)
    points_exp = points_flat.unsqueeze(1)
    left = points_exp[..., 0] - boxes_exp[..., 0]
    top = points_exp[..., 1] - boxes_exp[..., 1]
    right = boxes_exp[..., 2] - points_exp[..., 0]
    bottom = boxes_exp[..., 3] - points_exp[..., 1]
    reg_targets_per_box = torch.stack([left, top, right, bottom], dim=-1)
    inside_box = (left > 0) & (top > 0) & (right > 0) & (bottom > 0)
    max_reg = reg_targets_per_box.max(dim=-1)[0]
    min_range, max_range = regress_range
    valid = inside_box & (max_reg >= min_range) & (max_reg < max_range)
    box_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    box_areas_exp = box_areas.unsqueeze(0).expand(num_points, -1)
    box_areas_masked = torch.where(valid, box_areas_exp, torch.tensor(float("inf")))
    min_areas, best_box_idx = box_areas_masked.min(dim=1)
    has_assignment = min_areas < float("inf")
    cls_target = torch.full((num_points,), -1, dtype=torch.long)
    reg_target = torch.zeros(num_points, 4)
    centerness_target = torch.zeros(num_points)
    if has_assignment.any():
        assigned_idx = best_box_idx[has_assignment]
        cls_target[has_assignment] = labels[assigned_idx]
        point_indices = torch.arange(num_points)[has_assignment]
        reg_target[has_assignment] = reg_targets_per_box[point_indices, assigned_idx]
        lr = reg_target[has_assignment]
        centerness = torch.sqrt(
            (torch.min(lr[:, 0], lr[:, 2]) / torch.max(lr[:, 0], lr[:, 2]).clamp(min=1e-7))
            * (torch.min(lr[:, 1], lr[:, 3]) / torch.max(lr[:, 1], lr[:, 3]).clamp(min=1e-7))
        )
        centerness_target[has_assignment] = centerness
    return (
        cls_target.reshape(feat_h, feat_w),
        reg_target.reshape(feat_h, feat_w, 4),
        centerness_target.reshape(feat_h, feat_w),
    )


def seed_loop(boxes, labels, size=SIZE, strides=DEFAULT_STRIDES, ranges=DEFAULT_REGRESS_RANGES):
    """The seed's loops; per level the [B, h, w] stacks, flattened and concatenated to [B, P]."""
    img_h, img_w = size
    cls_all, reg_all, ctr_all = [], [], []
    for stride, regress_range in zip(strides, ranges, strict=True):
        feat_h, feat_w = -(-img_h // stride), -(-img_w // stride)
        grid_y, grid_x = torch.meshgrid(
            torch.arange(feat_h, dtype=torch.float32),
            torch.arange(feat_w, dtype=torch.float32),
            indexing="ij",
        )
        points = torch.stack([(grid_x + 0.5) * stride, (grid_y + 0.5) * stride], dim=-1)
        level = [
            _seed_per_level(points, b, lab, regress_range)
            for b, lab in zip(boxes, labels, strict=True)
        ]
        cls_all.append(torch.stack([c for c, _, _ in level]).flatten(1))
        reg_all.append(torch.stack([r for _, r, _ in level]).flatten(1, 2))
        ctr_all.append(torch.stack([t for _, _, t in level]).flatten(1))
    return torch.cat(cls_all, 1), torch.cat(reg_all, 1), torch.cat(ctr_all, 1)


def assert_agree(native, torch_batched, seed):
    for a, b in zip(native, torch_batched, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(native[0], seed[0]) and torch.equal(native[1], seed[1])
    ulps = (native[2].view(torch.int32) - seed[2].view(torch.int32)).abs()
    assert int(ulps.max()) <= 1


IMPLS = {
    "seed loop": lambda b, lab: seed_loop(b, lab),
    "torch batched": lambda b, lab: _fcos_targets_torch(b, lab, SIZE),
    "native": lambda b, lab: fcos_targets(b, lab, SIZE),
}


@pytest.fixture(scope="module")
def batch():
    boxes, labels = detector_targets()
    native = fcos_targets(boxes, labels, SIZE, num_threads=1)
    assert_agree(native, _fcos_targets_torch(boxes, labels, SIZE), seed_loop(boxes, labels))
    assert (native[0] >= 0).sum() > 1000
    return boxes, labels, native


@pytest.mark.parametrize("impl", list(IMPLS))
def test_fcos_targets(benchmark, single_thread, batch, impl: str) -> None:
    boxes, labels, native = batch
    benchmark.group = f"fcos_targets batch {BATCH}, {BOXES} boxes, {SIZE[0]}x{SIZE[1]}"
    out = benchmark(IMPLS[impl], boxes, labels)
    assert torch.equal(out[0], native[0]) and torch.equal(out[1], native[1])


def test_fcos_targets_speedup(compare_speed, single_thread, batch) -> None:
    boxes, labels, _ = batch
    name = f"fcos_targets {BATCH}x{BOXES} boxes @{SIZE[0]}"
    vs_seed = compare_speed(
        f"{name} vs seed loop",
        lambda: seed_loop(boxes, labels),
        lambda: fcos_targets(boxes, labels, SIZE),
        rounds=7,
    )
    vs_torch = compare_speed(
        f"{name} vs torch batched",
        lambda: _fcos_targets_torch(boxes, labels, SIZE),
        lambda: fcos_targets(boxes, labels, SIZE),
        rounds=7,
    )
    print(
        f"\nseed loop / native: {vs_seed.ratio:.1f}x, torch batched / native: {vs_torch.ratio:.1f}x"
    )


def test_fcos_targets_two_threads(compare_speed, batch) -> None:
    boxes, labels, native = batch
    assert torch.equal(fcos_targets(boxes, labels, SIZE, num_threads=2)[0], native[0])
    compare_speed(
        f"fcos_targets {BATCH}x{BOXES} boxes @{SIZE[0]}, native 1 thread vs 2 threads",
        lambda: fcos_targets(boxes, labels, SIZE, num_threads=1),
        lambda: fcos_targets(boxes, labels, SIZE, num_threads=2),
    )
