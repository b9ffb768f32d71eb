"""Detection quality on real photographs: BCCD blood cells, ours against torchvision's FCOS.

Every model goes through the same loop: resnet18 from scratch, images resized
from 640x480 to 320x240, the same shuffled batches of 8 with the same random
horizontal and vertical flips, AdamW (lr 1e-3, weight decay 1e-4) with a
linear warm-up and a cosine decay, gradient norm clipped at 10. Models:

* ``ours-fcos``: ``ObjectDetector(detection_arch="fcos")``;
* ``ours-yolox``: ``ObjectDetector(detection_arch="yolox")``;
* ``tv-fcos``: torchvision's ``FCOS`` on a resnet18-FPN (P3-P7, BatchNorm, no
  weights) with a head of the same width and depth as ours.

All use FPN width 128, two convs per head branch, score threshold 0.05, NMS
IoU 0.6 and at most 100 detections per image. The val split (87 images) is
evaluated with ``autotimm.metrics.COCOeval`` against the original annotations
(boxes scaled back to 640x480). Output: one table with COCO mAP, mAP@0.5,
mAP_small and the mean training ms/step of each model (steps after the first
five, on this machine's threads).

``pytest benches/bench_real_data.py -s`` runs the default length, 300 steps
(about 12 epochs; three models x 300 steps at the measured ~1.37 s/step on 2
threads: about 21 minutes plus evaluation on a quiet 2-core CPU);
``AUTOTIMM_BENCH_REAL_STEPS=N`` sets the steps per model and
``AUTOTIMM_BENCH_REAL_MODELS=ours-fcos,tv-fcos`` the models (``ours-fcos-nchw``:
FCOS with ``channels_last=False``, not run by default). Under
``--benchmark-disable`` (CI) each model trains for two steps of two images.
``python benches/bench_real_data.py [steps]`` runs it without pytest, and
``python benches/bench_real_data.py timing [steps]`` times the models' training
steps alternately on the same batches (fair ms/step on a loaded machine), and
``python benches/bench_real_data.py separate-timing [steps]`` times each model
alone in a fresh process, the models taking turns (three rounds), and
``python benches/bench_real_data.py precision`` prints how far our FCOS's
features and gradients lie from float64's in each memory layout.

The data is read from ``../shared/data/bccd`` relative to the project root
(BCCD, MIT licence; see its README); the bench skips when it is absent.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bccd"
DEFAULT_STEPS = 300
QUICK_STEPS = 2
QUICK_BATCH_SIZE = 2
MODELS = ("ours-fcos", "ours-yolox", "tv-fcos")
IMAGE_SIZE = (240, 320)  # (H, W) after resizing; the originals are 480 x 640
BATCH_SIZE = 8
LR = 1e-3
WEIGHT_DECAY = 1e-4
WARMUP_STEPS = 30
CLIP_NORM = 10.0
FPN_CHANNELS = 128
HEAD_NUM_CONVS = 2
SCORE_THRESH = 0.05
NMS_THRESH = 0.6
MAX_DETECTIONS = 100
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@dataclass
class Split:
    """Images of one split, resized: ``images`` uint8 [N, 3, H, W]; per image ``boxes``
    [k, 4] float32 xyxy at the resized scale, ``labels`` [k] int64 in [0, 3)."""

    images: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    image_ids: list[int]
    scale: float  # original size / resized size
    annotation_file: Path


def load_split(name: str, limit: int | None = None) -> Split:
    """Decode and resize the images of ``instances_{name}.json`` (the first ``limit``)."""
    from PIL import Image

    ann_file = DATA_DIR / f"instances_{name}.json"
    data = json.loads(ann_file.read_text())
    records = sorted(data["images"], key=lambda r: r["id"])[:limit]
    height, width = IMAGE_SIZE
    scale = records[0]["width"] / width
    by_image: dict[int, list[dict[str, Any]]] = {r["id"]: [] for r in records}
    for ann in data["annotations"]:
        if ann["image_id"] in by_image and not ann.get("iscrowd", 0):
            by_image[ann["image_id"]].append(ann)
    images, boxes, labels = [], [], []
    for rec in records:
        if rec["width"] / width != scale or rec["height"] / height != scale:
            raise ValueError(f"{rec['file_name']}: expected {width * scale}x{height * scale}")
        with Image.open(DATA_DIR / "images" / rec["file_name"]) as im:
            im = im.convert("RGB").resize((width, height), Image.BILINEAR)
            images.append(
                torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
                .view(height, width, 3)
                .permute(2, 0, 1)
            )
        anns = by_image[rec["id"]]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes.append(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1) / scale)
        labels.append(torch.tensor([a["category_id"] - 1 for a in anns], dtype=torch.int64))
    return Split(torch.stack(images), boxes, labels, [r["id"] for r in records], scale, ann_file)


def batches(split: Split, steps: int, batch_size: int, seed: int = 0):
    """``steps`` training batches: epochs of shuffled images with random flips.

    Yields ``(images float [B, 3, H, W] in [0, 1], boxes, labels)``; the same
    seed gives every model the same batches.
    """
    g = torch.Generator().manual_seed(seed)
    n = split.images.shape[0]
    order: list[int] = []
    height, width = IMAGE_SIZE
    for _ in range(steps):
        if len(order) < batch_size:
            order += torch.randperm(n, generator=g).tolist()
        idx, order = order[:batch_size], order[batch_size:]
        flips = torch.rand(len(idx), 2, generator=g) < 0.5
        images, boxes = [], []
        for i, (flip_x, flip_y) in zip(idx, flips.tolist(), strict=True):
            image, box = split.images[i].float() / 255.0, split.boxes[i].clone()
            if flip_x:
                image = image.flip(-1)
                box[:, [0, 2]] = width - box[:, [2, 0]]
            if flip_y:
                image = image.flip(-2)
                box[:, [1, 3]] = height - box[:, [3, 1]]
            images.append(image)
            boxes.append(box)
        yield torch.stack(images), boxes, [split.labels[i] for i in idx]


class Detector:
    """One model behind the bench's two calls: a training loss and detections."""

    def __init__(
        self,
        module: nn.Module,
        loss: Callable[[torch.Tensor, list[torch.Tensor], list[torch.Tensor]], torch.Tensor],
        detect: Callable[[torch.Tensor], list[dict[str, torch.Tensor]]],
    ) -> None:
        self.module, self.loss, self.detect = module, loss, detect


