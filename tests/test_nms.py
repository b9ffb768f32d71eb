"""Differential tests of ``autotimm.ops.nms`` / ``batched_nms`` against torchvision (CPU).

Inputs are drawn by hypothesis as parameters plus a seed for a numpy generator,
which keeps examples cheap while covering random and clustered layouts, integer
grids (exact IoU ties, IoU exactly at the threshold), degenerate boxes and
heavily tied scores (fp16-rounded as under AMP, quantised, all equal).
``nms`` and ``batched_nms`` must return exactly torchvision's indices in
torchvision's order, ties included, on both sides of 1000 boxes (above it
torchvision orders kept boxes with torch's unstable sort).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from autotimm import _native
from autotimm.ops import batched_nms, nms

VANILLA_MIN_BOXES = 1001  # torchvision: boxes.numel() > 4000 -> per-class loop

DTYPES = [torch.float32, torch.float64]
THRESHOLDS = st.one_of(
    st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.3, 1 / 3, 0.45, 0.5, 0.6, 0.65, 0.7, 0.9, 1.0]),
    st.floats(0.0, 1.0),
)
LAYOUTS = ["random", "clustered", "grid"]
SCORE_KINDS = ["continuous", "fp16", "quantised", "coarse", "equal"]


def make_inputs(
    seed: int,
    n: int,
    num_classes: int,
    layout: str,
    score_kind: str,
    degenerate: float,
    dtype: torch.dtype,
    offset: float = 0.0,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes (n, 4), scores (n,), int64 class ids (n,) from a seeded generator."""
    rng = np.random.default_rng(seed)
    if layout == "random":
        xy = rng.uniform(0, 500, (n, 2))
        wh = rng.uniform(0, 150, (n, 2))
    elif layout == "clustered":
        objects = max(1, n // int(rng.integers(2, 40)))
        centers = rng.uniform(0, 600, (objects, 2))
        sizes = np.exp(rng.uniform(np.log(4), np.log(300), (objects, 1)))
        pick = rng.integers(0, objects, n)
        wh = sizes[pick] * rng.uniform(0.7, 1.3, (n, 2))
        xy = centers[pick] + rng.normal(0, 0.08, (n, 2)) * sizes[pick] - wh / 2
    else:  # small integer grid: identical boxes, exact IoU ties, IoU == threshold
        xy = rng.integers(0, 8, (n, 2)).astype(np.float64)
        wh = rng.integers(0, 6, (n, 2)).astype(np.float64)
    boxes = np.concatenate([xy, xy + wh], axis=1)
    if degenerate > 0 and n > 0:
        kind = rng.integers(0, 4, n)
        hit = rng.random(n) < degenerate
        zero_w = hit & (kind == 0)
        boxes[zero_w, 2] = boxes[zero_w, 0]
        inverted = hit & (kind == 1)
        boxes[inverted] = boxes[inverted][:, [2, 3, 0, 1]]
        copies = hit & (kind == 2)
        boxes[copies] = boxes[rng.integers(0, n, int(copies.sum()))]
        points = hit & (kind == 3)
        boxes[points, 2:] = boxes[points, :2]
    boxes = boxes * scale + offset
    if score_kind == "continuous":
        scores = rng.random(n)
    elif score_kind == "fp16":  # AMP: scores rounded to float16, many ties
        scores = rng.random(n).astype(np.float16).astype(np.float64)
    elif score_kind == "quantised":
        scores = rng.integers(0, 100, n) / 100.0
    elif score_kind == "coarse":
        scores = rng.integers(0, 8, n) / 8.0
    else:
        scores = np.full(n, 0.5)
    own = rng.integers(0, num_classes, n)
    idxs = np.where(rng.random(n) < 0.8, own, rng.integers(0, num_classes, n))
    if layout == "clustered" and n > 0:  # boxes of one object mostly share a class
        idxs = np.where(rng.random(n) < 0.8, pick % num_classes, idxs)
    return (
        torch.from_numpy(boxes).to(dtype),
        torch.from_numpy(scores).to(dtype),
        torch.from_numpy(idxs).to(torch.int64),
    )


def assert_same_keep(ours: torch.Tensor, ref: torch.Tensor, scores: torch.Tensor) -> None:
    """The same indices in the same order (ties included), as int64."""
    assert ours.dtype == torch.int64 and ours.dim() == 1
    assert torch.equal(ours, ref), (ours.tolist(), ref.tolist())


def check_batched(boxes, scores, idxs, thr) -> None:
    ours = batched_nms(boxes, scores, idxs, thr)
    ref = torchvision.ops.batched_nms(boxes, scores, idxs, thr)
    assert_same_keep(ours, ref, scores)


sizes = st.one_of(
    st.integers(0, 40), st.integers(41, 400), st.integers(401, 1000), st.integers(1001, 1600)
)


@settings(max_examples=1400)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=sizes,
    num_classes=st.one_of(st.integers(1, 5), st.integers(6, 100)),
    layout=st.sampled_from(LAYOUTS),
    score_kind=st.sampled_from(SCORE_KINDS),
    degenerate=st.sampled_from([0.0, 0.05, 0.3]),
    dtype=st.sampled_from(DTYPES),
    thr=THRESHOLDS,
)
def test_batched_nms_matches_torchvision(
    seed, n, num_classes, layout, score_kind, degenerate, dtype, thr
):
    boxes, scores, idxs = make_inputs(seed, n, num_classes, layout, score_kind, degenerate, dtype)
    check_batched(boxes, scores, idxs, thr)


