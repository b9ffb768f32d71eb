"""ONNX export."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn


def _flatten(outputs: Any) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if outputs is None:
        return []
    if isinstance(outputs, (list, tuple)):
        return [t for o in outputs for t in _flatten(o)]
    if isinstance(outputs, dict):
        return [t for o in outputs.values() for t in _flatten(o)]
    raise TypeError(f"cannot export an output of type {type(outputs).__name__}")


class _FlatOutputs(nn.Module):
    """Runs a model eagerly and returns its (nested) outputs as one flat tuple."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model = self.model
        run = getattr(model, "_run_model", None)
        return tuple(_flatten(run(x) if run is not None else model(x)))


def _default_output_names(model: nn.Module, count: int) -> list[str]:
    head = getattr(model, "head", None)
    arch = getattr(model, "detection_arch", None)
    if head is not None and arch in ("fcos", "yolox"):
        groups = ("cls", "reg", "ctr") if arch == "fcos" else ("cls", "reg")
        levels = count // len(groups)
        if levels * len(groups) == count:
            return [f"{g}_l{i}" for g in groups for i in range(levels)]
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def export_to_onnx(
    model: nn.Module,
    save_path: str,
    example_input: torch.Tensor,
    opset_version: int = 17,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    wrap_model: bool = True,
    simplify: bool = False,
) -> str:
    """Export a model to ONNX (TorchScript-based exporter).

    Detection models' list outputs are flattened into named tensors
    ``cls_l0..cls_l{L-1}``, ``reg_l0..``, and ``ctr_l0..`` (FCOS only).

    Parameters
    ----------
    model : nn.Module
        Exported in eval mode (its mode is restored afterwards); compiled
        submodules are exported through their eager originals.
    save_path : str
        Output ``.onnx`` file.
    example_input : Tensor [B, 3, H, W]
    opset_version : int
    dynamic_axes : dict, optional
        Default: dimension 0 of the input and of every output is ``batch``.
    input_names, output_names : sequence of str, optional
        Default ``["images"]`` and the names above.
    wrap_model : bool
        Flatten nested outputs (needed for list outputs).
    simplify : bool
        Run ``onnxsim`` if installed (warns otherwise).

    Returns
    -------
    str
        ``save_path``.
    """
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a tensor, got {type(example_input).__name__}")
    was_training = model.training
    compiled = {}
    for name in ("backbone", "fpn", "head"):
        child = getattr(model, name, None)
        if child is not None and hasattr(child, "_orig_mod"):
            compiled[name] = child
            setattr(model, name, child._orig_mod)
    model.eval()
    try:
        module = _FlatOutputs(model) if wrap_model else model
        param = next(model.parameters(), None)
        x = example_input.to(param.device) if param is not None else example_input
        with torch.no_grad():
            count = len(_flatten(module(x)))
        names_in = list(input_names or ["images"])
        names_out = list(output_names or _default_output_names(model, count))
        if len(names_out) != count:
            raise ValueError(
                f"output_names has {len(names_out)} names but the model returns {count} tensors"
            )
        axes = dynamic_axes
        if axes is None:
            axes = {n: {0: "batch"} for n in [*names_in, *names_out]}
        torch.onnx.export(
            module,
            (x,),
            save_path,
            input_names=names_in,
            output_names=names_out,
            opset_version=opset_version,
            dynamic_axes=axes,
            dynamo=False,
        )
    finally:
        for name, child in compiled.items():
            setattr(model, name, child)
        model.train(was_training)
    if simplify:
        try:
            import onnx
            import onnxsim
        except ImportError:
            warnings.warn("simplify=True needs onnxsim; exported without it.", stacklevel=2)
        else:
            simplified, ok = onnxsim.simplify(onnx.load(save_path))
            if ok:
                onnx.save(simplified, save_path)
    return str(save_path)
