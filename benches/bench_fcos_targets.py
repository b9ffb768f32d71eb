"""``autotimm.ops.fcos_targets`` (native, CPU) beside the seed's loop and our batched torch path.

Workload: a batch of 16 images of 800x800 with 50 boxes each (sizes 16-400 px
log-uniform, jittered aspect ratios, 80 classes; seeded), default strides
(8..128) and regress ranges: P = 13,343 points per image.

* ``seed loop``: the seed's training-step assignment (per level, per image,
  ``_compute_targets_per_level`` on dense [P, N] tensors), as restated in
  ``tests/test_fcos_targets.py``.
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
import sys
from pathlib import Path

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
# The seed's assignment, as its training_step runs it (per level, per image):
# the restatement the tests check against, with the seed's own float32 sqrt
# --------------------------------------------------------------------------- #
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_fcos_targets import seed_targets  # noqa: E402  (one copy of the seed's rule)


def seed_loop(boxes, labels, size=SIZE, strides=DEFAULT_STRIDES, ranges=DEFAULT_REGRESS_RANGES):
    """The seed's loops; per level the [B, h, w] stacks, flattened and concatenated to [B, P]."""
    img_h, img_w = size
    sizes = [(-(-img_h // stride), -(-img_w // stride)) for stride in strides]
    return seed_targets(boxes, labels, strides, ranges, sizes, sqrt=torch.sqrt)


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
