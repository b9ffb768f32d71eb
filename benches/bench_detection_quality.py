"""Detection quality on synthetic shapes: FCOS and YOLOX trained from scratch.

Filled rectangles (class 0) and ellipses (class 1) on noisy backgrounds,
128 px images, 256 training and 64 held-out images; 300 AdamW steps of batch 16
(resnet18 from scratch, fpn_channels=128, head_num_convs=2, lr 1e-3, no
scheduler). Target: val mAP@0.5 >= 0.6 for both architectures (AutoTimm's
newest release: 0.79 FCOS, 0.00 YOLOX).

``AUTOTIMM_BENCH_FULL=1 pytest benches/bench_detection_quality.py -s`` (or
``python benches/bench_detection_quality.py``) runs the full benchmark;
without the variable a tiny version checks that the pipeline runs.
"""

from __future__ import annotations

import math
import os
import time

import torch

FULL = os.environ.get("AUTOTIMM_BENCH_FULL", "") not in ("", "0")
THRESHOLD = 0.6
UPSTREAM = {"fcos": 0.79, "yolox": 0.00}


def make_shapes(n: int, size: int = 128, seed: int = 0):
    """n images [n, 3, size, size] (normalised), boxes / labels lists (xyxy pixels)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g) * 0.3 + 0.35
    ys = torch.arange(size).view(-1, 1).float() + 0.5
    xs = torch.arange(size).view(1, -1).float() + 0.5
    boxes, labels = [], []
    for i in range(n):
        k = int(torch.randint(1, 4, (1,), generator=g))
        img_boxes, img_labels = [], []
        for _ in range(k):
            w, h = (torch.randint(14, 56, (2,), generator=g)).tolist()
            x1 = int(torch.randint(0, size - w, (1,), generator=g))
            y1 = int(torch.randint(0, size - h, (1,), generator=g))
            cls = int(torch.randint(0, 2, (1,), generator=g))
            color = torch.rand(3, 1, 1, generator=g)
            if cls == 0:
                mask = (xs >= x1) & (xs < x1 + w) & (ys >= y1) & (ys < y1 + h)
            else:
                cx, cy = x1 + w / 2, y1 + h / 2
                mask = ((xs - cx) / (w / 2)) ** 2 + ((ys - cy) / (h / 2)) ** 2 <= 1
            images[i] = torch.where(mask, color, images[i])
            img_boxes.append([x1, y1, x1 + w, y1 + h])
            img_labels.append(cls)
        boxes.append(torch.tensor(img_boxes, dtype=torch.float32))
        labels.append(torch.tensor(img_labels, dtype=torch.int64))
    images = (images - 0.5) / 0.25
    return images, boxes, labels


def train_and_evaluate(
    arch: str, steps: int, n_train: int, n_val: int, batch_size: int = 16, seed: int = 0
) -> dict[str, float]:
    from autotimm import FeatureBackboneConfig, ObjectDetector
    from autotimm.core.metrics import MetricConfig, build_metric

    torch.manual_seed(seed)
    train = make_shapes(n_train, seed=seed)
    val = make_shapes(n_val, seed=seed + 1)
    model = ObjectDetector(
        FeatureBackboneConfig("resnet18", pretrained=False),
        num_classes=2,
        detection_arch=arch,
        fpn_channels=128,
        head_num_convs=2,
        lr=1e-3,
        scheduler=None,
        compile_model=False,
        deterministic=False,
    )
    optimizer = model.configure_optimizers()["optimizer"]
    model.train()
    start = time.perf_counter()
    losses = []
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(n_train, generator=g)[:batch_size].tolist()
        batch = {
            "images": train[0][idx],
            "boxes": [train[1][i] for i in idx],
            "labels": [train[2][i] for i in idx],
        }
        loss = model.compute_losses(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    train_s = time.perf_counter() - start
    model.eval()
    metric = build_metric(
        MetricConfig(name="mAP", backend="torchmetrics", metric_class="MeanAveragePrecision",
                     params={"box_format": "xyxy", "iou_type": "bbox"}, stages=["val"])
    )
    with torch.no_grad():
        for s in range(0, n_val, batch_size):
            preds = model.predict(val[0][s : s + batch_size])
            targets = [
                {"boxes": b, "labels": lab}
                for b, lab in zip(val[1][s : s + batch_size], val[2][s : s + batch_size],
                                  strict=True)
            ]
            metric.update(preds, targets)
    result = metric.compute()
    return {
        "map_50": float(result["map_50"]),
        "map": float(result["map"]),
        "first_loss": losses[0],
        "last_loss": sum(losses[-10:]) / len(losses[-10:]),
        "min_loss": min(losses),
        "train_s": train_s,
    }


def run(full: bool = FULL) -> dict[str, dict[str, float]]:
    steps, n_train, n_val = (300, 256, 64) if full else (3, 16, 8)
    results = {}
    for arch in ("fcos", "yolox"):
        r = train_and_evaluate(arch, steps, n_train, n_val, batch_size=16 if full else 4)
        results[arch] = r
        print(
            f"{arch}: val mAP@0.5 {r['map_50']:.3f} (AutoTimm {UPSTREAM[arch]:.2f}), "
            f"mAP {r['map']:.3f}, loss {r['first_loss']:.3f} -> {r['last_loss']:.3f} "
            f"(min {r['min_loss']:.3f}), {steps} steps in {r['train_s']:.1f} s"
        )
    return results


def test_detection_quality() -> None:
    results = run()
    for arch, r in results.items():
        assert r["min_loss"] >= 0, f"{arch} loss went negative: {r['min_loss']}"
        assert math.isfinite(r["map_50"])
        if FULL:
            assert r["map_50"] >= THRESHOLD, f"{arch} mAP@0.5 {r['map_50']:.3f} < {THRESHOLD}"


if __name__ == "__main__":
    run(full=True)