@settings(max_examples=120)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_classes=st.integers(1, 100),
    layout=st.sampled_from(LAYOUTS),
    score_kind=st.sampled_from(SCORE_KINDS),
    dtype=st.sampled_from(DTYPES),
    thr=THRESHOLDS,
)
def test_batched_nms_both_sides_of_the_switch(seed, num_classes, layout, score_kind, dtype, thr):
    boxes, scores, idxs = make_inputs(seed, 1002, num_classes, layout, score_kind, 0.05, dtype)
    for n in (999, 1000, 1001, 1002):
        check_batched(boxes[:n], scores[:n], idxs[:n], thr)


@settings(max_examples=250)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 1200),
    num_classes=st.integers(1, 100),
    scale=st.sampled_from([1.0, 3.7, 11.3, 97.1]),
    offset=st.sampled_from([0.0, 0.37, -3.0, -700.0, -5000.0]),
    dtype=st.sampled_from(DTYPES),
    thr=THRESHOLDS,
)
def test_batched_nms_offset_rounding_and_negative_coordinates(
    seed, n, num_classes, scale, offset, dtype, thr
):
    # Large coordinates times large class ids make the f32 offset absorb low
    # bits; all-negative coordinates make torchvision's offsets mix classes.
    boxes, scores, idxs = make_inputs(
        seed, n, num_classes, "clustered", "continuous", 0.05, dtype, offset, scale
    )
    check_batched(boxes, scores, idxs, thr)


@settings(max_examples=200)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 1300),
    ids=st.sampled_from(["negative", "sparse", "huge", "extreme", "single"]),
    int_dtype=st.sampled_from([torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8]),
    dtype=st.sampled_from(DTYPES),
    thr=THRESHOLDS,
)
def test_batched_nms_class_ids(seed, n, ids, int_dtype, dtype, thr):
    boxes, scores, idxs = make_inputs(seed, n, 20, "clustered", "coarse", 0.05, dtype)
    if ids == "negative":
        idxs = idxs - 10
    elif ids == "sparse":
        idxs = idxs * 5 + 3
    elif ids == "huge":
        idxs = idxs * 1_000_003 - 4_000_000
    elif ids == "extreme":
        low, high = torch.iinfo(torch.int64).min, torch.iinfo(torch.int64).max
        idxs = torch.where(idxs % 3 == 0, high, torch.where(idxs % 3 == 1, low, idxs))
    else:
        idxs = torch.full_like(idxs, 7)
    info = torch.iinfo(int_dtype)
    idxs = idxs.clamp(info.min, info.max).to(int_dtype)
    ours = batched_nms(boxes, scores, idxs, thr)
    ref = torchvision.ops.batched_nms(boxes, scores, idxs.to(torch.int64), thr)
    assert_same_keep(ours, ref, scores)


@settings(max_examples=150)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 300),
    num_classes=st.integers(1, 4),
    layout=st.sampled_from(LAYOUTS),
    dtype=st.sampled_from(DTYPES),
    thr=st.sampled_from([-1.0, -0.5, -0.0, 1.5, 1e300, -1e300, float("inf"), float("-inf")]),
)
def test_thresholds_outside_unit_interval(seed, n, num_classes, layout, dtype, thr):
    boxes, scores, idxs = make_inputs(seed, n, num_classes, layout, "coarse", 0.2, dtype)
    check_batched(boxes, scores, idxs, thr)
    assert torch.equal(nms(boxes, scores, thr), torchvision.ops.nms(boxes, scores, thr))


