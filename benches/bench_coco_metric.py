"""``MeanAveragePrecision``: streaming evaluation beside torchmetrics and hotcoco.

500 images of the synthetic COCO-like set (80 classes, ~7 ground truth and 100
detections per image) fed in batches of 16, as a validation loop would:

* ``compute()`` of ours (accumulation only: matching ran in ``update``) beside
  torchmetrics' ``MeanAveragePrecision(backend="faster_coco_eval")``, whose
  ``compute()`` runs the whole evaluation;
* total ``update`` + ``compute`` beside hotcoco's ``StreamingEval`` (``update``
  per batch, then ``finalize`` + ``accumulate`` + ``summarize``); hotcoco's
  inputs are converted from the tensors before timing starts.

Results are checked against torchmetrics (pycocotools backend), all keys to 1e-6.

    pytest benches/bench_coco_metric.py -s                      # 500 images
    pytest benches/bench_coco_metric.py --benchmark-disable     # 64 images, quick
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from bench_coco_synthetic import synthetic_coco

from autotimm.metrics import MeanAveragePrecision

BATCH = 16


def _batches(n_images: int) -> tuple[list[tuple[list[dict], list[dict]]], dict[str, Any]]:
    dataset, results = synthetic_coco(n_images=n_images, seed=1)
    ids = [img["id"] for img in dataset["images"]]
    gt_by: dict[int, list[dict]] = {i: [] for i in ids}
    dt_by: dict[int, list[dict]] = {i: [] for i in ids}
    for a in dataset["annotations"]:
        gt_by[a["image_id"]].append(a)
    for r in results:
        dt_by[r["image_id"]].append(r)

    def xyxy(anns: list[dict]) -> torch.Tensor:
        b = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], 1)

    batches = []
    for s in range(0, len(ids), BATCH):
        preds, target = [], []
        for i in ids[s : s + BATCH]:
            g, d = gt_by[i], dt_by[i]
            preds.append(
                {
                    "boxes": xyxy(d),
                    "scores": torch.tensor([r["score"] for r in d], dtype=torch.float32),
                    "labels": torch.tensor([r["category_id"] for r in d], dtype=torch.long),
                }
            )
            target.append(
                {
                    "boxes": xyxy(g),
                    "labels": torch.tensor([a["category_id"] for a in g], dtype=torch.long),
                    "iscrowd": torch.tensor([a["iscrowd"] for a in g], dtype=torch.long),
                }
            )
        batches.append((preds, target))
    return batches, dataset


def _hotcoco_inputs(batches: list, categories: list[dict]) -> list[tuple[list, list, np.ndarray]]:
    """hotcoco's per-batch inputs, from the same tensors (torchmetrics' conversion)."""
    out, image_id, ann_id = [], 0, 1
    for preds, target in batches:
        images, gts, dts = [], [], []
        for p, t in zip(preds, target, strict=True):
            images.append({"id": image_id, "width": 640, "height": 480})
            b = t["boxes"].clone()
            b[:, 2:] -= b[:, :2]
            for box, label, crowd in zip(
                b.tolist(), t["labels"].tolist(), t["iscrowd"].tolist(), strict=True
            ):
                gts.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": label,
                        "bbox": box,
                        "area": box[2] * box[3],
                        "iscrowd": crowd,
                    }
                )
                ann_id += 1
            d = p["boxes"].clone()
            d[:, 2:] -= d[:, :2]
            n = len(d)
            rows = torch.cat(
                [
                    torch.full((n, 1), image_id, dtype=torch.float64),
                    d.double(),
                    p["scores"].double()[:, None],
                    p["labels"].double()[:, None],
                ],
                1,
            )
            dts.append(rows.numpy())
            image_id += 1
        out.append((images, gts, np.concatenate(dts)))
    return out


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fn()
    return time.perf_counter() - start, out


def _feed(metric: Any, batches: list) -> None:
    for preds, target in batches:
        metric.update(preds, target)


def test_metric_streaming(benchmark: Any) -> None:
    quick = benchmark.disabled
    n_images = int(os.environ.get("AUTOTIMM_BENCH_METRIC_IMAGES", 64 if quick else 500))
    batches, dataset = _batches(n_images)
    from torchmetrics.detection import MeanAveragePrecision as RefMAP

    times: dict[str, float] = {}
    ours = MeanAveragePrecision()
    times["ours update"], _ = _timed(lambda: _feed(ours, batches))
    times["ours compute"], result = _timed(ours.compute)

    reference = RefMAP(backend="pycocotools")
    _timed(lambda: _feed(reference, batches))
    _, expected = _timed(reference.compute)
    for key, value in result.items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6, msg=key)

    with contextlib.suppress(ImportError):
        import faster_coco_eval  # noqa: F401

        fce = RefMAP(backend="faster_coco_eval")
        times["torchmetrics[faster_coco_eval] update"], _ = _timed(lambda: _feed(fce, batches))
        times["torchmetrics[faster_coco_eval] compute"], fce_result = _timed(fce.compute)
        torch.testing.assert_close(fce_result["map"], result["map"], rtol=0, atol=1e-6)

    with contextlib.suppress(ImportError):
        import hotcoco

        inputs = _hotcoco_inputs(batches, dataset["categories"])

        def stream() -> np.ndarray:
            params = hotcoco.Params("bbox")
            params.iou_thrs = list(ours.iou_thresholds)  # torchmetrics' float32 grid
            params.rec_thrs = list(ours.rec_thresholds)
            se = hotcoco.StreamingEval(dataset["categories"], params=params)
            for images, gts, dts in inputs:
                se.update(images, gts, dts)
            ev = se.finalize()
            ev.accumulate()
            ev.summarize()
            return np.asarray(ev.stats)

        times["hotcoco StreamingEval total"], hot_stats = _timed(stream)
        assert abs(float(hot_stats[0]) - float(result["map"])) < 1e-6

    total = times["ours update"] + times["ours compute"]
    print(f"\nMeanAveragePrecision, {n_images} images in batches of {BATCH}:")
    for name, t in times.items():
        print(f"  {name:<40} {t:8.4f} s")
    print(f"  {'ours update + compute':<40} {total:8.4f} s")
    if "torchmetrics[faster_coco_eval] compute" in times:
        ratio = times["torchmetrics[faster_coco_eval] compute"] / times["ours compute"]
        print(f"  compute() speed-up vs torchmetrics[faster_coco_eval]: {ratio:.1f}x")
    if "hotcoco StreamingEval total" in times:
        ratio = times["hotcoco StreamingEval total"] / total
        print(f"  update+compute speed-up vs hotcoco StreamingEval: {ratio:.2f}x")
    benchmark.extra_info.update(times)

    def ours_compute() -> Any:
        ours._computed = None  # bypass the cached result
        return ours.compute()

    benchmark.pedantic(ours_compute, rounds=5)


def test_metric_update_releases_the_gil_and_scales_to_threads() -> None:
    """A smoke check that update() runs under a thread pool (GIL released)."""
    from concurrent.futures import ThreadPoolExecutor

    batches, _ = _batches(32)
    metrics = [MeanAveragePrecision() for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda m: _feed(m, batches), metrics))
    a, b = (m.compute() for m in metrics)
    assert float(a["map"]) == float(b["map"])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "-s"]))
