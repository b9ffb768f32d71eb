"""Export to ONNX (checked in onnxruntime) and TorchScript (checked against eager)."""

from __future__ import annotations

from pathlib import Path

import lightning
import numpy as np
import pytest
import torch

import autotimm
from autotimm import FeatureBackboneConfig, ObjectDetector
from autotimm.export import (
    POSTPROCESS_OUTPUT_NAMES,
    DetectorExport,
    export_checkpoint_to_onnx,
    export_checkpoint_to_torchscript,
    export_to_onnx,
    export_to_torchscript,
    load_onnx,
    load_torchscript,
    validate_onnx_export,
    validate_torchscript_export,
)
from autotimm.export._common import canonical_detections, outputs_match
from autotimm.export.nms import multiclass_nms

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


HELPERS = (
    "export_to_torchscript",
    "load_torchscript",
    "export_checkpoint_to_torchscript",
    "validate_torchscript_export",
    "export_to_onnx",
    "load_onnx",
    "export_checkpoint_to_onnx",
    "validate_onnx_export",
)


def tiny_detector(arch: str = "fcos", num_classes: int = 3, spread: bool = False) -> ObjectDetector:
    """resnet18 from scratch, 32-channel FPN, one conv per head branch.

    ``spread`` re-initialises the head so that scores spread over (0, 1): many
    detections, none of them tied, for comparing post-processing.
    """
    torch.manual_seed(0)
    model = ObjectDetector(
        FeatureBackboneConfig("resnet18", pretrained=False),
        num_classes=num_classes,
        detection_arch=arch,
        fpn_channels=32,
        head_num_convs=1,
        compile_model=False,
        deterministic=False,
    )
    if spread:
        with torch.no_grad():
            for module in model.head.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.weight.normal_(0.0, 0.05)
                    if module.bias is not None:
                        module.bias.zero_()
    return model.eval()


def save_checkpoint(model: ObjectDetector, path: Path) -> Path:
    """A Lightning checkpoint of ``model`` without a training run."""
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def test_helpers_are_exported_as_autotimm_does() -> None:
    import autotimm.export as export

    for name in HELPERS:
        assert getattr(autotimm, name) is getattr(export, name), name
        assert name in export.__all__


@pytest.mark.parametrize("arch", ["fcos", "yolox"])
def test_to_onnx_matches_torch_in_onnxruntime(arch: str, tmp_path: Path) -> None:
    model = tiny_detector(arch)
    path = model.to_onnx(str(tmp_path / "det.onnx"), example_input=torch.randn(1, 3, 64, 64))
    assert model.training is False
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]  # AutoTimm's name
    names = [o.name for o in session.get_outputs()]
    levels = range(5)
    expected = [f"cls_l{i}" for i in levels] + [f"reg_l{i}" for i in levels]
    if arch == "fcos":
        expected += [f"ctr_l{i}" for i in levels]
    assert names == expected
    x = torch.randn(2, 3, 64, 64)  # batch dimension is dynamic
    outputs = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        cls, reg, ctr = model(x)
    ref = [*cls, *reg, *(ctr or [])]
    for name, got, want in zip(names, outputs, ref, strict=True):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-4, err_msg=name)
    assert validate_onnx_export(model, path, x)