def build_ours(arch: str, num_classes: int, channels_last: bool | None = None) -> Detector:
    from autotimm import FeatureBackboneConfig, ObjectDetector

    model = ObjectDetector(
        FeatureBackboneConfig("resnet18", pretrained=False),
        num_classes=num_classes,
        detection_arch=arch,
        fpn_channels=FPN_CHANNELS,
        head_num_convs=HEAD_NUM_CONVS,
        score_thresh=SCORE_THRESH,
        nms_thresh=NMS_THRESH,
        max_detections_per_image=MAX_DETECTIONS,
        scheduler=None,
        compile_model=False,
        deterministic=False,
        channels_last=channels_last,
    )

    def loss(images: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor]):
        batch = {"images": (images - MEAN) / STD, "boxes": boxes, "labels": labels}
        return model.compute_losses(batch)["loss"]

    def detect(images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return model.predict((images - MEAN) / STD)

    return Detector(model, loss, detect)


def build_torchvision_fcos(num_classes: int) -> Detector:
    from torchvision.models import resnet18
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.fcos import FCOSHead
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    backbone = BackboneWithFPN(
        resnet18(weights=None, norm_layer=nn.BatchNorm2d),
        return_layers={"layer2": "0", "layer3": "1", "layer4": "2"},
        in_channels_list=[128, 256, 512],
        out_channels=FPN_CHANNELS,
        extra_blocks=LastLevelP6P7(FPN_CHANNELS, FPN_CHANNELS),
    )
    height, width = IMAGE_SIZE
    model = FCOS(
        backbone,
        num_classes=num_classes,
        min_size=height,
        max_size=width,
        head=FCOSHead(FPN_CHANNELS, 1, num_classes, num_convs=HEAD_NUM_CONVS),
        score_thresh=SCORE_THRESH,
        nms_thresh=NMS_THRESH,
        detections_per_img=MAX_DETECTIONS,
        size_divisible=1,  # the same 320 x 240 tensors as ours (no padding to 32)
    )

    def loss(images: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor]):
        targets = [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels, strict=True)]
        return sum(model(list(images), targets).values())

    def detect(images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return model(list(images))

    return Detector(model, loss, detect)


def build(name: str, num_classes: int) -> Detector:
    if name == "ours-fcos":
        return build_ours("fcos", num_classes)
    if name == "ours-yolox":
        return build_ours("yolox", num_classes)
    if name == "ours-fcos-nchw":
        return build_ours("fcos", num_classes, channels_last=False)
    if name == "tv-fcos":
        return build_torchvision_fcos(num_classes)
    raise ValueError(f"unknown model {name!r}; expected one of {(*MODELS, 'ours-fcos-nchw')}")


def lr_factor(step: int, steps: int) -> float:
    """Linear warm-up over ``WARMUP_STEPS``, then cosine decay to 0 at ``steps``."""
    warmup = min(WARMUP_STEPS, max(steps // 4, 1))
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))


def train(
    detector: Detector, train_split: Split, steps: int, batch_size: int = BATCH_SIZE, seed: int = 0
) -> dict[str, Any]:
    """Train for ``steps``; returns ``ms_per_step`` (mean after 5 warm-up steps) and losses."""
    module = detector.module
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps))
    module.train()
    losses: list[torch.Tensor] = []
    times: list[float] = []
    for images, boxes, labels in batches(train_split, steps, batch_size, seed):
        start = time.perf_counter()
        loss = detector.loss(images, boxes, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
        optimizer.step()
        scheduler.step()
        times.append(time.perf_counter() - start)
        losses.append(loss.detach())
    timed = times[5:] if len(times) > 5 else times
    values = [float(v) for v in losses]
    return {
        "ms_per_step": 1e3 * sum(timed) / len(timed),
        "first_loss": values[0],
        "last_loss": sum(values[-20:]) / len(values[-20:]),
    }


@torch.no_grad()
def evaluate(detector: Detector, split: Split) -> dict[str, float]:
    """COCO mAP, mAP@0.5 and mAP_small on the original annotations (``COCOeval``)."""
    import contextlib
    import io

    from autotimm.metrics import COCO, COCOeval

    detector.module.eval()
    results: list[dict[str, Any]] = []
    for start in range(0, split.images.shape[0], BATCH_SIZE):
        images = split.images[start : start + BATCH_SIZE].float() / 255.0
        for image_id, det in zip(
            split.image_ids[start : start + BATCH_SIZE], detector.detect(images), strict=True
        ):
            boxes = det["boxes"].float() * split.scale
            xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
            for box, score, label in zip(
                xywh.tolist(), det["scores"].tolist(), det["labels"].tolist(), strict=True
            ):
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": int(label) + 1,
                        "bbox": box,
                        "score": float(score),
                    }
                )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(split.annotation_file))
        if not results:
            return {"map": 0.0, "map_50": 0.0, "map_small": 0.0}
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.params.imgIds = list(split.image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [float(v) for v in evaluator.stats]
    return {"map": stats[0], "map_50": stats[1], "map_small": max(stats[3], 0.0)}


def run(
    steps: int = DEFAULT_STEPS,
    models: Sequence[str] = MODELS,
    limit: int | None = None,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Train and evaluate each model; prints and returns the table's rows."""
    train_split = load_split("train", limit)
    val_split = load_split("val", limit)
    results: dict[str, dict[str, Any]] = {}
    for name in models:
        torch.manual_seed(seed)
        detector = build(name, num_classes=3)
        start = time.perf_counter()
        row = train(detector, train_split, steps, batch_size, seed)
        row.update(evaluate(detector, val_split))
        row["minutes"] = (time.perf_counter() - start) / 60
        results[name] = row
        print(f"{name}: {row}", flush=True)
    print(format_table(results, steps, batch_size))
    return results


def format_table(results: dict[str, dict[str, Any]], steps: int, batch_size: int) -> str:
    threads = torch.get_num_threads()
    lines = [
        f"BCCD val, resnet18 from scratch, 320x240, batch {batch_size}, {steps} steps, "
        f"{threads} CPU threads",
        "| model | COCO mAP | mAP@0.5 | mAP_small | ms/step |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['map']:.3f} | {r['map_50']:.3f} | {r['map_small']:.3f} "
            f"| {r['ms_per_step']:.0f} |"
        )
    lines.append(step_time_ratios({name: r["ms_per_step"] for name, r in results.items()}))
    return "\n".join(lines)


def _timing_trainer(
    name: str, seed: int
) -> Callable[[torch.Tensor, list[torch.Tensor], list[torch.Tensor]], float]:
    """Model ``name`` (seeded) with AdamW, as a function that runs one training
    step on a batch and returns its seconds."""
    torch.manual_seed(seed)
    detector = build(name, num_classes=3)
    detector.module.train()
    optimizer = torch.optim.AdamW(detector.module.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    def step(images: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor]) -> float:
        start = time.perf_counter()
        loss = detector.loss(images, boxes, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def interleaved_step_times(
    models: Sequence[str] = MODELS, steps: int = 10, seed: int = 0
) -> dict[str, float]:
    """Mean training ms/step of each model, one step of each in turn on the same batches.

    Under a shared, loaded CPU the per-run ms/step of :func:`run` depends on the
    load at the time of each run; alternating the models step by step gives
    each the same conditions.
    """
    train_split = load_split("train", BATCH_SIZE * 2)
    trainers = {name: _timing_trainer(name, seed) for name in models}
    times: dict[str, list[float]] = {name: [] for name in models}
    for images, boxes, labels in batches(train_split, steps + 2, BATCH_SIZE, seed):
        for name, step in trainers.items():
            times[name].append(step(images, boxes, labels))
    result = {name: 1e3 * sum(t[2:]) / len(t[2:]) for name, t in times.items()}
    print("interleaved ms/step: " + ", ".join(f"{k} {v:.0f}" for k, v in result.items()))
    print(step_time_ratios(result))
    return result


def layout_errors(batch_size: int = 4, seed: int = 0) -> dict[str, tuple[float, float]]:
    """How far our FCOS in float32 lies from the same model in float64 on one BCCD
    training batch, per layout: NCHW, channels-last (the CPU default, whose
    BatchNorm sums in float64) and channels-last with PyTorch's own BatchNorm
    (float32 sums), the case ``autotimm.models.batchnorm`` fixes. Two figures
    each: the backbone's last feature map (max error over max value) and all
    parameter gradients (norm of the error over the norm of the gradient).
    """
    from autotimm.models.batchnorm import PreciseBatchNorm2d

    split = load_split("train", batch_size)
    images, boxes, labels = next(iter(batches(split, 1, batch_size, seed)))
    torch.manual_seed(seed)
    reference = build_ours("fcos", 3, channels_last=False)
    reference.module.double()

    def outputs(detector: Detector, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        model = detector.module
        with torch.no_grad():
            features = model.backbone(((images - MEAN) / STD).to(dtype))[-1].double()
        model.zero_grad()
        detector.loss(images.to(dtype), [b.to(dtype) for b in boxes], labels).backward()
        grads = [p.grad.double().flatten() for p in model.parameters() if p.grad is not None]
        return features, torch.cat(grads)

    want_features, want_grads = outputs(reference, torch.float64)
    errors = {}
    for name, channels_last, plain_bn in [
        ("NCHW", False, False),
        ("channels-last", True, False),
        ("channels-last, PyTorch BatchNorm", True, True),
    ]:
        detector = build_ours("fcos", 3, channels_last=channels_last)
        detector.module.load_state_dict(reference.module.state_dict())
        if plain_bn:
            for module in detector.module.modules():
                if type(module) is PreciseBatchNorm2d:
                    module.__class__ = nn.BatchNorm2d
        features, grads = outputs(detector, torch.float32)
        errors[name] = (
            ((features - want_features).abs().max() / want_features.abs().max()).item(),
            ((grads - want_grads).norm() / want_grads.norm()).item(),
        )
    print("error against float64 (features, gradients): " + ", ".join(
        f"{k} {f:.1e}, {g:.1e}" for k, (f, g) in errors.items()
    ))
    return errors


def median_step_time(name: str, steps: int = 10, seed: int = 0) -> float:
    """Median training ms/step of one model trained alone in this process (after
    two warm-up steps)."""
    train_split = load_split("train", BATCH_SIZE * 2)
    step = _timing_trainer(name, seed)
    times = [step(*batch) for batch in batches(train_split, steps + 2, BATCH_SIZE, seed)]
    return 1e3 * statistics.median(times[2:])


def separate_step_times(
    models: Sequence[str] = MODELS, steps: int = 10, rounds: int = 3
) -> dict[str, float]:
    """Mean over ``rounds`` of each model's median ms/step, every model trained
    alone in a fresh process, the models taking turns (as a user runs one model:
    no other model's memory in the caches or the allocator)."""
    medians: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name in models:
            out = subprocess.run(
                [sys.executable, __file__, "median-step-time", name, str(steps)],
                check=True, capture_output=True, text=True,
            ).stdout
            medians[name].append(float(out.strip().splitlines()[-1]))
    result = {name: statistics.mean(m) for name, m in medians.items()}
    print("separate processes, median ms/step per run: " + "; ".join(
        f"{k} " + " / ".join(f"{v:.0f}" for v in m) for k, m in medians.items()
    ))
    print(step_time_ratios(result))
    return result


def step_time_ratios(ms_per_step: dict[str, float], reference: str = "tv-fcos") -> str:
    """Each model's ms/step over the reference's (below 1: faster), as one line."""
    if reference not in ms_per_step:
        return f"(no {reference} in this run: no ratio)"
    ref = ms_per_step[reference]
    return "ms/step ratio to " + reference + ": " + ", ".join(
        f"{name} {ms / ref:.3f}" for name, ms in ms_per_step.items() if name != reference
    )


def _settings(quick: bool) -> tuple[int, list[str], int | None, int]:
    steps_env = os.environ.get("AUTOTIMM_BENCH_REAL_STEPS", "")
    models_env = os.environ.get("AUTOTIMM_BENCH_REAL_MODELS", "")
    steps = int(steps_env) if steps_env else (QUICK_STEPS if quick else DEFAULT_STEPS)
    models = [m.strip() for m in models_env.split(",") if m.strip()] or list(MODELS)
    if quick:  # two steps of two images on four images per split
        return steps, models, 2 * QUICK_BATCH_SIZE, QUICK_BATCH_SIZE
    return steps, models, None, BATCH_SIZE


def test_real_data(request: pytest.FixtureRequest) -> None:
    if not DATA_DIR.is_dir():
        pytest.skip(f"BCCD data not found at {DATA_DIR} (a clone on its own has no ../shared)")
    quick = bool(request.config.getoption("benchmark_disable", False))
    steps, models, limit, batch_size = _settings(quick)
    results = run(steps, models, limit, batch_size)
    for name, r in results.items():
        assert math.isfinite(r["first_loss"]) and math.isfinite(r["last_loss"]), name
        assert 0.0 <= r["map"] <= 1.0, name


if __name__ == "__main__":
    if not DATA_DIR.is_dir():
        sys.exit(f"BCCD data not found at {DATA_DIR}")
    default_steps, default_models, _, _ = _settings(quick=False)
    if len(sys.argv) > 1 and sys.argv[1] == "timing":
        interleaved_step_times(default_models, int(sys.argv[2]) if len(sys.argv) > 2 else 10)
    elif len(sys.argv) > 1 and sys.argv[1] == "separate-timing":
        separate_step_times(default_models, int(sys.argv[2]) if len(sys.argv) > 2 else 10)
    elif len(sys.argv) > 3 and sys.argv[1] == "median-step-time":
        print(f"{median_step_time(sys.argv[2], int(sys.argv[3])):.1f}")
    elif len(sys.argv) > 1 and sys.argv[1] == "precision":
        layout_errors()
    else:
        run(int(sys.argv[1]) if len(sys.argv) > 1 else default_steps, default_models)
