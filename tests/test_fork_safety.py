"""Every parallel entry point of the native core works in a forked child.

Each test runs an entry point in this process with more than one worker
thread (so the core's thread pools exist here), forks (``os.fork`` or a
``multiprocessing`` 'fork' pool, as DataLoader workers do), runs it again in
the child with more than one thread and checks the result, under a timeout:
a child that waited on its parent's pool threads would hang.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from autotimm import _native
from autotimm.metrics import COCO, COCOeval, MeanAveragePrecision
from autotimm.ops import fcos_targets

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns that forking a threaded process may deadlock: the
    # point of these tests is that the core's own threads do not.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

TIMEOUT_S = 60.0
THREADS = 2


def run_in_forked_child(work: Callable[[], None], timeout: float = TIMEOUT_S) -> None:
    """Runs ``work`` in an ``os.fork`` child; fails on an exception, a crash or a hang."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            # As DataLoader workers do: torch's OpenMP team is not fork-safe (a
            # parallel torch op in the child would wait on the parent's threads).
            torch.set_num_threads(1)
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child hung for {timeout:.0f} s")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked child failed (see stderr)"


@pytest.fixture(autouse=True)
def _threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTIMM_NUM_THREADS", str(THREADS))


# ---------------------------------------------------------------- the data
def _boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 500, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(1, 80, (n, 2))], axis=1)


def _coco_files(tmp_path: Path, num_results: int) -> tuple[str, str]:
    """A ground-truth file and a results file of ``num_results`` detections."""
    rng = np.random.default_rng(0)
    images = [{"id": i} for i in range(40)]
    anns = []
    for i in range(400):
        x, y, w, h = rng.uniform(0, 300, 4).round(1).tolist()
        anns.append(
            {
                "id": i + 1,
                "image_id": i % 40,
                "category_id": 1 + i % 5,
                "bbox": [x, y, w + 1, h + 1],
                "area": (w + 1) * (h + 1),
                "iscrowd": 0,
            }
        )
    results = []
    for j in range(num_results):
        a = anns[j % len(anns)]
        box = (np.asarray(a["bbox"]) + rng.normal(0, 3, 4)).round(2).tolist()
        results.append(
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": box,
                "score": round(float(rng.random()), 4),
            }
        )
    dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c} for c in range(1, 6)],
    }
    gt_file, dt_file = tmp_path / "gt.json", tmp_path / "dt.json"
    gt_file.write_text(json.dumps(dataset))
    dt_file.write_text(json.dumps(results))
    return str(gt_file), str(dt_file)


def _coco_stats(gt_file: str, dt_file: str) -> np.ndarray:
    gt = COCO(gt_file)
    ev = COCOeval(gt, gt.loadRes(dt_file), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return np.asarray(ev.stats)


# ---------------------------------------------------------------- the tests
def test_coco_files_and_cocoeval_after_fork(tmp_path: Path, capsys: Any) -> None:
    # > 4 MiB of results: the reader parses chunks in parallel.
    gt_file, dt_file = _coco_files(tmp_path, 60_000)
    assert os.path.getsize(dt_file) > 1 << 22
    expected = _coco_stats(gt_file, dt_file)

    def child() -> None:
        np.testing.assert_array_equal(_coco_stats(gt_file, dt_file), expected)

    run_in_forked_child(child)
    capsys.readouterr()


def test_batched_nms_after_fork() -> None:
    rng = np.random.default_rng(1)
    n = 20_000  # above the core's parallel threshold, many classes
    boxes = _boxes(rng, n).astype(np.float32)
    scores = rng.random(n).astype(np.float32)
    idxs = rng.integers(0, 50, n)
    expected = _native.batched_nms(boxes, scores, idxs, 0.5, THREADS)
    also_default = _native.batched_nms(boxes, scores, idxs, 0.5, 0)
    np.testing.assert_array_equal(expected, also_default)

    def child() -> None:
        for threads in (THREADS, 0):
            got = _native.batched_nms(boxes, scores, idxs, 0.5, threads)
            np.testing.assert_array_equal(got, expected)

    run_in_forked_child(child)


def test_fcos_targets_after_fork() -> None:
    rng = np.random.default_rng(2)
    boxes = [torch.from_numpy(_boxes(rng, 20).astype(np.float32)) for _ in range(4)]
    labels = [torch.from_numpy(rng.integers(0, 5, 20)) for _ in range(4)]
    expected = fcos_targets(boxes, labels, (640, 640), num_threads=THREADS)

    def child() -> None:
        for threads in (THREADS, 0):
            got = fcos_targets(boxes, labels, (640, 640), num_threads=threads)
            for a, b in zip(got, expected, strict=True):
                np.testing.assert_array_equal(a.numpy(), b.numpy())

    run_in_forked_child(child)


def _metric_result() -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(3)
    metric = MeanAveragePrecision()
    for _ in range(4):
        preds, target = [], []
        for _ in range(8):
            gt = torch.from_numpy(_boxes(rng, 12).astype(np.float32))
            noisy = gt + torch.from_numpy(rng.normal(0, 4, gt.shape).astype(np.float32))
            preds.append(
                {
                    "boxes": noisy,
                    "scores": torch.from_numpy(rng.random(12).astype(np.float32)),
                    "labels": torch.from_numpy(rng.integers(0, 6, 12)),
                }
            )
            target.append({"boxes": gt, "labels": torch.from_numpy(rng.integers(0, 6, 12))})
        metric.update(preds, target)
    return metric.compute()


def test_mean_average_precision_after_fork() -> None:
    expected = _metric_result()

    def child() -> None:
        got = _metric_result()
        for key, value in expected.items():
            np.testing.assert_array_equal(got[key].numpy(), value.numpy(), err_msg=key)

    run_in_forked_child(child)


def _pool_task(paths: tuple[str, str]) -> list[float]:
    return _coco_stats(*paths).tolist()


def test_multiprocessing_fork_pool(tmp_path: Path, capsys: Any) -> None:
    paths = _coco_files(tmp_path, 2_000)
    expected = _coco_stats(*paths).tolist()
    rng = np.random.default_rng(4)
    n = 12_000
    boxes, scores = _boxes(rng, n), rng.random(n)
    keep = _native.batched_nms(boxes, scores, rng.integers(0, 30, n), 0.5, THREADS)
    assert keep.size > 0
    with multiprocessing.get_context("fork").Pool(2) as pool:
        got = pool.map_async(_pool_task, [paths, paths]).get(timeout=TIMEOUT_S)
    assert got == [expected, expected]
    capsys.readouterr()
