"""Inference of an exported detector: onnxruntime (NMS in the graph) against ``model.predict``.

The reference timed in the same run is the eager PyTorch model's ``predict``
(network, post-processing and the native batched NMS); ours is the ONNX file
written by ``export_to_onnx(..., postprocess=True, dynamic_image_size=True)``
run in onnxruntime with the same number of threads. Both return the same
detections (checked). Also prints the export time.

Run::

    pytest benches/bench_export.py -s                   # resnet18 FCOS, 256-ch FPN, 2x3x512x512
    pytest benches/bench_export.py --benchmark-disable  # tiny model at 128 px, one call each
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from autotimm import FeatureBackboneConfig, ObjectDetector
from autotimm.export import export_to_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _detector(quick: bool) -> ObjectDetector:
    torch.manual_seed(0)
    model = ObjectDetector(
        FeatureBackboneConfig("resnet18", pretrained=False),
        num_classes=80,
        fpn_channels=32 if quick else 256,
        head_num_convs=1 if quick else 4,
        compile_model=False,
        deterministic=False,
    ).eval()
    with torch.no_grad():  # scores spread over (0, 1): a full post-processing load
        for module in model.head.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.normal_(0.0, 0.05)
                if module.bias is not None:
                    module.bias.zero_()
    return model


def test_onnxruntime_against_predict(request: pytest.FixtureRequest, compare_speed: Any) -> None:
    quick = bool(request.config.getoption("benchmark_disable", False))
    size = 128 if quick else 512
    model = _detector(quick)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "det.onnx"
        start = time.perf_counter()
        export_to_onnx(model, path, x[:1], postprocess=True, dynamic_image_size=True)
        export_s = time.perf_counter() - start
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"input": x.numpy()}
    boxes, scores, labels, counts = session.run(None, feed)
    for i, det in enumerate(model.predict(x)):
        n = len(det["labels"])
        assert counts[i] == n and (labels[i, :n] == det["labels"].numpy()).all()
    print(f"\nexport to ONNX with NMS: {export_s:.1f} s; detections per image: {counts.tolist()}")
    compare_speed(
        f"predict 2x3x{size}x{size}: torch eager (reference) vs onnxruntime",
        lambda: model.predict(x),
        lambda: session.run(None, feed),
        rounds=3 if not quick else 1,
    )
