"""autotimm.metrics.MeanAveragePrecision against torchmetrics (pycocotools backend), and DDP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from autotimm.metrics import MeanAveragePrecision

pytest.importorskip("pycocotools")
from torchmetrics.detection import MeanAveragePrecision as RefMAP  # noqa: E402

Batch = tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]


def make_batches(
    n_batches: int, batch_size: int, seed: int, n_cls: int = 4, box_format: str = "xyxy"
) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        preds, target = [], []
        for _ in range(batch_size):
            m = int(torch.randint(0, 7, (1,), generator=g))
            k = int(torch.randint(0, 14, (1,), generator=g))
            xy = torch.rand(m, 2, generator=g) * 200
            wh = torch.rand(m, 2, generator=g) * 120 + 0.5
            gt_xyxy = torch.cat([xy, xy + wh], 1)
            xy2 = torch.rand(k, 2, generator=g) * 200
            fp = torch.cat([xy2, xy2 + torch.rand(k, 2, generator=g) * 100 + 1], 1)
            dt_xyxy = torch.cat([gt_xyxy + torch.randn(m, 4, generator=g) * 3, fp])
            scores = torch.round(torch.rand(m + k, generator=g) * 20) / 20  # ties
            gt_labels = torch.randint(0, n_cls, (m,), generator=g)
            dt_labels = torch.cat([gt_labels, torch.randint(0, n_cls + 1, (k,), generator=g)])
            flip = torch.rand(m, generator=g) < 0.15
            dt_labels[:m][flip] = torch.randint(0, n_cls, (int(flip.sum()),), generator=g)
            area = torch.where(
                torch.rand(m, generator=g) < 0.3,
                torch.rand(m, generator=g) * 20000,
                torch.zeros(m),
            )
            preds.append(
                {"boxes": _fmt(dt_xyxy, box_format), "scores": scores, "labels": dt_labels}
            )
            target.append(
                {
                    "boxes": _fmt(gt_xyxy, box_format),
                    "labels": gt_labels,
                    "iscrowd": (torch.rand(m, generator=g) < 0.1).long(),
                    "area": area,
                }
            )
        out.append((preds, target))
    return out


def _fmt(xyxy: torch.Tensor, box_format: str) -> torch.Tensor:
    from torchvision.ops import box_convert

    return box_convert(xyxy, "xyxy", box_format) if box_format != "xyxy" else xyxy


def assert_results_equal(ours: dict[str, Any], ref: dict[str, Any]) -> None:
    assert set(ours) == set(ref)
    for key, value in ours.items():
        expected = ref[key]
        if key == "ious":
            assert set(value) == set(expected)
            for k, iou in value.items():
                if isinstance(expected[k], list):
                    assert iou == expected[k], k
                else:
                    assert torch.equal(iou, expected[k]), k
            continue
        assert value.dtype == expected.dtype, key
        assert value.shape == expected.shape, key
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6, msg=key)


def _both(batches: list[Batch], **kwargs: Any) -> tuple[dict, dict]:
    ours, ref = MeanAveragePrecision(**kwargs), RefMAP(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for preds, target in batches:
            ours.update(preds, target)
            ref.update(preds, target)
        return ours.compute(), ref.compute()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"class_metrics": True},
        {"average": "micro"},
        {"average": "micro", "class_metrics": True},
        {"box_format": "xywh"},
        {"box_format": "cxcywh", "class_metrics": True},
        {"max_detection_thresholds": [1, 5, 50]},
        {"max_detection_thresholds": [2, 10, 100]},
        {"iou_thresholds": [0.3, 0.5, 0.75], "rec_thresholds": [0.0, 0.1, 0.5, 0.9, 1.0]},
        {"extended_summary": True},
        {"extended_summary": True, "average": "micro", "max_detection_thresholds": [1, 2, 3]},
        {"backend": "faster_coco_eval"},
    ],
)
def test_equals_torchmetrics(kwargs: dict[str, Any]) -> None:
    box_format = kwargs.get("box_format", "xyxy")
    batches = make_batches(4, 6, seed=len(str(kwargs)), box_format=box_format)
    ours, ref = _both(batches, **kwargs)
    if "backend" in kwargs:  # reference: pycocotools numbers
        ref = _both(batches)[1]
    assert_results_equal(ours, ref)


@pytest.mark.parametrize("seed", range(6))
def test_equals_torchmetrics_random(seed: int) -> None:
    g = torch.Generator().manual_seed(100 + seed)
    n_cls = int(torch.randint(1, 6, (1,), generator=g))
    batches = make_batches(int(torch.randint(1, 4, (1,), generator=g)), 5, 100 + seed, n_cls)
    assert_results_equal(*_both(batches, class_metrics=True))


def test_float64_and_empty_inputs() -> None:
    batches = make_batches(2, 4, seed=7)
    batches = [
        (
            [{**p, "boxes": p["boxes"].double()} for p in preds],
            [{**t, "boxes": t["boxes"].double()} for t in target],
        )
        for preds, target in batches
    ]
    empty_pred = {
        "boxes": torch.zeros(0, 4),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.long),
    }
    empty_tgt = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    batches.append(([empty_pred, empty_pred], [empty_tgt, empty_tgt]))
    assert_results_equal(*_both(batches, class_metrics=True))


def test_no_updates_and_reset() -> None:
    assert_results_equal(*_both([]))
    metric = MeanAveragePrecision()
    preds, target = make_batches(1, 3, seed=8)[0]
    metric.update(preds, target)
    metric.reset()
    assert float(metric.compute()["map"]) == -1.0


def test_forward_returns_batch_value_and_accumulates() -> None:
    batches = make_batches(3, 4, seed=9)
    metric = MeanAveragePrecision()
    for preds, target in batches:
        batch_value = metric(preds, target)
        single = MeanAveragePrecision()
        single.update(preds, target)
        assert_results_equal(batch_value, single.compute())
    assert_results_equal(metric.compute(), _both(batches)[1])


def test_input_validation() -> None:
    metric = MeanAveragePrecision()
    with pytest.raises(ValueError, match="same length"):
        metric.update([], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}])
    with pytest.raises(ValueError, match="box_format"):
        MeanAveragePrecision(box_format="yxyx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bbox"):
        MeanAveragePrecision(iou_type="segm")
    with pytest.raises(ValueError, match="length 3"):
        MeanAveragePrecision(max_detection_thresholds=[1, 10])


def test_import_is_lazy() -> None:
    code = (
        "import sys, autotimm.metrics as m; "
        "assert 'torchmetrics' not in sys.modules and 'autotimm.core.metrics' not in sys.modules; "
        "m.COCOeval; assert 'torch' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ------------------------------------------------------------------------ DDP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        metric = MeanAveragePrecision(class_metrics=True)
        for preds, target in make_batches(3, 6, seed=11):
            # DistributedSampler-style split: rank r gets images r, r + world, ...
            metric.update(preds[rank::world], target[rank::world])
        result = metric.compute()
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_ddp_two_processes_equal_single_process(tmp_path: Path) -> None:
    world = 2
    mp.spawn(_ddp_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    single = MeanAveragePrecision(class_metrics=True)
    for preds, target in make_batches(3, 6, seed=11):
        single.update(preds, target)
    expected = single.compute()
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert set(got) == set(expected)
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
