"""Unusual and hostile inputs to every public native op and reader.

One row per case: each gets the right result or an ordinary Python exception
of the expected type (``ValueError``/``TypeError``/``MemoryError``/``OSError``
whose message names the input), never an abort, a hang or a
``PanicException`` (which ``except Exception`` misses).

The rows run in a child interpreter (this file run as a script), so an abort
is reported as the failure of its row instead of killing pytest; the child
reports each row as it finishes, and after a crash the remaining rows run in
a fresh child.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROW_TIMEOUT_S = 120.0
MARK = "@@row "  # the child's report lines (COCO prints progress on stdout too)

# ----------------------------------------------------------------- the rows
# Everything below up to ``main`` runs in the child only.


@dataclass(frozen=True)
class Row:
    """A case: ``expect`` is ``None`` (the call returns and its checks pass),
    an exception type name with a message pattern, or ``"Exception"`` (any
    ordinary exception or a correct result)."""

    name: str
    call: Callable[[], object]
    expect: tuple[str, str] | str | None


def _rows(tmp: Path) -> list[Row]:
    import numpy as np
    import torch

    from autotimm import _native
    from autotimm.metrics import COCO, COCOeval, MeanAveragePrecision
    from autotimm.ops import batched_nms, fcos_targets, nms
    from autotimm.ops.boxes import box_area, box_iou, clip_boxes

    rows: list[Row] = []

    def row(name: str, expect: tuple[str, str] | str | None = None):
        def add(fn: Callable[[], object]) -> Callable[[], object]:
            rows.append(Row(name, fn, expect))
            return fn

        return add

    def boxes(n: int = 5, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        g = torch.Generator().manual_seed(n)
        xy = torch.rand(n, 2, generator=g) * 100
        return torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g) * 50], 1).to(dtype)

    def scores(n: int = 5, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.linspace(0.9, 0.1, n).to(dtype)

    # ------------------------------------------------------------- nms
    for op_name, op in (
        ("nms", lambda b, s, t=0.5: nms(b, s, t)),
        (
            "batched_nms",
            lambda b, s, t=0.5: batched_nms(b, s, torch.zeros(len(s), dtype=torch.long), t),
        ),
    ):
        nan_box = boxes()
        nan_box[2, 1] = float("nan")
        inf_score = scores()
        inf_score[0] = float("inf")
        row(f"{op_name}: NaN box", ("ValueError", "boxes"))(
            lambda op=op, b=nan_box: op(b, scores())
        )
        row(f"{op_name}: infinite score", ("ValueError", "scores"))(
            lambda op=op, s=inf_score: op(boxes(), s)
        )
        row(f"{op_name}: NaN threshold", ("ValueError", "iou_threshold"))(
            lambda op=op: op(boxes(), scores(), float("nan"))
        )

        @row(f"{op_name}: empty")
        def _(op=op):
            keep = op(torch.zeros(0, 4), torch.zeros(0))
            assert keep.shape == (0,) and keep.dtype == torch.int64

        for dtype in (torch.float16, torch.bfloat16, torch.int64):
            row(f"{op_name}: {dtype} boxes", ("TypeError", "boxes has dtype"))(
                lambda op=op, d=dtype: op(boxes().to(d), scores().to(d))
            )
        row(f"{op_name}: scores of another dtype", ("TypeError", "scores has dtype"))(
            lambda op=op: op(boxes(), scores(dtype=torch.float64))
        )
        for shape_name, bad in (
            ("0-d", torch.tensor(1.0)),
            ("1-d", torch.zeros(8)),
            ("3 columns", torch.zeros(5, 3)),
            ("3-d", torch.zeros(1, 5, 4)),
        ):
            row(f"{op_name}: {shape_name} boxes", ("ValueError", "boxes has shape"))(
                lambda op=op, b=bad: op(b, scores())
            )
        row(f"{op_name}: scores of another length", ("ValueError", "scores has shape"))(
            lambda op=op: op(boxes(), scores(4))
        )

        @row(f"{op_name}: Fortran-order and strided inputs")
        def _(op=op):
            b, s = boxes(50), torch.rand(50, generator=torch.Generator().manual_seed(1))
            want = op(b, s)
            assert torch.equal(op(b.t().contiguous().t(), s), want)
            strided = (b.repeat_interleave(2, 0)[::2], s.repeat_interleave(2)[::2])
            assert not strided[1].is_contiguous()
            assert torch.equal(op(*strided), want)

        @row(f"{op_name}: 10^6 boxes")
        def _(op=op):
            n = 1_000_000
            b = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).expand(n, 4).contiguous()
            keep = op(b, torch.rand(n, generator=torch.Generator().manual_seed(2)))
            assert keep.numel() == 1

    @row("batched_nms: float class ids", ("TypeError", "idxs has dtype"))
    def _():
        batched_nms(boxes(), scores(), torch.zeros(5), 0.5)

    @row("batched_nms: class ids of another length", ("ValueError", "idxs has shape"))
    def _():
        batched_nms(boxes(), scores(), torch.zeros(4, dtype=torch.long), 0.5)

    @row("batched_nms: 10^6 boxes in 1000 classes")
    def _():
        n = 1_000_000
        b = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).expand(n, 4).contiguous()
        idxs = torch.arange(n) % 1000
        keep = batched_nms(b, torch.rand(n, generator=torch.Generator().manual_seed(3)), idxs, 0.5)
        assert keep.numel() == 1000

    # ---------------------------------------------------- _native glue
    native_boxes = boxes(6).numpy()
    native_scores = scores(6).numpy()
    for arg, args in (
        ("boxes", (native_boxes.astype(np.float16), native_scores)),
        ("boxes", (native_boxes.astype(np.int64), native_scores)),
        ("boxes", (native_boxes.tolist(), native_scores)),
        ("scores", (native_boxes, native_scores.astype(np.float64))),
    ):
        row(
            f"_native.nms: {arg} of {type(args[0]).__name__}/{getattr(args[0], 'dtype', '')}",
            ("TypeError", f"{arg} has (dtype|type)"),
        )(lambda a=args: _native.nms(*a, 0.5))

    level = dict(strides=[8], feature_sizes=[(8, 8)], regress_ranges=[(-1.0, 1e8)])

    @row("_native.fcos_targets: Fortran-order boxes read as C order")
    def _():
        b = np.array([[4.0, 4.0, 40.0, 30.0], [10.0, 12.0, 20.0, 50.0]], np.float32)
        lab, cnt = np.array([1, 2]), np.array([2])
        want = _native.fcos_targets(b, lab, cnt, **level)
        got = _native.fcos_targets(np.asfortranarray(b), lab, cnt, **level)
        assert (want[0] >= 0).sum() > 0
        for w, g in zip(want, got, strict=True):
            np.testing.assert_array_equal(w, g)

    @row("_native.fcos_targets: huge feature map", ("MemoryError", "feature_sizes"))
    def _():
        _native.fcos_targets(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.int64),
            np.zeros(1, np.int64),
            strides=[1],
            feature_sizes=[(2**20, 2**20)],
            regress_ranges=[(-1.0, 1e8)],
        )

    @row(
        "_native.fcos_targets: overflowing feature map", ("MemoryError|ValueError", "feature_sizes")
    )
    def _():
        _native.fcos_targets(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.int64),
            np.zeros(1, np.int64),
            strides=[1],
            feature_sizes=[(2**62, 2**62)],
            regress_ranges=[(-1.0, 1e8)],
        )

    @row("_native.fcos_targets: float64 boxes", ("TypeError", "boxes has dtype float64"))
    def _():
        _native.fcos_targets(np.zeros((1, 4)), np.zeros(1, np.int64), np.ones(1, np.int64), **level)

    @row("_native.fcos_targets: labels of another length", ("ValueError", "labels has shape"))
    def _():
        z = np.zeros((2, 4), np.float32)
        _native.fcos_targets(z, np.zeros(1, np.int64), np.ones(1, np.int64), **level)

    @row("_native.coco_evaluate: Fortran-order boxes read as C order")
    def _():
        gt_box = np.array([[10.0, 10.0, 30.0, 20.0], [50.0, 40.0, 20.0, 20.0]])
        dt_box = np.array([[11.0, 10.0, 30.0, 20.0], [50.0, 41.0, 20.0, 18.0], [0.0, 0, 5, 5]])

        def run(gt_b: np.ndarray, dt_b: np.ndarray) -> dict:
            i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
            return _native.coco_evaluate(
                i64(1, 2), i64(1, 1), i64(1, 1), gt_b, gt_b[:, 2] * gt_b[:, 3],
                np.zeros(2, np.uint8), i64(1, 2, 3), i64(1, 1, 1), i64(1, 1, 1), dt_b,
                dt_b[:, 2] * dt_b[:, 3], np.array([0.9, 0.8, 0.7]), i64(1), i64(1),
                np.array([0.5, 0.75]), np.array([[0.0, 1e10]]), 100, True,
            )  # fmt: skip

        want = run(gt_box, dt_box)
        got = run(np.asfortranarray(gt_box), np.asfortranarray(dt_box))
        assert want["dt_flags"].sum() > 0
        for key, value in want.items():
            np.testing.assert_array_equal(got[key], value, err_msg=key)

    # ---------------------------------------------------- fcos_targets
    one = [torch.tensor([[4.0, 4.0, 40.0, 30.0]])]
    row(
        "fcos_targets: image_size (2^20, 2^20), strides (1,)",
        ("MemoryError", "feature_sizes: cannot allocate"),
    )(
        lambda: fcos_targets(
            one, [torch.tensor([1])], (2**20, 2**20), strides=(1,), regress_ranges=[(-1.0, 1e8)]
        )
    )
    nan_boxes = [torch.tensor([[4.0, float("nan"), 40.0, 30.0]])]
    row("fcos_targets: NaN box", ("ValueError", "box"))(
        lambda: fcos_targets(nan_boxes, [torch.tensor([1])], (64, 64))
    )
    row("fcos_targets: label >= num_classes", ("ValueError", "label"))(
        lambda: fcos_targets(one, [torch.tensor([5])], (64, 64), num_classes=5)
    )
    row("fcos_targets: negative label", ("ValueError", "label"))(
        lambda: fcos_targets(one, [torch.tensor([-3])], (64, 64))
    )
    row("fcos_targets: 3-d boxes", ("ValueError", "box"))(
        lambda: fcos_targets([torch.zeros(1, 1, 4)], [torch.tensor([1])], (64, 64))
    )
    row("fcos_targets: labels of another length", ("ValueError", "label"))(
        lambda: fcos_targets(one, [torch.tensor([1, 2])], (64, 64))
    )

    @row("fcos_targets: no boxes, float16 and non-contiguous boxes")
    def _():
        cls, _, _ = fcos_targets([torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.long)], (64, 64))
        assert bool((cls == -1).all())
        b = torch.tensor([[4.0, 4.0, 40.0, 30.0], [8.0, 8.0, 20.0, 20.0]])
        want = fcos_targets([b], [torch.tensor([1, 2])], (64, 64))
        got = fcos_targets([b.t().contiguous().t()], [torch.tensor([1, 2])], (64, 64))
        assert all(torch.equal(w, g) for w, g in zip(want, got, strict=True))
        fcos_targets([b.half()], [torch.tensor([1, 2])], (64, 64))

    # ---------------------------------------------------------- box ops
    row("box_iou: 3 columns", "Exception")(lambda: box_iou(torch.zeros(2, 3), torch.zeros(2, 4)))
    row("box_iou: empty", None)(
        lambda: box_iou(torch.zeros(0, 4), torch.zeros(3, 4)).shape == (0, 3) or 1 / 0
    )
    row("box_area: NaN", "Exception")(lambda: box_area(torch.full((2, 4), float("nan"))))
    row("clip_boxes: 0-d", "Exception")(lambda: clip_boxes(torch.tensor(1.0), (10, 10)))

    # ------------------------------------------------------ COCO files
    def write(name: str, text: str | bytes) -> str:
        path = tmp / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return str(path)

    base = {
        "images": [{"id": 1}, {"id": 2}],
        "categories": [{"id": 1}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20], "area": 600}
        ],
    }
    gt_path = write("gt.json", json.dumps(base))
    for name, text, expect in (
        ("empty file", "", ("ValueError", "gt_bad")),
        ("binary garbage", b"\x00\xff\xfe{[", ("ValueError", "gt_bad")),
        ("a list", "[1, 2]", ("ValueError", "expected a COCO object")),
        ("10^5 nested lists", "[" * 100_000, ("ValueError", "gt_bad")),
        (
            "annotation without bbox",
            '{"annotations": [{"image_id": 1, "category_id": 1}]}',
            ("ValueError", 'annotations\\[0\\]: missing key "bbox"'),
        ),
        (
            "string category id",
            '{"annotations": [{"image_id": 1, "category_id": "a", "bbox": [1, 2, 3, 4]}]}',
            ("ValueError", 'annotations\\[0\\], key "category_id"'),
        ),
        (
            "mixed image ids",
            '{"images": [{"id": 1}, {"id": "b"}]}',
            ("ValueError", "all integers or all strings"),
        ),
        (
            "bbox of 3 numbers",
            '{"annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}]}',
            ("ValueError", 'key "bbox"'),
        ),
    ):
        path = write(f"gt_bad_{len(rows)}.json", text)
        row(f"COCO: {name}", expect)(lambda p=path: COCO(p))
    row("COCO: missing file", ("FileNotFoundError", ""))(lambda: COCO(str(tmp / "nope.json")))
    row("COCO: a directory", ("OSError", ""))(lambda: COCO(str(tmp)))

    @row("COCO: NaN/Infinity areas, string and float ids, long boxes")
    def _():
        text = (
            '{"images": [{"id": "a"}, {"id": "b"}], "categories": [{"id": 1.0}], "annotations": '
            '[{"id": 1.0, "image_id": "b", "category_id": 1, "bbox": [1, 2, 3, 4, 5], "area": NaN},'
            ' {"id": 2, "image_id": "a", "category_id": 1, "bbox": [1, 2, 3, 4],'
            ' "area": Infinity}]}'
        )
        coco = COCO(write("gt_odd.json", text))
        assert coco.getImgIds() == ["a", "b"]
        assert coco.getAnnIds(imgIds=["b"]) == [1]

    coco = COCO(gt_path)
    result = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20], "score": 0.5}
    for name, text, expect in (
        (
            "NaN, Infinity and -Infinity scores",
            json.dumps(
                [{**result, "score": v} for v in (float("nan"), float("inf"), float("-inf"))]
            ),
            None,
        ),
        (
            "float ids and long boxes",
            json.dumps([{**result, "image_id": 1.0, "bbox": [1, 2, 3, 4, 9]}]),
            None,
        ),
        ("empty list", "[]", None),
        ("an object", "{}", ("ValueError", "expected a list of results")),
        (
            "score as a string",
            json.dumps([{**result, "score": "0.5"}]),
            ("ValueError", 'results\\[0\\], key "score"'),
        ),
        (
            "unknown image",
            json.dumps([{**result, "image_id": 9}]),
            ("ValueError", "do not correspond"),
        ),
        ("string image id", json.dumps([{**result, "image_id": "x"}]), ("ValueError", "strings")),
        (
            "non-integral image id",
            json.dumps([{**result, "image_id": 1.5}]),
            ("ValueError", 'key "image_id"'),
        ),
        ("truncated", json.dumps([result] * 3)[:-9], ("ValueError", "dt_bad")),
    ):
        path = write(f"dt_bad_{len(rows)}.json", text)
        row(f"loadRes(file): {name}", expect)(lambda p=path: coco.loadRes(p))

    @row("loadRes(file): 1e400 scores read as infinity (Python's json)")
    def _():
        text = json.dumps([result, {**result, "bbox": [1, 2, 3, 4, 5]}]).replace("0.5", "1e400")
        for doc in (text, text.replace("[1, 2, 3, 4, 5]", "[1, 2, 3, 4]")):  # both readers
            scores = coco.loadRes(write(f"dt_big_{len(doc)}.json", doc))._cols["score"]
            assert scores.tolist() == [float("inf")] * 2, scores

    for name, value, expect in (
        (
            "list without score",
            [{k: v for k, v in result.items() if k != "score"}],
            ("ValueError", "score"),
        ),
        ("list of numbers", [1, 2], ("TypeError", "results\\[0\\]")),
        ("list with a short bbox", [{**result, "bbox": [1, 2, 3]}], ("ValueError", "bbox")),
        ("list with a float image id", [{**result, "image_id": 1.5}], ("ValueError", "image_id")),
        ("array of 6 columns", np.zeros((2, 6)), ("ValueError", "\\(N, 7\\)")),
        ("an int", 123, ("TypeError", "results must be")),
    ):
        row(f"loadRes: {name}", expect)(lambda v=value: coco.loadRes(v))

    def evaluate(**params: object) -> object:
        ev = COCOeval(coco, coco.loadRes([result]), "bbox")
        for key, value in params.items():
            setattr(ev.params, key, value)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return ev.stats

    row("COCOeval: a valid run", None)(lambda: evaluate()[0] >= 0 or 1 / 0)
    for name, value, pattern in (
        ("iouThrs", [], "iouThrs"),
        ("iouThrs", [float("nan")], "iouThrs"),
        ("recThrs", [], "recThrs"),
        ("maxDets", [], "maxDets"),
        ("areaRng", [[1.0]], "areaRng"),
        ("areaRng", "all", "areaRng"),
    ):
        row(f"COCOeval: {name}={value!r}", ("ValueError", pattern))(
            lambda n=name, v=value: evaluate(**{n: v})
        )

    # ------------------------------------------- MeanAveragePrecision
    def update(pred: dict, target: dict) -> object:
        metric = MeanAveragePrecision()
        metric.update([pred], [target])
        return metric.compute()

    good_pred = {"boxes": boxes(3), "scores": scores(3), "labels": torch.tensor([0, 1, 0])}
    good_target = {"boxes": boxes(3), "labels": torch.tensor([0, 1, 1])}
    row("MeanAveragePrecision.update: valid", None)(lambda: update(good_pred, good_target))
    row("MeanAveragePrecision.update: empty", None)(
        lambda: update(
            {
                "boxes": torch.zeros(0, 4),
                "scores": torch.zeros(0),
                "labels": torch.zeros(0, dtype=torch.long),
            },
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
        )
    )
    for name, pred, target in (
        ("3-column boxes", {**good_pred, "boxes": torch.zeros(3, 3)}, good_target),
        ("0-d scores", {**good_pred, "scores": torch.tensor(1.0)}, good_target),
        ("scores of another length", {**good_pred, "scores": scores(2)}, good_target),
        ("missing labels", {"boxes": boxes(3), "scores": scores(3)}, good_target),
        ("a list for boxes", {**good_pred, "boxes": [[0, 0, 1, 1]] * 3}, good_target),
    ):
        row(f"MeanAveragePrecision.update: {name}", "Exception")(
            lambda p=pred, t=target: update(p, t)
        )
    nan_pred = {**good_pred, "boxes": torch.full((3, 4), float("nan"))}
    row("MeanAveragePrecision.update: NaN boxes", "Exception")(
        lambda: update(nan_pred, good_target)
    )
    inf_pred = {**good_pred, "scores": torch.tensor([float("inf"), float("nan"), 0.5])}
    row("MeanAveragePrecision.update: non-finite scores", "Exception")(
        lambda: update(inf_pred, good_target)
    )
    return rows


def main(names: list[str]) -> None:
    """Runs the named rows (all if none) and prints one JSON line per row."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = {r.name: r for r in _rows(Path(tmp))}
        for name in names or list(rows):
            print(MARK + json.dumps({"row": name, "start": True}), flush=True)
            try:
                rows[name].call()
                outcome = {"row": name, "raised": None}
            except BaseException as e:  # noqa: BLE001 - PanicException is a BaseException
                outcome = {
                    "row": name,
                    "raised": type(e).__name__,
                    "mro": [c.__name__ for c in type(e).__mro__],
                    "message": str(e)[:2000],
                    "trace": traceback.format_exc()[-3000:],
                }
            print(MARK + json.dumps(outcome), flush=True)


