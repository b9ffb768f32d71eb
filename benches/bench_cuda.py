"""CUDA paths: the torch implementations that run on the GPU agree with the
native CPU core, the training step makes no host sync on the GPU, and the
step's time with on-device target assignment vs precomputed targets.

Skipped without a CUDA device (CI has none); run it on a GPU machine with
``pytest benches/bench_cuda.py -s``.
"""

from __future__ import annotations

import time

import pytest
import torch
import torchvision

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def detector_boxes(num_images: int, boxes_per_image: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num_images, boxes_per_image, 2, generator=g) * (size * 0.7)
    wh = torch.rand(num_images, boxes_per_image, 2, generator=g) * (size * 0.3) + 2
    boxes = list(torch.cat([xy, xy + wh], dim=-1))
    labels = list(torch.randint(0, 80, (num_images, boxes_per_image), generator=g))
    return boxes, labels


def cuda_time(fn, repeats: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def test_nms_on_cuda_matches_cpu() -> None:
    from autotimm.ops import batched_nms, nms

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(5000, 2, generator=g) * 500
    boxes = torch.cat([xy, xy + torch.rand(5000, 2, generator=g) * 80 + 1], dim=1)
    scores = torch.rand(5000, generator=g)
    idxs = torch.randint(0, 80, (5000,), generator=g)
    cpu = batched_nms(boxes, scores, idxs, 0.5)
    gpu = batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5)
    assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
    assert torch.equal(nms(boxes.cuda(), scores.cuda(), 0.5).cpu(), nms(boxes, scores, 0.5))
    t_ours = cuda_time(lambda: batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5))
    t_tv = cuda_time(
        lambda: torchvision.ops.batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5)
    )
    print(
        "\nbatched_nms 5k boxes on CUDA:",
        f"ours {t_ours * 1e3:.3f} ms, torchvision {t_tv * 1e3:.3f} ms",
    )


def test_fcos_targets_cuda_equals_native_cpu() -> None:
    from autotimm.ops import fcos_targets

    boxes, labels = detector_boxes(16, 50, 800)
    cpu = fcos_targets(boxes, labels, (800, 800))
    gpu = fcos_targets([b.cuda() for b in boxes], [lab.cuda() for lab in labels], (800, 800))
    for a, b in zip(cpu, gpu, strict=True):
        assert b.is_cuda and torch.equal(a, b.cpu())
    t_gpu = cuda_time(
        lambda: fcos_targets([b.cuda() for b in boxes], [lab.cuda() for lab in labels], (800, 800))
    )
    start = time.perf_counter()
    for _ in range(5):
        fcos_targets(boxes, labels, (800, 800))
    t_cpu = (time.perf_counter() - start) / 5
    print(
        f"\nfcos_targets batch 16 x 50 boxes 800x800: torch on CUDA {t_gpu * 1e3:.2f} ms, "
        f"native CPU ({torch.get_num_threads()} threads) {t_cpu * 1e3:.2f} ms"
    )


def test_training_step_on_cuda() -> None:
    from torch.profiler import profile

    from autotimm import FeatureBackboneConfig, ObjectDetector
    from autotimm.ops import fcos_targets

    size = 512
    boxes, labels = detector_boxes(8, 20, size)
    labels = [lab % 3 for lab in labels]
    images = torch.randn(8, 3, size, size, device="cuda")
    batch = {
        "images": images,
        "boxes": [b.cuda() for b in boxes],
        "labels": [lab.cuda() for lab in labels],
    }
    for arch in ("fcos", "yolox"):
        model = ObjectDetector(
            FeatureBackboneConfig("resnet18", pretrained=False),
            num_classes=3,
            detection_arch=arch,
            compile_model=False,
            deterministic=False,
        ).cuda()
        model.log = lambda *a, **k: None  # type: ignore[method-assign]  # logging aside
        cls_out, _, _ = model(images)
        sizes = [tuple(c.shape[-2:]) for c in cls_out]
        pre = fcos_targets(boxes, labels, (size, size), feature_sizes=sizes)
        with_targets = {**batch, "targets": tuple(t.cuda() for t in pre)}
        model.training_step(batch, 0)
        torch.cuda.synchronize()
        with profile() as prof:
            loss = model.training_step(batch, 0)
            loss.backward()
        names = [e.name for e in prof.events()]
        syncs = names.count("aten::item") + names.count("aten::_local_scalar_dense")
        assert syncs == 0, f"{arch}: {syncs} host syncs in the training step"

        def step(b, model=model):
            model.zero_grad(set_to_none=True)
            model.training_step(b, 0).backward()

        t_device = cuda_time(lambda: step(batch), repeats=10)
        t_pre = cuda_time(lambda b=with_targets: step(b), repeats=10)
        dets = model.predict(images)
        assert len(dets) == 8 and all(d["boxes"].is_cuda for d in dets)
        print(
            f"\n{arch} train step (B=8, {size}px, resnet18) on CUDA: targets on device "
            f"{t_device * 1e3:.1f} ms, precomputed {t_pre * 1e3:.1f} ms; host syncs 0"
        )


def test_mean_average_precision_accepts_cuda_tensors() -> None:
    from autotimm.metrics import MeanAveragePrecision

    boxes, labels = detector_boxes(4, 10, 300)
    metric = MeanAveragePrecision().cuda()
    preds = [
        {"boxes": b.cuda(), "scores": torch.rand(len(b), device="cuda"), "labels": lab.cuda()}
        for b, lab in zip(boxes, labels, strict=True)
    ]
    targets = [
        {"boxes": b.cuda(), "labels": lab.cuda()} for b, lab in zip(boxes, labels, strict=True)
    ]
    metric.update(preds, targets)
    out = metric.compute()
    assert float(out["map"]) == pytest.approx(1.0)
