"""Detection quality on synthetic shapes: FCOS and YOLOX trained from scratch.

Filled rectangles (class 0) and ellipses (class 1), bright and not
overlapping, on darker noisy backgrounds,
128 px images, 256 training and 64 held-out images; 300 AdamW steps of batch 16
(resnet18 from scratch, fpn_channels=128, head_num_convs=2, lr 1e-3, no
scheduler). Target: val mAP@0.5 >= 0.9 for both architectures (AutoTimm's
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
DEVICE = os.environ.get("AUTOTIMM_BENCH_DEVICE", "cpu")
THRESHOLD = 0.9
UPSTREAM = {"fcos": 0.79, "yolox": 0.00}


def make_shapes(n: int, size: int = 128, seed: int = 0):
    """Images and boxes of filled rectangles (class 0) and ellipses (class 1).

    Bright saturated shapes on a darker noisy background, 1-3 per image, sides
    12-56 px, not overlapping (every box is visible). Returns images [n, 3,
    size, size] (normalised), and per image boxes [k, 4] xyxy float32 and
    labels [k] int64.
    """
    g = torch.Generator().manual_seed(seed)
    ys = torch.arange(size).view(-1, 1).float() + 0.5
    xs = torch.arange(size).view(1, -1).float() + 0.5
    base = torch.rand(n, 3, 1, 1, generator=g) * 0.35
    images = base + torch.randn(n, 3, size, size, generator=g) * 0.04
    boxes, labels = [], []
    for i in range(n):
        k = int(torch.randint(1, 4, (1,), generator=g))
        img_boxes: list[list[int]] = []
        img_labels: list[int] = []
        for _ in range(20 * k):
            if len(img_boxes) == k:
                break
            w, h = torch.randint(12, 57, (2,), generator=g).tolist()
            x1 = int(torch.randint(0, size - w + 1, (1,), generator=g))
            y1 = int(torch.randint(0, size - h + 1, (1,), generator=g))
            if any(x1 < bx2 + 2 and bx1 < x1 + w + 2 and y1 < by2 + 2 and by1 < y1 + h + 2
                   for bx1, by1, bx2, by2 in img_boxes):
                continue
            cls = int(torch.randint(0, 2, (1,), generator=g))
            color = torch.rand(3, 1, 1, generator=g) * 0.4 + 0.6
            color[int(torch.randint(0, 3, (1,), generator=g))] *= 0.3  # saturated hue
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
    images = (images - 0.3) / 0.3
    return images, boxes, labels


def train_and_evaluate(
    arch: str,
    steps: int,
    n_train: int,
    n_val: int,
    batch_size: int = 16,
    seed: int = 0,
    device: str = DEVICE,
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
    ).to(device)
    train = (train[0].to(device), [b.to(device) for b in train[1]],
             [lab.to(device) for lab in train[2]])
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
        losses.append(loss.detach())
    losses = [float(v) for v in losses]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    train_s = time.perf_counter() - start
    model.eval()
    metric = build_metric(
        MetricConfig(name="mAP", backend="torchmetrics", metric_class="MeanAveragePrecision",
                     params={"box_format": "xyxy", "iou_type": "bbox"}, stages=["val"])
    )
    with torch.no_grad():
        for s in range(0, n_val, batch_size):
            preds = model.predict(val[0][s : s + batch_size].to(device))
            preds = [{k: v.cpu() for k, v in p.items()} for p in preds]
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
            f"(min {r['min_loss']:.3f}), {steps} steps in {r['train_s']:.1f} s on {DEVICE}"
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