# ---------------------------------------------------------------- the tests


def _expectations() -> dict[str, tuple[str, str] | str | None]:
    with tempfile.TemporaryDirectory() as tmp:
        rows = _rows(Path(tmp))
    names = [r.name for r in rows]
    assert len(set(names)) == len(names), "row names must be unique"
    return {r.name: r.expect for r in rows}


EXPECT = _expectations() if __name__ != "__main__" else {}


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict]:
    """Every row's outcome; a row that crashed or hung its child is recorded as such."""
    results: dict[str, dict] = {}
    pending = list(EXPECT)
    while pending:
        try:
            proc = subprocess.run(
                [sys.executable, __file__, *pending],
                capture_output=True,
                text=True,
                timeout=ROW_TIMEOUT_S + 60 * len(pending) ** 0.5,
            )
            stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            stderr, code = "timed out", None
        started = None
        for line in stdout.splitlines():
            if not line.startswith(MARK):
                continue
            record = json.loads(line[len(MARK) :])
            if record.get("start"):
                started = record["row"]
            else:
                results[record["row"]] = record
                started = None
        if started is None and code == 0:
            break
        if started is None:  # died between rows
            started = next(name for name in pending if name not in results)
        how = "hung" if code is None else f"ended with exit status {code}"
        results[started] = {"row": started, "crashed": f"{how}: {stderr[-2000:]}"}
        pending = [name for name in pending if name not in results]
    return results


@pytest.mark.parametrize("name", list(EXPECT))
def test_row(name: str, outcomes: dict[str, dict]) -> None:
    record = outcomes[name]
    assert "crashed" not in record, record["crashed"]
    expect = EXPECT[name]
    raised, message = record["raised"], record.get("message", "")
    if raised is not None:
        assert "Exception" in record["mro"], f"{raised} is no ordinary exception: {message}"
        assert raised != "PanicException", message
    if expect is None:
        assert raised is None, f"{raised}: {message}\n{record['trace']}"
    elif expect == "Exception":
        pass  # a correct result or any ordinary exception
    else:
        types, pattern = expect
        assert raised is not None, f"expected {types}, got a result"
        assert re.fullmatch(types, raised) or any(re.fullmatch(types, c) for c in record["mro"]), (
            f"expected {types}, got {raised}: {message}"
        )
        assert re.search(pattern, message), f"{message!r} does not match {pattern!r}"


if __name__ == "__main__":
    main(sys.argv[1:])
    # Skip interpreter teardown (thread pools, torch) once the rows are reported.
    sys.stdout.flush()
    os._exit(0)
