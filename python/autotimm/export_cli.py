"""``autotimm export``: a checkpoint to ONNX or TorchScript, checked against the eager model.

Usage::

    autotimm export --ckpt_path best.ckpt                        # ONNX with NMS, checkpoint's size
    autotimm export --ckpt_path best.ckpt --image-size 480 640 --dynamic
    autotimm export --ckpt_path best.ckpt --format torchscript --no-nms --output det.pt

The file takes ``input`` float32 ``[B, 3, H, W]``, RGB in [0, 1] normalised with
the checkpoint's mean and std (printed). With ``--nms`` (the default) it returns
``boxes`` [B, D, 4] (xyxy input pixels), ``scores`` [B, D], ``labels`` [B, D]
(-1 as padding) and ``num_detections`` [B], D = the model's
``max_detections_per_image``; with ``--no-nms`` the raw head outputs
``cls_l*``, ``reg_l*`` (and ``ctr_l*`` for FCOS). The batch size is always
dynamic; ``--dynamic`` also frees height and width. After writing, the file is
run (onnxruntime / torch.jit) on two batches and compared with the model.
ONNX files carry the class names and normalisation in their metadata
(``autotimm.*`` keys).

This module imports torch only when the command runs, so ``autotimm --help``
stays fast.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CHECK_ATOL", "CHECK_RTOL", "add_parser", "run"]

#: Relative tolerance of the check after export.
CHECK_RTOL = 1e-4
#: Absolute tolerance of the check after export (boxes and distances are pixels).
CHECK_ATOL = 1e-3
_SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
_FORMAT_NAMES = {"onnx": "ONNX", "torchscript": "TorchScript"}
_DEFAULT_OPSET = 17
#: A dynamic export is also checked at (H + step, W - step).
_OTHER_SIZE_STEP = 32


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``export`` command to an ``argparse`` sub-parser set; returns its parser."""
    parser = subparsers.add_parser(
        "export",
        # one line, so that a wrong flag reports in two lines
        usage=(
            "%(prog)s --ckpt_path CKPT [--format onnx|torchscript] [--output PATH] "
            "[--image-size H [W]] [--dynamic] [--nms|--no-nms] [--opset N]"
        ),
        help="export a checkpoint to ONNX or TorchScript",
        description=(
            "Export a trained detector to ONNX or TorchScript, then check the file "
            "against the model and print where it wrote."
        ),
    )
    parser.add_argument(
        "--ckpt_path", "--ckpt-path", required=True, metavar="PATH", help="trained .ckpt file"
    )
    parser.add_argument(
        "--format", choices=tuple(_SUFFIXES), default="onnx", help="file format (default: onnx)"
    )
    parser.add_argument(
        "--output",
        default=None,
        metavar="PATH",
        help="output file (default: the checkpoint's path with .onnx or .pt)",
    )
    parser.add_argument(
        "--image-size",
        "--image_size",
        dest="image_size",
        type=int,
        nargs="+",
        metavar="N",
        default=None,
        help="input size: H W, or N for N x N (default: the checkpoint's image size)",
    )
    parser.add_argument(
        "--dynamic",
        action="store_true",
        help="let height and width vary (the batch size always does)",
    )
    parser.add_argument(
        "--nms",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decoding, NMS and the best detections in the file (default: on); "
        "--no-nms: raw head outputs",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=_DEFAULT_OPSET,
        metavar="N",
        help=f"ONNX opset (default: {_DEFAULT_OPSET})",
    )
    parser.set_defaults(run=run)
    return parser


def _user_error(message: str) -> Exception:
    from autotimm.commands.errors import UserError

    return UserError(message)


def _image_size(values: list[int] | None, default: int) -> tuple[int, int]:
    if values is None:
        return default, default
    if len(values) not in (1, 2) or any(v < 1 for v in values):
        raise _user_error(
            f"--image-size {' '.join(map(str, values))}: expected H W or N (positive integers)"
        )
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _check_arguments(args: argparse.Namespace) -> Path:
    from autotimm.export.nms import ONNX_MIN_OPSET

    ckpt = Path(args.ckpt_path)
    if not ckpt.is_file():
        raise _user_error(f"--ckpt_path {args.ckpt_path}: file not found; give a .ckpt file")
    if args.format == "onnx" and args.nms and args.opset < ONNX_MIN_OPSET:
        raise _user_error(f"--opset {args.opset}: NMS needs opset >= {ONNX_MIN_OPSET}")
    output = Path(args.output) if args.output else ckpt.with_suffix(_SUFFIXES[args.format])
    if output.resolve() == ckpt.resolve():
        raise _user_error(f"--output {output}: would overwrite the checkpoint; give another path")
    return output


