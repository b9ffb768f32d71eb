"""ONNX export of the detector, checked in onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autotimm import FeatureBackboneConfig, ObjectDetector, export_to_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.mark.parametrize("arch", ["fcos", "yolox"])
def test_to_onnx_matches_torch_in_onnxruntime(arch: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = ObjectDetector(FeatureBackboneConfig("resnet18", pretrained=False), num_classes=3,
                           detection_arch=arch, fpn_channels=16, head_num_convs=1,
                           compile_model=False, deterministic=False)
    model.eval()
    path = model.to_onnx(str(tmp_path / "det.onnx"), example_input=torch.randn(1, 3, 64, 64))
    assert model.training is False
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    levels = range(5)
    expected = [f"cls_l{i}" for i in levels] + [f"reg_l{i}" for i in levels]
    if arch == "fcos":
        expected += [f"ctr_l{i}" for i in levels]
    assert names == expected
    x = torch.randn(2, 3, 64, 64)  # batch dimension is dynamic
    outputs = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        cls, reg, ctr = model(x)
    ref = [*cls, *reg, *(ctr or [])]
    for name, got, want in zip(names, outputs, ref, strict=True):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-4, err_msg=name)


def test_export_defaults_and_restores_mode(tmp_path) -> None:
    model = ObjectDetector(FeatureBackboneConfig("resnet18", pretrained=False), num_classes=2,
                           fpn_channels=16, head_num_convs=1, compile_model=False,
                           deterministic=False)
    model.train()
    path = model.to_onnx()  # temp file, default 224 input
    assert path.endswith(".onnx") and model.training
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].name == "cls_l0"
    assert session.run(["cls_l0"], {"images": np.zeros((1, 3, 224, 224), np.float32)})[0].shape \
        == (1, 2, 28, 28)
    plain = torch.nn.Conv2d(3, 4, 3)
    out = export_to_onnx(plain, str(tmp_path / "conv.onnx"), torch.randn(1, 3, 8, 8))
    assert ort.InferenceSession(out).get_outputs()[0].name == "output"
    with pytest.raises(ValueError, match="output_names"):
        export_to_onnx(plain, str(tmp_path / "x.onnx"), torch.randn(1, 3, 8, 8),
                       output_names=["a", "b"])
