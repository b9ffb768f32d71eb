"""``autotimm export``: writes the file, checks it against the model, says where it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autotimm.cli import main
from autotimm.tasks.inputs import DataInfo

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from test_export import save_checkpoint, tiny_detector  # noqa: E402

CLASS_NAMES = ("cat", "dog", "bird")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tiny_detector("fcos", num_classes=len(CLASS_NAMES), spread=True)
    model.set_data_info(DataInfo(class_names=CLASS_NAMES, image_size=96))
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "det.ckpt")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["export", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_onnx_with_nms_dynamic(checkpoint: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "out" / "det.onnx"
    status, out, err = _run(
        capsys,
        "--ckpt_path",
        str(checkpoint),
        "--output",
        str(output),
        "--image-size",
        "64",
        "96",
        "--dynamic",
    )
    assert status == 0, err
    assert f"to {output}" in out and "outputs match" in out
    assert "labels 0..2: cat, dog, bird" in out
    assert "2x3x96x64" in out  # checked at another image size
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["boxes", "scores", "labels", "num_detections"]
    meta = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert json.loads(meta["autotimm.class_names"]) == list(CLASS_NAMES)
    assert meta["autotimm.outputs"] == "detections"
    boxes, scores, labels, counts = session.run(
        None, {"input": np.random.default_rng(0).normal(size=(3, 3, 96, 160)).astype(np.float32)}
    )
    assert boxes.shape == (3, 100, 4) and counts.shape == (3,)


def test_defaults_checkpoint_size_and_path(checkpoint: Path, capsys) -> None:
    status, out, err = _run(capsys, "--ckpt_path", str(checkpoint), "--no-nms")
    expected = checkpoint.with_suffix(".onnx")
    assert status == 0, err
    assert f"to {expected}" in out and "[B, 3, 96 x 96]" in out  # the checkpoint's image size
    session = ort.InferenceSession(str(expected), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].name == "cls_l0"
    assert session.get_inputs()[0].shape[2:] == [96, 96]  # static without --dynamic


def test_torchscript(checkpoint: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "det.pt"
    status, out, err = _run(
        capsys,
        "--ckpt_path",
        str(checkpoint),
        "--format",
        "torchscript",
        "--output",
        str(output),
        "--image-size",
        "64",
        "--dynamic",
    )
    assert status == 0, err
    assert "Exported TorchScript" in out and str(output) in out
    from autotimm.export import load_torchscript

    boxes, scores, labels, counts = load_torchscript(output)(torch.randn(1, 3, 64, 64))
    assert boxes.shape == (1, 100, 4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ckpt_path", "missing.ckpt"], "--ckpt_path missing.ckpt: file not found"),
        (["--image-size", "1", "2", "3"], "--image-size 1 2 3: expected H W or N"),
        (["--opset", "10"], "--opset 10: NMS needs opset >= 11"),
        (["--format", "tflite"], "invalid choice: 'tflite'"),
    ],
)
def test_user_errors(
    argv: list[str], message: str, checkpoint: Path, tmp_path: Path, capsys
) -> None:
    if "--ckpt_path" not in argv:
        argv = ["--ckpt_path", str(checkpoint), *argv]
    status, out, err = _run(capsys, *argv, "--output", str(tmp_path / "x.onnx"))
    assert status != 0
    assert message in err and len(err.strip().splitlines()) <= 3, err
    assert not (tmp_path / "x.onnx").exists()


def test_help_lists_the_options(capsys) -> None:
    status, out, _ = _run(capsys, "--help")
    assert status == 0
    for option in (
        "--ckpt_path",
        "--format",
        "--output",
        "--image-size",
        "--dynamic",
        "--nms",
        "--no-nms",
        "--opset",
    ):
        assert option in out


def test_a_file_that_fails_a_check_is_removed(tmp_path: Path) -> None:
    from autotimm.export_cli import _check

    output = tmp_path / "det.onnx"
    output.write_bytes(b"onnx")
    x = torch.zeros(2, 3, 96, 64)
    _check(output, x, lambda _: True, other_size=True)
    assert output.exists()

    def refuse(_: torch.Tensor) -> bool:
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : broadcast 193 by 197\nmore")

    with pytest.raises(
        RuntimeError,
        match=r"fails \(\[ONNXRuntimeError\].*197\) on input "
        r"2x3x96x64; removed it. the backbone fixes its input size",
    ):
        _check(output, x, refuse, other_size=True)
    assert not output.exists()
    output.write_bytes(b"onnx")
    with pytest.raises(RuntimeError, match="does not reproduce the model.*--verbose"):
        _check(output, x, lambda _: False, other_size=False)
    assert not output.exists()