@settings(max_examples=400)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.one_of(st.integers(0, 60), st.integers(61, 2000)),
    layout=st.sampled_from(LAYOUTS),
    score_kind=st.sampled_from(SCORE_KINDS),
    degenerate=st.sampled_from([0.0, 0.05, 0.3]),
    dtype=st.sampled_from(DTYPES),
    thr=THRESHOLDS,
)
def test_nms_matches_torchvision(seed, n, layout, score_kind, degenerate, dtype, thr):
    boxes, scores, _ = make_inputs(seed, n, 1, layout, score_kind, degenerate, dtype)
    ours = nms(boxes, scores, thr)
    assert ours.dtype == torch.int64
    assert torch.equal(ours, torchvision.ops.nms(boxes, scores, thr))


@settings(max_examples=100)
@given(
    boxes=st.lists(st.tuples(*[st.integers(-3, 6)] * 4), min_size=0, max_size=30),
    data=st.data(),
    dtype=st.sampled_from(DTYPES),
    thr=THRESHOLDS,
)
def test_small_integer_boxes(boxes, data, dtype, thr):
    # Fully hypothesis-driven (shrinkable) small cases on a tiny integer grid.
    n = len(boxes)
    scores = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    idxs = data.draw(st.lists(st.integers(-2, 2), min_size=n, max_size=n))
    b = torch.tensor(boxes, dtype=dtype).reshape(n, 4)
    s = torch.tensor(scores, dtype=dtype) / 4
    i = torch.tensor(idxs, dtype=torch.int64)
    check_batched(b, s, i, thr)
    assert torch.equal(nms(b, s, thr), torchvision.ops.nms(b, s, thr))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [5000, 20000])
def test_large_clustered_inputs(n, dtype):
    for seed, score_kind in [(n, "continuous"), (n + 1, "coarse")]:
        boxes, scores, idxs = make_inputs(seed, n, 80, "clustered", score_kind, 0.01, dtype)
        for thr in (0.5, 0.7):
            check_batched(boxes, scores, idxs, thr)
    boxes, scores, _ = make_inputs(n + 2, n // 4, 1, "clustered", "coarse", 0.01, dtype)
    assert torch.equal(nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))


def test_threads_do_not_change_the_result():
    boxes, scores, idxs = make_inputs(3, 20000, 80, "clustered", "coarse", 0.01, torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = batched_nms(boxes, scores, idxs, 0.5)
        torch.set_num_threads(2)
        two = batched_nms(boxes, scores, idxs, 0.5)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    # The core keeps the same boxes, ordered by score with ties by index; the
    # wrapper then applies torchvision's (unstable) final sort.
    native = torch.from_numpy(
        _native.batched_nms(boxes.numpy(), scores.numpy(), idxs.numpy(), 0.5, 0)
    )
    assert torch.equal(torch.sort(one).values, torch.sort(native).values)
    stable = torch.sort(native).values
    stable = stable[torch.sort(scores[stable], descending=True, stable=True)[1]]
    assert torch.equal(native, stable)


# ---------------------------------------------------------------- exact cases


@pytest.mark.parametrize("dtype", DTYPES)
def test_iou_equal_to_threshold_is_kept(dtype):
    boxes = torch.tensor([[0, 0, 2, 1], [0, 0, 1, 1]], dtype=dtype)  # IoU exactly 0.5
    scores = torch.tensor([0.9, 0.8], dtype=dtype)
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]
    assert batched_nms(boxes, scores, torch.tensor([3, 3]), 0.5).tolist() == [0, 1]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("thr", [0.1, 0.7])
@pytest.mark.parametrize("inter", [1, 7])
def test_threshold_not_representable_in_float32(dtype, thr, inter):
    # IoU = inter / 10 in the box dtype: float32(0.1) > 0.1 suppresses at 0.1,
    # float32(0.7) < 0.7 does not at 0.7; a threshold rounded to float32 gets
    # the first case wrong.
    boxes = torch.tensor([[0, 0, 10, 1], [0, 0, inter, 1]], dtype=dtype)
    scores = torch.tensor([0.9, 0.8], dtype=dtype)
    ref = torchvision.ops.nms(boxes, scores, thr)
    assert torch.equal(nms(boxes, scores, thr), ref)
    assert torch.equal(batched_nms(boxes, scores, torch.zeros(2, dtype=torch.int64), thr), ref)
    if dtype == torch.float32 and thr == 0.1 and inter == 1:
        assert ref.tolist() == [0]


