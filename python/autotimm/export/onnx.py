"""ONNX export: export, load, export a checkpoint, validate in onnxruntime.

Signatures and behaviour of AutoTimm 0.7.34's ``autotimm.export`` helpers. A
detector is exported through :class:`~autotimm.export.detector.DetectorExport`:
raw head outputs ``cls_l0..``, ``reg_l0..``, ``ctr_l0..`` (FCOS), or, with
``postprocess=True``, the final detections ``boxes``, ``scores``, ``labels``,
``num_detections`` (decoding and one ``NonMaxSuppression`` node in the graph).

The file is written by torch's TorchScript-based exporter (``dynamo=False``,
its deprecation notice silenced): on this model the ``torch.export``-based
exporter takes 15-60 s instead of 1-5 s and, with the post-processing in the
graph, fails to keep the batch dimension dynamic.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from autotimm.export._common import (
    as_inputs,
    eval_mode,
    export_matches,
    load_checkpoint,
    model_device,
    module_to_export,
    quiet_tracing,
)
from autotimm.export.detector import DetectorExport, flatten_outputs
from autotimm.export.nms import ONNX_MIN_OPSET

__all__ = [
    "export_checkpoint_to_onnx",
    "export_to_onnx",
    "load_onnx",
    "validate_onnx_export",
]

_INSTALL_HINT = "pip install 'autotimm[onnx]' (onnx and onnxruntime)"


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(f"ONNX export needs the {module!r} package: {_INSTALL_HINT}") from exc


def _default_dynamic_axes(
    module: nn.Module,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_image_size: bool,
) -> dict[str, dict[int, str]]:
    image_axes = {2: "height", 3: "width"} if dynamic_image_size else {}
    axes = {name: {0: "batch", **image_axes} for name in input_names}
    raw_detector = isinstance(module, DetectorExport) and not module.postprocess
    for name in output_names:
        # A detector's raw maps follow the image size; other outputs only the batch.
        sizes = {2: f"{name}_height", 3: f"{name}_width"} if raw_detector and image_axes else {}
        axes[name] = {0: "batch", **sizes}
    return axes


def export_to_onnx(
    model: nn.Module,
    save_path: str | Path,
    example_input: torch.Tensor,
    opset_version: int = 17,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    wrap_model: bool = True,
    simplify: bool = False,
    postprocess: bool = False,
    dynamic_image_size: bool = False,
) -> str:
    """Export a model to an ONNX file.

    Parameters
    ----------
    model : nn.Module
        Exported in eval mode (every submodule's mode is restored afterwards);
        compiled parts are exported through their eager originals.
    save_path : str or Path
        Output ``.onnx`` file; parent folders are created.
    example_input : Tensor [B, 3, H, W] float32
    opset_version : int
        ONNX opset (>= 11 with ``postprocess``).
    dynamic_axes : dict, optional
        torch's ``dynamic_axes``. Default: the batch dimension of every input
        and output, plus height and width with ``dynamic_image_size``.
    input_names : list of str, optional
        Default ``["input"]``.
    output_names : list of str, optional
        Default for a detector: ``cls_l0..``, ``reg_l0..``, ``ctr_l0..`` (FCOS),
        or ``boxes, scores, labels, num_detections`` with ``postprocess``;
        ``["output"]`` (``output_0..`` for several) otherwise.
    wrap_model : bool
        Export a detector's network only, or flatten a model's nested outputs;
        False exports ``model`` itself.
    simplify : bool
        Run ``onnxsim`` on the file if it is installed (warns otherwise).
    postprocess : bool
        Detectors only: decoding, NMS per image and class and the best
        ``max_detections_per_image`` (D) in the graph; outputs ``boxes`` [B, D, 4]
        float32 (xyxy input pixels), ``scores`` [B, D] float32 (decreasing),
        ``labels`` [B, D] int64 and ``num_detections`` [B] int64; rows past
        ``num_detections`` are padding (0, 0, -1).
    dynamic_image_size : bool
        With the default ``dynamic_axes``, also let height and width vary.

    Returns
    -------
    str
        ``save_path``.

    Raises
    ------
    ImportError
        Without ``onnx`` / ``onnxruntime``.
    TypeError
        If ``example_input`` is not a tensor, or ``postprocess`` on a non-detector.
    ValueError
        If ``output_names`` does not name every output, or the opset is too old.
    RuntimeError
        When the exporter fails.
    """
    _require("onnx")
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a tensor, got {type(example_input).__name__}")
    if postprocess and opset_version < ONNX_MIN_OPSET:
        raise ValueError(
            f"opset_version {opset_version} is too old for postprocess=True; "
            f"expected >= {ONNX_MIN_OPSET}"
        )
    save_path = Path(save_path)
    module = module_to_export(model, wrap_model, postprocess)
    x = example_input.to(model_device(model))
    with eval_mode(model), eval_mode(module):
        with torch.inference_mode():
            count = len(flatten_outputs(module(x)))
        names_in = list(input_names or ["input"])
        if output_names is not None:
            names_out = list(output_names)
        elif isinstance(module, DetectorExport):
            names_out = module.output_names
        else:
            names_out = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
        if len(names_out) != count:
            raise ValueError(
                f"output_names has {len(names_out)} names but the model returns {count} tensors"
            )
        axes = dynamic_axes
        if axes is None:
            axes = _default_dynamic_axes(module, names_in, names_out, dynamic_image_size)
        save_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with quiet_tracing():
                torch.onnx.export(
                    module,
                    (x,),
                    str(save_path),
                    input_names=names_in,
                    output_names=names_out,
                    opset_version=opset_version,
                    dynamic_axes=axes,
                    dynamo=False,
                )
        except Exception as exc:
            raise RuntimeError(
                f"Failed to export model to ONNX (opset_version={opset_version}): {exc}"
            ) from exc
    if simplify:
        _simplify(save_path)
    return str(save_path)


def _simplify(path: Path) -> None:
    try:
        import onnxsim
    except ImportError:
        warnings.warn(
            "simplify=True needs onnx-simplifier (pip install onnxsim); exported without it.",
            stacklevel=3,
        )
        return
    onnx = _require("onnx")
    simplified, ok = onnxsim.simplify(onnx.load(str(path)))
    if ok:
        onnx.save(simplified, str(path))
    else:
        warnings.warn(
            "onnxsim could not validate the simplified graph; kept the original.", stacklevel=3
        )


def load_onnx(path: str | Path, providers: list[str] | None = None) -> Any:
    """Check an ONNX file and open an onnxruntime session on it.

    Parameters
    ----------
    path : str or Path
    providers : list of str, optional
        onnxruntime execution providers; default ``["CPUExecutionProvider"]``.

    Returns
    -------
    onnxruntime.InferenceSession
    """
    onnx = _require("onnx")
    ort = _require("onnxruntime")
    onnx.checker.check_model(onnx.load(str(path)))
    return ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])


def validate_onnx_export(
    original_model: nn.Module,
    onnx_path: str | Path,
    example_input: torch.Tensor,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> bool:
    """Whether an ONNX file run in onnxruntime reproduces the eager model.

    The model's outputs are flattened (a detector's ``(cls, reg, ctr)`` lists
    against the file's named tensors). A detector file with the post-processed
    outputs ``boxes, scores, labels, num_detections`` is compared with the
    detector's eager post-processing, each image's rows in label-then-box
    order (rows of nearly equal score may swap between runtimes). Boxes are
    pixels: compare them with an ``atol`` of about 1e-3.

    Parameters
    ----------
    original_model : nn.Module
    onnx_path : str or Path
    example_input : Tensor [B, 3, H, W] float32
    rtol, atol : float
        Tolerances of ``torch.allclose``.

    Returns
    -------
    bool
        True when every output has the same shape and is within tolerance.
    """
    (x,) = as_inputs(example_input)
    session = load_onnx(onnx_path)
    got = session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy()})
    exported = [torch.from_numpy(a) for a in got]
    return export_matches(original_model, (x,), exported, rtol=rtol, atol=atol)


def export_checkpoint_to_onnx(
    checkpoint_path: str | Path,
    save_path: str | Path,
    model_class: type[nn.Module],
    example_input: torch.Tensor,
    opset_version: int = 17,
    load_kwargs: dict[str, Any] | None = None,
    **export_kwargs: Any,
) -> str:
    """Load a Lightning checkpoint on CPU and export it to ONNX.

    Parameters
    ----------
    checkpoint_path : str or Path
        ``.ckpt`` file.
    save_path : str or Path
        Output ``.onnx`` file.
    model_class : type
        E.g. :class:`autotimm.ObjectDetector`; its ``load_from_checkpoint`` is used.
    example_input : Tensor [B, 3, H, W] float32
    opset_version : int
    load_kwargs : dict, optional
        Passed to ``model_class.load_from_checkpoint``.
    **export_kwargs
        Passed to :func:`export_to_onnx`.

    Returns
    -------
    str
        ``save_path``.
    """
    _require("onnx")
    model = load_checkpoint(checkpoint_path, model_class, load_kwargs)
    return export_to_onnx(
        model, save_path, example_input, opset_version=opset_version, **export_kwargs
    )
