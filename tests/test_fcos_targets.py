"""FCOS target assignment: native core vs the batched torch reference vs the seed's rule.

Every comparison is exact (``torch.equal``): the native path follows the same
float32 operations as the torch reference and the seed.
"""

from __future__ import annotations

import math
import multiprocessing
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autotimm.constants import BACKGROUND, DEFAULT_REGRESS_RANGES, DEFAULT_STRIDES
from autotimm.ops.fcos_targets import (
    _fcos_targets_torch,
    fcos_feature_sizes,
    fcos_points,
    fcos_targets,
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # The references are many small torch ops: on a busy machine OpenMP worker
    # spinning makes them ~10x slower than one thread. Restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- #
# The seed's rule, restated (AutoTimm ObjectDetector._compute_targets_per_level
# plus the per-image / per-level loop of its training_step)
# --------------------------------------------------------------------------- #


def _correctly_rounded_sqrt(x: torch.Tensor) -> torch.Tensor:
    # torch's float32 CPU sqrt is not correctly rounded (about 1 in 5 results is
    # 1 ulp off in x86 builds); float64 then rounding is, and so are CUDA and Rust.
    return torch.sqrt(x.double()).float()


def seed_targets_per_level(points, boxes, labels, regress_range, sqrt=_correctly_rounded_sqrt):
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
    in_range = (max_reg >= min_range) & (max_reg < max_range)
    valid = inside_box & in_range
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
        left_right_min = torch.min(lr[:, 0], lr[:, 2])
        left_right_max = torch.max(lr[:, 0], lr[:, 2])
        top_bottom_min = torch.min(lr[:, 1], lr[:, 3])
        top_bottom_max = torch.max(lr[:, 1], lr[:, 3])
        centerness = sqrt(
            (left_right_min / left_right_max.clamp(min=1e-7))
            * (top_bottom_min / top_bottom_max.clamp(min=1e-7))
        )
        centerness_target[has_assignment] = centerness
    return (
        cls_target.reshape(feat_h, feat_w),
        reg_target.reshape(feat_h, feat_w, 4),
        centerness_target.reshape(feat_h, feat_w),
    )


def seed_targets(boxes, labels, strides, ranges, sizes, sqrt=_correctly_rounded_sqrt):
    """The seed's loops over levels and images, flattened to [B, P] like fcos_targets."""
    per_level = []
    for (feat_h, feat_w), stride, regress_range in zip(sizes, strides, ranges, strict=True):
        grid_y, grid_x = torch.meshgrid(
            torch.arange(feat_h, dtype=torch.float32),
            torch.arange(feat_w, dtype=torch.float32),
            indexing="ij",
        )
        points = torch.stack([(grid_x + 0.5) * stride, (grid_y + 0.5) * stride], dim=-1)
        cls_l, reg_l, ctr_l = [], [], []
        for b, lab in zip(boxes, labels, strict=True):
            if len(b) == 0:
                c = torch.full((feat_h, feat_w), -1, dtype=torch.long)
                r = torch.zeros(feat_h, feat_w, 4)
                t = torch.zeros(feat_h, feat_w)
            else:
                c, r, t = seed_targets_per_level(points, b, lab, regress_range, sqrt)
            cls_l.append(c.reshape(-1))
            reg_l.append(r.reshape(-1, 4))
            ctr_l.append(t.reshape(-1))
        per_level.append((torch.stack(cls_l), torch.stack(reg_l), torch.stack(ctr_l)))
    return tuple(torch.cat([lv[k] for lv in per_level], dim=1) for k in range(3))


# --------------------------------------------------------------------------- #
# Generators
# --------------------------------------------------------------------------- #


def make_levels(rng: np.random.Generator, kind: str):
    """(strides, regress_ranges or None, ranges used) for a level configuration."""
    if kind == "default":
        return DEFAULT_STRIDES, None, DEFAULT_REGRESS_RANGES
    num = int(rng.integers(1, 5))
    choices = [2, 3, 4, 5, 6, 8, 12, 16, 32, 64]
    strides = tuple(sorted(int(s) for s in rng.choice(choices, num, replace=False)))
    bounds = []
    for s in strides:
        choice = rng.integers(0, 3)
        if choice == 0:
            bounds.append(float(8 * s))  # integer, on the grid of point distances
        elif choice == 1:
            bounds.append(float(np.float32(rng.uniform(1, 12 * s))))  # arbitrary float32
        else:
            bounds.append(rng.uniform(1, 12 * s))  # float64: rounded to float32 when compared
    bounds = sorted(bounds)
    for i in range(1, len(bounds)):
        bounds[i] = max(bounds[i], bounds[i - 1] + 1.0)
    edges = [-1.0, *bounds[:-1], math.inf if rng.random() < 0.7 else bounds[-1] + 100.0]
    ranges = tuple(zip(edges[:-1], edges[1:], strict=True))
    if rng.random() < 0.2:  # overlapping ranges are allowed too
        ranges = tuple((lo - 10.0 if i else lo, hi) for i, (lo, hi) in enumerate(ranges))
    return strides, ranges, ranges


def make_boxes(rng, n, height, width, strides, ranges):
    """n float32 boxes mixing the cases that break naive reimplementations."""
    half = min(strides) / 2
    out = np.zeros((n, 4), dtype=np.float64)
    for i in range(n):
        kind = rng.integers(0, 9)
        if kind == 0 and i > 0:  # duplicate
            out[i] = out[rng.integers(0, i)]
            continue
        if kind == 1 and i > 0:  # same area, elsewhere or transposed
            x1, y1, x2, y2 = out[rng.integers(0, i)]
            w, h = (y2 - y1, x2 - x1) if rng.random() < 0.5 else (x2 - x1, y2 - y1)
            nx, ny = rng.uniform(-20, width), rng.uniform(-20, height)
            out[i] = (nx, ny, nx + w, ny + h)
            continue
        if kind == 2:  # edges on point centres / half strides
            x1 = rng.integers(-4, width / half + 4) * half
            y1 = rng.integers(-4, height / half + 4) * half
            w = rng.integers(0, 2 * max(height, width) / half + 2) * half
            h = rng.integers(0, 2 * max(height, width) / half + 2) * half
            out[i] = (x1, y1, x1 + w, y1 + h)
        elif kind == 3:  # max(l, t, r, b) exactly on a range bound (or next to it)
            level = rng.integers(0, len(strides))
            s = strides[level]
            finite = [v for v in ranges[level] if math.isfinite(v) and v > 0]
            d = float(np.float32(rng.choice(finite))) if finite else 64.0
            d = [d, float(np.nextafter(np.float32(d), np.float32(0))), d + 0.5][rng.integers(0, 3)]
            px = (rng.integers(0, max(1, width // s)) + 0.5) * s
            py = (rng.integers(0, max(1, height // s)) + 0.5) * s
            small = rng.uniform(0.25, 1.0, 3) * d
            if rng.random() < 0.5:
                out[i] = (px - d, py - small[0], px + small[1], py + small[2])
            else:
                out[i] = (px - small[0], py - small[1], px + small[2], py + d)
        elif kind == 4:  # tiny boxes, often around a point centre
            s = strides[rng.integers(0, len(strides))]
            cx = (rng.integers(0, max(1, width // s)) + 0.5) * s + rng.uniform(-0.01, 0.01)
            cy = (rng.integers(0, max(1, height // s)) + 0.5) * s + rng.uniform(-0.01, 0.01)
            w, h = 10.0 ** rng.uniform(-4, 0.5, 2)
            out[i] = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        elif kind == 5:  # huge boxes, far beyond the image
            scale = 10.0 ** rng.uniform(3, 7)
            out[i] = (-rng.uniform(0, scale), -rng.uniform(0, scale), *rng.uniform(0, scale, 2))
        elif kind == 6:  # zero width or height
            x1, y1 = rng.uniform(0, width), rng.uniform(0, height)
            w, h = rng.uniform(0, 300, 2) * (rng.random(2) < 0.5)
            out[i] = (x1, y1, x1 + w, y1 + h)
        else:  # ordinary random float boxes
            x1, y1 = rng.uniform(-30, width), rng.uniform(-30, height)
            w, h = rng.uniform(0.5, 1.2 * max(height, width), 2) ** rng.uniform(0.6, 1.0)
            out[i] = (x1, y1, x1 + w, y1 + h)
    boxes = out.astype(np.float32)
    # float32 rounding can invert a tiny box; keep xyxy valid.
    boxes[:, 2] = np.maximum(boxes[:, 2], boxes[:, 0])
    boxes[:, 3] = np.maximum(boxes[:, 3], boxes[:, 1])
    return torch.from_numpy(boxes)


def make_batch(rng, batch, max_boxes, height, width, strides, ranges, num_classes=7):
    boxes, labels = [], []
    for _ in range(batch):
        n = int(rng.integers(0, max_boxes + 1)) if rng.random() < 0.85 else 0
        boxes.append(make_boxes(rng, n, height, width, strides, ranges))
        labels.append(torch.from_numpy(rng.integers(0, num_classes, n).astype(np.int64)))
    return boxes, labels


def assert_same(got, want):
    for name, a, b in zip(("cls", "reg", "ctr"), got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        if not torch.equal(a, b):
            bad = (a != b).reshape(a.shape[0], a.shape[1], -1).any(-1).nonzero()[:5].tolist()
            raise AssertionError(f"{name} differs at (image, point) {bad}")


# --------------------------------------------------------------------------- #
# Property tests (>= 1,000 examples in total)
# --------------------------------------------------------------------------- #
configs = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "levels": st.sampled_from(["default", "default", "custom"]),
        "batch": st.integers(1, 3),
        "height": st.integers(1, 256),
        "width": st.integers(1, 256),
        "max_boxes": st.sampled_from([0, 1, 3, 20, 60, 300]),
        "radius": st.sampled_from([None, None, None, 1.5, 0.5, 2.5]),
        "floor_sizes": st.booleans(),
    }
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs)
def test_native_equals_torch_reference(cfg):
    rng = np.random.default_rng(cfg["seed"])
    strides, ranges_arg, ranges = make_levels(rng, cfg["levels"])
    h, w = cfg["height"], cfg["width"]
    batch, max_boxes = cfg["batch"], cfg["max_boxes"]
    if max_boxes == 300:
        batch = 1
    elif max_boxes == 60 and rng.random() < 0.2:
        h, w = 800, 800 + 16 * int(rng.integers(-10, 10))  # full-size images now and then
        batch = 1
    boxes, labels = make_batch(rng, batch, max_boxes, h, w, strides, ranges)
    sizes = None
    if cfg["floor_sizes"]:
        sizes = [(h // s, w // s) for s in strides]
    kwargs = dict(
        strides=strides,
        regress_ranges=ranges_arg,
        feature_sizes=sizes,
        center_sampling_radius=cfg["radius"],
    )
    got = fcos_targets(boxes, labels, (h, w), **kwargs, num_classes=7)
    want = _fcos_targets_torch(boxes, labels, (h, w), **kwargs)
    assert_same(got, want)
    if any(len(b) for b in boxes):
        assert got[0].dtype == torch.int64 and got[1].dtype == torch.float32


@settings(max_examples=350, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs)
def test_native_equals_seed_rule(cfg):
    rng = np.random.default_rng(cfg["seed"])
    strides, ranges_arg, ranges = make_levels(rng, cfg["levels"])
    h, w = cfg["height"], cfg["width"]
    batch = min(cfg["batch"], 2)
    boxes, labels = make_batch(rng, batch, min(cfg["max_boxes"], 40), h, w, strides, ranges)
    got = fcos_targets(boxes, labels, (h, w), strides, ranges_arg)
    want = seed_targets(boxes, labels, strides, ranges, fcos_feature_sizes((h, w), strides))
    assert_same(got, want)
    # With torch's own CPU float32 sqrt (the seed as written) centerness is within 1 ulp.
    reg = want[1][want[0] >= 0]
    left, top, right, bottom = reg.unbind(-1)
    raw = torch.sqrt(
        (torch.min(left, right) / torch.max(left, right).clamp(min=1e-7))
        * (torch.min(top, bottom) / torch.max(top, bottom).clamp(min=1e-7))
    )
    ulps = (got[2][want[0] >= 0].view(torch.int32) - raw.view(torch.int32)).abs()
    assert (int(ulps.max()) if ulps.numel() else 0) <= 1


# Explicit boundary cases, shrinkable by hypothesis: a point centre p and exact distances.
@settings(max_examples=150)
@given(
    px=st.integers(0, 39),
    py=st.integers(0, 39),
    d=st.sampled_from([64.0, 128.0, 256.0, 512.0, 63.5, 64.5, 4.0, 0.0, 1e-6, 700.0]),
    side=st.integers(0, 3),
    other=st.lists(st.sampled_from([0.0, 4.0, 8.0, 60.0, 64.0, 100.0]), min_size=3, max_size=3),
    dup=st.booleans(),
)
def test_boundary_distances(px, py, d, side, other, dup):
    cx, cy = (px + 0.5) * 8, (py + 0.5) * 8
    dist = [*other]
    dist.insert(side, d)
    box = [cx - dist[0], cy - dist[1], cx + dist[2], cy + dist[3]]
    boxes = torch.tensor([box, box] if dup else [box], dtype=torch.float32)
    labels = torch.arange(len(boxes))
    size = (320, 320)
    got = fcos_targets([boxes], [labels], size)
    assert_same(got, _fcos_targets_torch([boxes], [labels], size))
    sizes = fcos_feature_sizes(size)
    assert_same(
        got, seed_targets([boxes], [labels], DEFAULT_STRIDES, DEFAULT_REGRESS_RANGES, sizes)
    )
    if dup:  # equal areas: the first box wins
        assert not (got[0] == 1).any()


# --------------------------------------------------------------------------- #
# Fixed cases
# --------------------------------------------------------------------------- #


def test_full_size_batch_matches_reference_and_seed():
    rng = np.random.default_rng(0)
    boxes, labels = make_batch(rng, 4, 50, 800, 800, DEFAULT_STRIDES, DEFAULT_REGRESS_RANGES)
    got = fcos_targets(boxes, labels, (800, 800))
    assert_same(got, _fcos_targets_torch(boxes, labels, (800, 800)))
    sizes = fcos_feature_sizes((800, 800))
    want = seed_targets(boxes, labels, DEFAULT_STRIDES, DEFAULT_REGRESS_RANGES, sizes)
    assert_same(got, want)
    assert (got[0] >= 0).sum() > 0


def test_shapes_layout_and_points():
    boxes = [torch.tensor([[8.0, 8.0, 40.0, 24.0]]), torch.zeros((0, 4))]
    labels = [torch.tensor([2]), torch.zeros((0,), dtype=torch.int64)]
    cls, reg, ctr = fcos_targets(boxes, labels, (64, 96))
    sizes = fcos_feature_sizes((64, 96))
    assert sizes == [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]
    num_points = sum(h * w for h, w in sizes)
    assert cls.shape == (2, num_points) and reg.shape == (2, num_points, 4)
    assert ctr.shape == (2, num_points)
    assert cls.dtype == torch.int64 and reg.dtype == ctr.dtype == torch.float32
    assert cls.is_contiguous() and reg.is_contiguous() and ctr.is_contiguous()
    points = fcos_points((64, 96))
    assert points.shape == (num_points, 2)
    # Row-major within a level, levels in stride order.
    assert points[:3].tolist() == [[4.0, 4.0], [12.0, 4.0], [20.0, 4.0]]
    assert points[12].tolist() == [4.0, 12.0]
    assert points[96].tolist() == [8.0, 8.0]
    pos = cls[0] >= 0
    assert cls[0][pos].eq(2).all() and pos.sum() == 8  # x in 12..36, y in 12, 20
    # Regression targets point back to the box.
    p = points[pos]
    box = torch.stack([p[:, 0] - reg[0, pos, 0], p[:, 1] - reg[0, pos, 1],
                       p[:, 0] + reg[0, pos, 2], p[:, 1] + reg[0, pos, 3]], 1)  # fmt: skip
    assert torch.equal(box, boxes[0].expand(8, 4))
    # Image without boxes: all background, zeros.
    assert (cls[1] == BACKGROUND).all() and (reg[1] == 0).all() and (ctr[1] == 0).all()
    assert (reg[0][~pos] == 0).all() and (ctr[0][~pos] == 0).all()


def test_empty_batch_and_zero_area_boxes():
    cls, reg, ctr = fcos_targets([], [], (32, 32))
    assert cls.shape == (0, 23) and reg.shape == (0, 23, 4) and ctr.shape == (0, 23)
    # Zero-area boxes are accepted and never assigned (documented).
    boxes = [torch.tensor([[4.0, 0.0, 4.0, 32.0], [0.0, 12.0, 32.0, 12.0]])]
    labels = [torch.tensor([0, 1])]
    for got in (
        fcos_targets(boxes, labels, (32, 32)),
        _fcos_targets_torch(boxes, labels, (32, 32)),
    ):
        assert (got[0] == BACKGROUND).all()


def test_nested_smallest_wins_and_first_index_on_ties():
    big = [0.0, 0.0, 60.0, 60.0]
    small = [10.0, 10.0, 30.0, 30.0]
    boxes = [torch.tensor([big, small, small, [12.0, 12.0, 32.0, 32.0]])]  # 1, 2, 3: equal areas
    labels = [torch.tensor([5, 6, 7, 8])]
    cls, reg, ctr = fcos_targets(boxes, labels, (64, 64))
    p = 2 * 8 + 2  # point (20, 20) on stride 8
    assert cls[0, p] == 6 and reg[0, p].tolist() == [10.0, 10.0, 10.0, 10.0] and ctr[0, p] == 1.0
    assert cls[0, 0] == 5  # (4, 4) lies only in the big box
    assert_same((cls, reg, ctr), _fcos_targets_torch(boxes, labels, (64, 64)))


def test_center_sampling_restricts_positives():
    boxes = [torch.tensor([[0.0, 0.0, 60.0, 60.0]])]
    labels = [torch.tensor([0])]
    plain = fcos_targets(boxes, labels, (64, 64))
    sampled = fcos_targets(boxes, labels, (64, 64), center_sampling_radius=1.5)
    n_plain, n_sampled = int((plain[0] >= 0).sum()), int((sampled[0] >= 0).sum())
    # Centre 30 ± 12 on stride 8: points 20, 28, 36 per axis.
    assert n_sampled == 9 and n_plain > n_sampled
    assert ((sampled[0] >= 0) <= (plain[0] >= 0)).all()


def test_threads_and_dtypes_do_not_change_results():
    rng = np.random.default_rng(3)
    boxes, labels = make_batch(rng, 6, 40, 320, 256, DEFAULT_STRIDES, DEFAULT_REGRESS_RANGES)
    ref = fcos_targets(boxes, labels, (320, 256), num_threads=1)
    assert_same(fcos_targets(boxes, labels, (320, 256), num_threads=2), ref)
    assert_same(fcos_targets(boxes, labels, (320, 256), num_threads=0), ref)
    # float64 boxes are rounded to float32 first; int32 labels become int64.
    wide = fcos_targets([b.double() for b in boxes], [lab.int() for lab in labels], (320, 256))
    assert_same(wide, ref)


def test_custom_strides_need_ranges():
    boxes, labels = [torch.tensor([[0.0, 0.0, 30.0, 30.0]])], [torch.tensor([1])]
    with pytest.raises(ValueError, match="regress_ranges must be given for 3 levels"):
        fcos_targets(boxes, labels, (64, 64), strides=(8, 16, 32))
    got = fcos_targets(
        boxes, labels, (64, 64), strides=(8, 16, 32), regress_ranges=((-1, 32), (32, 64), (64, 1e9))
    )
    assert got[0].shape == (1, 64 + 16 + 4)


@pytest.mark.parametrize(
    ("boxes", "labels", "kwargs", "error", "match"),
    [
        ([[[5.0, 0.0, 1.0, 4.0]]], [[0]], {}, ValueError, r"boxes: image 0, box 0 .* x2 < x1"),
        ([[[0.0, 5.0, 1.0, 4.0]]], [[0]], {}, ValueError, r"y2 < y1"),
        ([[[0.0, 0.0, math.nan, 4.0]]], [[0]], {}, ValueError, r"boxes: .* not finite"),
        ([[[0.0, 0.0, math.inf, 4.0]]], [[0]], {}, ValueError, r"not finite"),
        ([[[0.0, 0.0, 1.0, 4.0]]], [[-1]], {}, ValueError, r"labels: image 0, box 0 has label -1"),
        ([[[0.0, 0.0, 1.0, 4.0]]], [[3]], {"num_classes": 3}, ValueError, r"outside \[0, 3\)"),
        ([[[0.0, 0.0, 1.0]]], [[0]], {}, ValueError, r"boxes\[0\] has shape \(1, 3\)"),
        ([[[0.0, 0.0, 1.0, 4.0]]], [[0, 1]], {}, ValueError, r"labels\[0\] has shape \(2,\)"),
        ([[[0.0, 0.0, 1.0, 4.0]]], [[0.5]], {}, TypeError, r"labels\[0\] has dtype"),
        ([[[0.0, 0.0, 1.0, 4.0]]], [], {}, ValueError, r"boxes has 1 images but labels has 0"),
        ([], [], {"image_size": (0, 32)}, ValueError, r"image_size"),
        ([], [], {"strides": (8, 0)}, ValueError, r"strides"),
        ([], [], {"regress_ranges": ((0, 64),) * 4}, ValueError, r"regress_ranges has 4 levels"),
        ([], [], {"regress_ranges": ((64, 0),) * 5}, ValueError, r"regress_ranges\[0\]"),
        ([], [], {"regress_ranges": ((math.nan, 1),) * 5}, ValueError, r"regress_ranges\[0\]"),
        ([], [], {"feature_sizes": [(4, 4)] * 5}, ValueError, r"feature_sizes\[1\] = \(4, 4\)"),
        ([], [], {"feature_sizes": [(4, 4)] * 4}, ValueError, r"feature_sizes has 4 levels"),
        ([], [], {"center_sampling_radius": -1.0}, ValueError, r"center_sampling_radius"),
        ([], [], {"num_classes": 0}, ValueError, r"num_classes"),
    ],
)
@pytest.mark.parametrize("path", ["native", "torch"])
def test_bad_input_is_rejected(boxes, labels, kwargs, error, match, path):
    kwargs = dict(kwargs)
    image_size = kwargs.pop("image_size", (32, 32))
    b = [torch.tensor(x, dtype=torch.float32) for x in boxes]
    lab = [torch.tensor(x) for x in labels]
    fn = fcos_targets if path == "native" else _fcos_targets_torch
    with pytest.raises(error, match=match):
        fn(b, lab, image_size, **kwargs)


def test_non_tensor_and_mixed_inputs_are_rejected():
    with pytest.raises(TypeError, match="boxes must be a list"):
        fcos_targets(torch.zeros(1, 4), [torch.zeros(1, dtype=torch.int64)], (32, 32))
    with pytest.raises(TypeError, match=r"boxes\[0\] must be a tensor"):
        fcos_targets([[0.0, 0.0, 1.0, 1.0]], [torch.zeros(1, dtype=torch.int64)], (32, 32))
    with pytest.raises(TypeError, match=r"boxes\[0\] has dtype"):
        fcos_targets(
            [torch.zeros(1, 4, dtype=torch.int64)], [torch.zeros(1, dtype=torch.int64)], (32, 32)
        )


def _collate_with_targets(batch):
    boxes = [b for b, _ in batch]
    labels = [lab for _, lab in batch]
    return fcos_targets(boxes, labels, (128, 128))


def test_usable_in_dataloader_workers():
    rng = np.random.default_rng(5)
    boxes, labels = make_batch(rng, 8, 20, 128, 128, DEFAULT_STRIDES, DEFAULT_REGRESS_RANGES)
    data = list(zip(boxes, labels, strict=True))
    want = fcos_targets(boxes, labels, (128, 128), num_threads=2)  # builds a pool in the parent
    loader = torch.utils.data.DataLoader(
        data, batch_size=4, num_workers=2, collate_fn=_collate_with_targets, timeout=120
    )
    got = [torch.cat(parts) for parts in zip(*list(loader), strict=True)]
    assert_same(tuple(got), want)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_with_threads_does_not_hang():
    boxes = [torch.tensor([[0.0, 0.0, 50.0, 50.0]])] * 4
    labels = [torch.tensor([1])] * 4
    want = fcos_targets(boxes, labels, (64, 64), num_threads=2)  # pool in the parent
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_threaded_call, (boxes, labels)).get(timeout=60)
    assert_same(got, want)


def _threaded_call(boxes, labels):
    return fcos_targets(boxes, labels, (64, 64), num_threads=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_torch_path_equals_native_and_does_not_sync():
    rng = np.random.default_rng(11)
    boxes, labels = make_batch(rng, 16, 300, 800, 800, DEFAULT_STRIDES, DEFAULT_REGRESS_RANGES)
    gpu_boxes = [b.cuda() for b in boxes]
    gpu_labels = [lab.cuda() for lab in labels]
    for radius in (None, 1.5):
        want = fcos_targets(boxes, labels, (800, 800), center_sampling_radius=radius)
        kwargs = dict(center_sampling_radius=radius, validate=False)
        fcos_targets(gpu_boxes, gpu_labels, (800, 800), **kwargs)  # builds the cached grid
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            got = fcos_targets(gpu_boxes, gpu_labels, (800, 800), **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert all(t.is_cuda for t in got)
        assert_same(tuple(t.cpu() for t in got), want)