def test_equal_scores_keep_lower_index_first():
    boxes = torch.tensor([[0, 0, 1, 1], [5, 5, 6, 6], [0, 0, 1, 1], [9, 9, 10, 10.0]])
    scores = torch.tensor([0.5, 0.5, 0.5, -0.0])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1, 3]
    scores = torch.tensor([0.0, -0.0, 0.0, 0.0])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1, 3]
    assert batched_nms(boxes, scores, torch.tensor([1, 0, 1, 0]), 0.5).tolist() == [0, 1, 3]


def test_degenerate_boxes():
    boxes = torch.tensor(
        [[1, 1, 1, 3], [1, 1, 1, 3], [0, 0, 4, 4], [3, 3, 1, 1], [4, 0, 8, 4], [2, 2, 2, 2.0]]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    for thr in (0.0, 0.5, -0.5):
        assert torch.equal(nms(boxes, scores, thr), torchvision.ops.nms(boxes, scores, thr))


@pytest.mark.parametrize("n", [0, 1])
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_and_single(n, dtype):
    boxes = torch.zeros((n, 4), dtype=dtype)
    scores = torch.ones(n, dtype=dtype)
    for keep in (
        nms(boxes, scores, 0.5),
        batched_nms(boxes, scores, torch.zeros(n, dtype=torch.int64), 0.5),
    ):
        assert keep.dtype == torch.int64
        assert keep.tolist() == list(range(n))


@pytest.mark.parametrize("n", [300, 1500])
def test_non_contiguous_and_grad_inputs(n):
    boxes, scores, idxs = make_inputs(5, n, 10, "clustered", "coarse", 0.05, torch.float64)
    wide = torch.zeros((4, n), dtype=torch.float64)
    wide[:] = boxes.T
    strided_boxes = wide.T  # (n, 4), column-major
    strided_scores = torch.stack([scores, scores], 1)[:, 0]
    strided_idxs = torch.stack([idxs, idxs], 1)[:, 1].to(torch.int32)
    assert not strided_boxes.is_contiguous() and not strided_scores.is_contiguous()
    ref = torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)
    assert_same_keep(batched_nms(strided_boxes, strided_scores, strided_idxs, 0.5), ref, scores)
    assert torch.equal(
        nms(strided_boxes, strided_scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5)
    )
    grad_boxes = boxes.clone().requires_grad_(True)
    grad_scores = scores.clone().requires_grad_(True)
    assert_same_keep(batched_nms(grad_boxes, grad_scores, idxs, 0.5), ref, scores)