def test_export_defaults_and_restores_mode(tmp_path: Path) -> None:
    model = tiny_detector(num_classes=2)
    model.train()
    path = model.to_onnx()  # temp file, default 224 input
    assert path.endswith(".onnx") and model.training
    session = load_onnx(path)
    assert session.get_outputs()[0].name == "cls_l0"
    out = session.run(["cls_l0"], {"input": np.zeros((1, 3, 224, 224), np.float32)})[0]
    assert out.shape == (1, 2, 28, 28)
    plain = torch.nn.Conv2d(3, 4, 3)
    out_path = export_to_onnx(plain, str(tmp_path / "conv.onnx"), torch.randn(1, 3, 8, 8))
    assert load_onnx(out_path).get_outputs()[0].name == "output"
    assert validate_onnx_export(plain, out_path, torch.randn(3, 3, 8, 8))
    with pytest.raises(ValueError, match="output_names"):
        export_to_onnx(
            plain, str(tmp_path / "x.onnx"), torch.randn(1, 3, 8, 8), output_names=["a", "b"]
        )
    with pytest.raises(TypeError, match="postprocess=True needs an ObjectDetector"):
        export_to_onnx(plain, str(tmp_path / "x.onnx"), torch.randn(1, 3, 8, 8), postprocess=True)
    with pytest.raises(TypeError, match="example_input must be a tensor"):
        export_to_onnx(plain, str(tmp_path / "x.onnx"), np.zeros((1, 3, 8, 8)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="opset_version 10"):
        export_to_onnx(
            model,
            str(tmp_path / "x.onnx"),
            torch.randn(1, 3, 64, 64),
            opset_version=10,
            postprocess=True,
        )


def test_raw_onnx_with_dynamic_image_size(tmp_path: Path) -> None:
    model = tiny_detector("fcos")
    path = export_to_onnx(
        model, tmp_path / "det.onnx", torch.randn(1, 3, 64, 96), dynamic_image_size=True
    )
    for shape in [(2, 3, 128, 64), (1, 3, 96, 160)]:
        assert validate_onnx_export(model, path, torch.randn(shape), rtol=1e-4, atol=1e-4), shape
    other = tiny_detector("fcos")
    with torch.no_grad():
        other.head.cls_pred.bias.add_(1.0)
    assert not validate_onnx_export(other, path, torch.randn(1, 3, 64, 96))


@pytest.mark.parametrize("arch", ["fcos", "yolox"])
def test_onnx_with_nms_returns_the_detections_of_predict(arch: str, tmp_path: Path) -> None:
    model = tiny_detector(arch, num_classes=4, spread=True)
    path = export_to_onnx(
        model,
        tmp_path / "det.onnx",
        torch.randn(1, 3, 96, 128),
        postprocess=True,
        dynamic_image_size=True,
    )
    session = load_onnx(path)
    assert tuple(o.name for o in session.get_outputs()) == POSTPROCESS_OUTPUT_NAMES
    max_det = model.max_detections_per_image
    generator = torch.Generator().manual_seed(1)
    for shape in [(2, 3, 96, 128), (2, 3, 160, 96)]:
        x = torch.randn(shape, generator=generator)
        boxes, scores, labels, counts = session.run(None, {"input": x.numpy()})
        assert boxes.shape == (2, max_det, 4) and scores.shape == (2, max_det)
        assert labels.shape == (2, max_det) and labels.dtype == np.int64
        predicted = model.predict(x)
        for i, det in enumerate(predicted):
            n = len(det["scores"])
            assert n > 10 and counts[i] == n, (shape, i)
            np.testing.assert_array_equal(labels[i, :n], det["labels"].numpy())
            np.testing.assert_allclose(boxes[i, :n], det["boxes"].numpy(), atol=1e-3, rtol=0)
            np.testing.assert_allclose(scores[i, :n], det["scores"].numpy(), atol=1e-5, rtol=0)
            assert (labels[i, n:] == -1).all() and (scores[i, n:] == 0).all()
            assert (boxes[i, n:] == 0).all()
        assert (boxes[..., 2] <= shape[3]).all() and (boxes[..., 3] <= shape[2]).all()


def test_eager_postprocess_equals_predict_when_few_detections() -> None:
    model = tiny_detector("fcos", num_classes=2, spread=True)
    model.score_thresh = 0.55  # few candidates: images with 0 and several detections
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        boxes, scores, labels, counts = DetectorExport(model, postprocess=True)(x)
    for i, det in enumerate(model.predict(x)):
        n = len(det["scores"])
        assert int(counts[i]) == n
        torch.testing.assert_close(boxes[i, :n], det["boxes"], atol=1e-4, rtol=0)
        assert torch.equal(labels[i, :n], det["labels"])


def test_detections_compare_whatever_the_order_of_equal_scores() -> None:
    boxes = torch.tensor([[[0.0, 0.0, 4.0, 4.0], [5.0, 5.0, 9.0, 9.0], [0.0, 0.0, 0.0, 0.0]]])
    scores = torch.tensor([[0.5, 0.5, 0.0]])
    labels = torch.tensor([[1, 0, -1]])
    counts = torch.tensor([2])
    swapped = [boxes[:, [1, 0, 2]], scores[:, [1, 0, 2]], labels[:, [1, 0, 2]], counts]
    a = canonical_detections([boxes, scores, labels, counts])
    b = canonical_detections(swapped)
    assert outputs_match(a, b, rtol=0, atol=0)
    assert a[2].tolist() == [[-1, 0, 1]]
    assert not outputs_match(a, canonical_detections([boxes + 1, scores, labels, counts]), 0, 0)


@pytest.mark.parametrize("arch", ["fcos", "yolox"])
def test_torchscript_matches_eager_within_1e_5(arch: str, tmp_path: Path) -> None:
    model = tiny_detector(arch)
    x = torch.randn(1, 3, 64, 96)
    scripted = export_to_torchscript(model, tmp_path / "det.pt", example_input=x)
    assert validate_torchscript_export(model, scripted, x)  # rtol 1e-5, atol 1e-6
    loaded = load_torchscript(tmp_path / "det.pt")
    for shape in [(1, 3, 64, 96), (2, 3, 128, 64)]:  # any batch and image size
        y = torch.randn(shape)
        with torch.no_grad():
            expected = [t for group in model(y) if group for t in group]
            got = loaded(y)
        assert len(got) == len(expected)
        for want, have in zip(expected, got, strict=True):
            assert (want - have).abs().max() <= 1e-5
    with torch.no_grad():
        model.head.cls_pred.bias.add_(1.0)
    assert not validate_torchscript_export(model, loaded, x)


def test_torchscript_with_postprocess(tmp_path: Path) -> None:
    model = tiny_detector("fcos", spread=True)
    export_to_torchscript(
        model, tmp_path / "det.pt", torch.randn(1, 3, 64, 64), optimize=False, postprocess=True
    )
    loaded = load_torchscript(tmp_path / "det.pt")
    x = torch.randn(2, 3, 96, 64)
    assert validate_torchscript_export(model, loaded, x, rtol=1e-4, atol=1e-4)
    boxes, scores, labels, counts = loaded(x)
    det = model.predict(x)[1]
    n = len(det["scores"])
    assert int(counts[1]) == n
    torch.testing.assert_close(boxes[1, :n], det["boxes"], atol=1e-3, rtol=0)


def test_torchscript_argument_errors(tmp_path: Path) -> None:
    model = tiny_detector()
    with pytest.raises(ValueError, match="example_input is required"):
        export_to_torchscript(model, tmp_path / "a.pt")
    with pytest.raises(ValueError, match="method must be 'trace' or 'script'"):
        export_to_torchscript(model, tmp_path / "a.pt", torch.randn(1, 3, 64, 64), method="jit")
    with pytest.raises(RuntimeError, match="Failed to export model to TorchScript"):
        export_to_torchscript(model, tmp_path / "a.pt", method="script")


def test_checkpoint_helpers(tmp_path: Path) -> None:
    model = tiny_detector("fcos")
    ckpt = save_checkpoint(model, tmp_path / "det.ckpt")
    x = torch.randn(1, 3, 64, 64)
    load_kwargs = {"compile_model": False}
    path = export_checkpoint_to_onnx(
        ckpt, tmp_path / "out" / "det.onnx", ObjectDetector, x, load_kwargs=load_kwargs
    )
    assert Path(path).is_file()
    assert validate_onnx_export(model, path, x)
    scripted = export_checkpoint_to_torchscript(
        ckpt, tmp_path / "det.pt", ObjectDetector, x, load_kwargs=load_kwargs
    )
    assert validate_torchscript_export(model, scripted, x)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        export_checkpoint_to_onnx(tmp_path / "missing.ckpt", tmp_path / "a.onnx", ObjectDetector, x)


def _torch_multiclass_nms(boxes, scores, iou, score_thresh):  # plain per-(image, class) loop
    import torchvision

    kept = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            idx = (scores[b, c] > score_thresh).nonzero()[:, 0]
            keep = torchvision.ops.nms(boxes[b, idx], scores[b, c, idx], iou)
            kept += [(b, c, int(i)) for i in idx[keep]]
    return kept


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the exporter's notices
def test_multiclass_nms_matches_onnx_nonmaxsuppression(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 300, 2, generator=generator) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(2, 300, 2, generator=generator) * 40], dim=-1)
    scores = torch.rand(2, 3, 300, generator=generator)
    scores[0, 1, :5] = 0.3  # exactly at the score threshold: excluded

    class NMS(torch.nn.Module):
        def forward(self, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return multiclass_nms(b, s, 0.5, 0.3, 1000)

    torch.onnx.export(
        NMS(),
        (boxes, scores),
        str(tmp_path / "nms.onnx"),
        dynamo=False,
        opset_version=17,
        input_names=["b", "s"],
    )
    session = ort.InferenceSession(str(tmp_path / "nms.onnx"))
    got_onnx = session.run(None, {"b": boxes.numpy(), "s": scores.numpy()})[0]
    got_torch = multiclass_nms(boxes, scores, 0.5, 0.3, 1000)
    expected = _torch_multiclass_nms(boxes, scores, 0.5, 0.3)
    assert sorted(map(tuple, got_onnx.tolist())) == sorted(expected)
    assert got_torch.tolist() == got_onnx.tolist()  # same grouping and order
    capped = multiclass_nms(boxes, scores, 0.5, 0.3, 2)
    assert torch.equal(capped, got_torch.reshape(-1, 3)[_first_per_group(got_torch, 2)])


def _first_per_group(kept: torch.Tensor, n: int) -> torch.Tensor:
    rows, seen = [], {}
    for i, (b, c, _) in enumerate(kept.tolist()):
        seen[(b, c)] = seen.get((b, c), 0) + 1
        if seen[(b, c)] <= n:
            rows.append(i)
    return torch.tensor(rows)