def _onnx_metadata(model: Any, nms: bool, dynamic: bool) -> dict[str, str]:
    info = model.data_info
    return {
        "autotimm.class_names": json.dumps(list(info.class_names)),
        "autotimm.image_size": str(info.image_size),
        "autotimm.mean": json.dumps(list(info.mean)),
        "autotimm.std": json.dumps(list(info.std)),
        "autotimm.detection_arch": str(model.detection_arch),
        "autotimm.outputs": "detections" if nms else "head",
        "autotimm.dynamic_image_size": str(dynamic).lower(),
    }


def _write_onnx_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _check_inputs(size: tuple[int, int], dynamic: bool) -> list[Any]:
    """The export's example input, a batch of two, and (dynamic) another image size."""
    import torch

    generator = torch.Generator().manual_seed(0)
    height, width = size
    shapes = [(1, 3, height, width), (2, 3, height, width)]
    if dynamic:
        shapes.append((2, 3, height + _OTHER_SIZE_STEP, max(width - _OTHER_SIZE_STEP, 32)))
    return [torch.randn(shape, generator=generator) for shape in shapes]


def _shape(x: Any) -> str:
    return "x".join(map(str, x.shape))


def _check(output: Path, x: Any, matches: Callable[[Any], bool], other_size: bool) -> None:
    """Run the file on ``x`` and compare with the model; remove the file if it fails."""
    try:
        problem = (
            None
            if matches(x)
            else (f"does not reproduce the model (rtol {CHECK_RTOL}, atol {CHECK_ATOL})")
        )
    except Exception as exc:  # the runtime refuses the input
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        problem = f"fails ({lines[0][:200]})"
    if problem is None:
        return
    output.unlink(missing_ok=True)
    hint = (
        "the backbone fixes its input size when traced: export without --dynamic"
        if other_size
        else "rerun with --verbose and report it"
    )
    raise RuntimeError(f"the exported file {problem} on input {_shape(x)}; removed it. {hint}")


def run(args: argparse.Namespace) -> int:
    """Run ``autotimm export`` on parsed arguments; returns the exit status."""
    output = _check_arguments(args)
    from autotimm.commands.predict_source import load_detector
    from autotimm.export import (
        export_to_onnx,
        export_to_torchscript,
        load_torchscript,
        validate_onnx_export,
        validate_torchscript_export,
    )

    model = load_detector(args.ckpt_path, "cpu")
    size = _image_size(args.image_size, int(model.data_info.image_size))
    inputs = _check_inputs(size, args.dynamic)
    if args.format == "onnx":
        export_to_onnx(
            model,
            output,
            inputs[0],
            opset_version=args.opset,
            postprocess=args.nms,
            dynamic_image_size=args.dynamic,
        )
        _write_onnx_metadata(output, _onnx_metadata(model, args.nms, args.dynamic))
        runtime = "onnxruntime"
        import onnxruntime

        onnxruntime.set_default_logger_severity(4)  # failures are reported below, once

        def matches(x: Any) -> bool:
            return validate_onnx_export(model, output, x, rtol=CHECK_RTOL, atol=CHECK_ATOL)
    else:
        export_to_torchscript(model, output, inputs[0], optimize=False, postprocess=args.nms)
        exported = load_torchscript(output)
        runtime = "torch.jit"

        def matches(x: Any) -> bool:
            return validate_torchscript_export(model, exported, x, rtol=CHECK_RTOL, atol=CHECK_ATOL)

    for x in inputs:
        _check(output, x, matches, other_size=tuple(x.shape[2:]) != size)
    shapes = ", ".join(_shape(x) for x in inputs)
    info = model.data_info
    outputs = "boxes, scores, labels, num_detections" if args.nms else "raw head outputs"
    height_width = "H x W" if args.dynamic else f"{size[0]} x {size[1]}"
    print(f"Exported {_FORMAT_NAMES[args.format]} ({outputs}) to {output}")
    print(
        f"  input: float32 [B, 3, {height_width}], RGB in [0, 1] normalised with "
        f"mean {tuple(round(v, 4) for v in info.mean)}, std {tuple(round(v, 4) for v in info.std)}"
    )
    if info.class_names:
        where = " (also in the file's metadata)" if args.format == "onnx" else ""
        print(f"  labels 0..{len(info.class_names) - 1}: {', '.join(info.class_names)}{where}")
    print(f"  checked in {runtime} against the model on inputs {shapes}: outputs match")
    return 0