def test_threshold_as_tensor_or_int():
    boxes, scores, idxs = make_inputs(1, 50, 3, "grid", "coarse", 0.0, torch.float32)
    ref = torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)
    assert torch.equal(batched_nms(boxes, scores, idxs, torch.tensor(0.5)), ref)
    assert torch.equal(nms(boxes, scores, 1), torchvision.ops.nms(boxes, scores, 1.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_use_torchvision():
    boxes, scores, idxs = make_inputs(2, 3000, 80, "clustered", "continuous", 0.0, torch.float32)
    cuda = [t.cuda() for t in (boxes, scores, idxs)]
    keep = batched_nms(*cuda, 0.5)
    assert keep.is_cuda
    assert torch.equal(keep, torchvision.ops.batched_nms(*cuda, 0.5))
    assert nms(cuda[0], cuda[1], 0.5).is_cuda


# ------------------------------------------------------------------ bad input


def _valid(n: int = 5, dtype: torch.dtype = torch.float32):
    boxes, scores, idxs = make_inputs(0, n, 3, "random", "continuous", 0.0, dtype)
    return boxes, scores, idxs


@pytest.mark.parametrize("op", ["nms", "batched_nms"])
@pytest.mark.parametrize(
    "bad, message",
    [
        ("boxes_3_cols", r"boxes has shape \(5, 3\); expected \(N, 4\)"),
        ("boxes_1d", r"boxes has shape \(20,\); expected \(N, 4\)"),
        ("boxes_3d", r"boxes has shape \(1, 5, 4\); expected \(N, 4\)"),
        ("scores_2d", r"scores has shape \(5, 1\); expected \(5,\) to match boxes"),
        ("scores_short", r"scores has shape \(4,\); expected \(5,\) to match boxes"),
        ("boxes_nan", r"boxes: must be finite; found NaN or infinity at row 2, column 1"),
        ("boxes_inf", r"boxes: must be finite; found NaN or infinity at row 4, column 3"),
        ("scores_nan", r"scores: must be finite; found NaN or infinity at index 3"),
        ("scores_neg_inf", r"scores: must be finite; found NaN or infinity at index 0"),
        ("thr_nan", r"iou_threshold: must not be NaN"),
    ],
)
def test_value_errors(op, bad, message):
    boxes, scores, idxs = _valid()
    thr = 0.5
    if bad == "boxes_3_cols":
        boxes = boxes[:, :3]
    elif bad == "boxes_1d":
        boxes = boxes.reshape(-1)
    elif bad == "boxes_3d":
        boxes = boxes[None]
    elif bad == "scores_2d":
        scores = scores[:, None]
    elif bad == "scores_short":
        scores = scores[:4]
    elif bad == "boxes_nan":
        boxes[2, 1] = float("nan")
    elif bad == "boxes_inf":
        boxes[4, 3] = float("inf")
    elif bad == "scores_nan":
        scores[3] = float("nan")
    elif bad == "scores_neg_inf":
        scores[0] = float("-inf")
    elif bad == "thr_nan":
        thr = float("nan")
    with pytest.raises(ValueError, match=message):
        if op == "nms":
            nms(boxes, scores, thr)
        else:
            batched_nms(boxes, scores, idxs, thr)


@pytest.mark.parametrize("n_idxs, shape", [(4, r"\(4,\)"), (6, r"\(6,\)")])
def test_idxs_length_mismatch(n_idxs, shape):
    boxes, scores, _ = _valid()
    with pytest.raises(
        ValueError, match=rf"idxs has shape {shape}; expected \(5,\) to match boxes"
    ):
        batched_nms(boxes, scores, torch.zeros(n_idxs, dtype=torch.int64), 0.5)
    with pytest.raises(ValueError, match=r"idxs has shape \(5, 1\)"):
        batched_nms(boxes, scores, torch.zeros((5, 1), dtype=torch.int64), 0.5)


@pytest.mark.parametrize("op", ["nms", "batched_nms"])
@pytest.mark.parametrize(
    "boxes_dtype, scores_dtype, message",
    [
        (torch.float16, torch.float16, r"boxes has dtype torch.float16; expected"),
        (torch.bfloat16, torch.bfloat16, r"boxes has dtype torch.bfloat16; expected"),
        (torch.int64, torch.float32, r"boxes has dtype torch.int64; expected"),
        (torch.float32, torch.float64, r"scores has dtype torch.float64; expected torch.float32"),
        (torch.float64, torch.float32, r"scores has dtype torch.float32; expected torch.float64"),
    ],
)
def test_type_errors(op, boxes_dtype, scores_dtype, message):
    boxes, scores, idxs = _valid()
    boxes, scores = boxes.to(boxes_dtype), scores.to(scores_dtype)
    with pytest.raises(TypeError, match=message):
        if op == "nms":
            nms(boxes, scores, 0.5)
        else:
            batched_nms(boxes, scores, idxs, 0.5)


@pytest.mark.parametrize("idx_dtype", [torch.float32, torch.bool, torch.float64])
def test_idxs_must_be_integers(idx_dtype):
    boxes, scores, idxs = _valid()
    with pytest.raises(TypeError, match=rf"idxs has dtype {idx_dtype}; expected an integer dtype"):
        batched_nms(boxes, scores, idxs.to(idx_dtype), 0.5)


def test_native_module_validates_its_own_arguments():
    boxes, scores, idxs = (t.numpy() for t in _valid())
    with pytest.raises(TypeError, match="boxes has dtype float16; expected float32 or float64"):
        _native.nms(boxes.astype(np.float16), scores, 0.5)
    with pytest.raises(TypeError, match=r"scores has dtype float64; expected float32"):
        _native.nms(boxes, scores.astype(np.float64), 0.5)
    with pytest.raises(TypeError, match=r"idxs has dtype int32; expected int64"):
        _native.batched_nms(boxes, scores, idxs.astype(np.int32), 0.5)
    with pytest.raises(TypeError, match=r"boxes has dtype <list>"):
        _native.nms([[0, 0, 1, 1]], scores[:1], 0.5)
    # Other layouts (Fortran order, strided views) are read in logical order.
    np.testing.assert_array_equal(
        _native.nms(np.asfortranarray(boxes), scores, 0.5), _native.nms(boxes, scores, 0.5)
    )
    strided = np.repeat(scores, 2)[::2]
    want = _native.batched_nms(boxes, scores, idxs, 0.5)
    np.testing.assert_array_equal(_native.batched_nms(boxes, strided, idxs, 0.5), want)
    keep = _native.batched_nms(boxes, scores, idxs, 0.5)
    assert keep.dtype == np.int64
