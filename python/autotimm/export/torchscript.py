"""TorchScript export: export, load, export a checkpoint, validate against the eager model.

Signatures and behaviour of AutoTimm 0.7.34's ``autotimm.export`` helpers. A
detector is traced through :class:`~autotimm.export.detector.DetectorExport`:
the file returns AutoTimm's flat tuple ``(cls_l0.., reg_l0.., ctr_l0..)``, or,
with ``postprocess=True``, ``(boxes, scores, labels, num_detections)``. Traced
files accept any batch and image size.
"""

from __future__ import annotations

import warnings
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
from autotimm.export.detector import flatten_outputs

__all__ = [
    "export_checkpoint_to_torchscript",
    "export_to_torchscript",
    "load_torchscript",
    "validate_torchscript_export",
]

_METHODS = ("trace", "script")


def export_to_torchscript(
    model: nn.Module,
    save_path: str | Path,
    example_input: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
    method: str = "trace",
    optimize: bool = True,
    wrap_model: bool = True,
    postprocess: bool = False,
) -> torch.jit.ScriptModule:
    """Export a model to a TorchScript file.

    Parameters
    ----------
    model : nn.Module
        Exported in eval mode (every submodule's mode is restored afterwards);
        compiled parts are exported through their eager originals.
    save_path : str or Path
        Output file (``.pt``); parent folders are created.
    example_input : Tensor [B, 3, H, W] float32, or a tuple of tensors
        Required for ``method="trace"``.
    method : {"trace", "script"}
        ``torch.jit.trace`` (recommended) or ``torch.jit.script``.
    optimize : bool
        Return the module frozen for inference (``torch.jit.freeze``, parameters
        inlined) but without numeric rewrites, so that it reproduces the eager
        model exactly; AutoTimm's ``torch.jit.optimize_for_inference`` also
        folds BatchNorm into convolutions, which moves outputs by ~2e-5. The
        file always holds the unfrozen module, which loads everywhere.
    wrap_model : bool
        Export a detector's network only (:class:`DetectorExport`), or flatten a
        model's nested outputs; False exports ``model`` itself.
    postprocess : bool
        Detectors only: decoding, NMS and the best ``max_detections_per_image``
        in the file, which then returns ``boxes`` [B, D, 4], ``scores`` [B, D],
        ``labels`` [B, D] (-1 as padding) and ``num_detections`` [B].

    Returns
    -------
    torch.jit.ScriptModule
        The exported module (optimised when ``optimize``).

    Raises
    ------
    ValueError
        On an unknown ``method``, or ``method="trace"`` without ``example_input``.
    TypeError
        If ``example_input`` is not a tensor or a tuple of tensors, or
        ``postprocess`` is asked of a model that is not a detector.
    RuntimeError
        When TorchScript cannot compile or trace the model.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be 'trace' or 'script', got {method!r}")
    inputs: tuple[torch.Tensor, ...] = ()
    if method == "trace":
        if example_input is None:
            raise ValueError(
                "example_input is required when method='trace': give a tensor [B, 3, H, W] "
                "of the expected input shape"
            )
        device = model_device(model)
        inputs = tuple(x.to(device) for x in as_inputs(example_input))
    save_path = Path(save_path)
    module = module_to_export(model, wrap_model, postprocess)
    with eval_mode(model), eval_mode(module):
        try:
            with torch.inference_mode(), quiet_tracing():
                if method == "trace":
                    scripted = torch.jit.trace(module, inputs)
                else:
                    scripted = torch.jit.script(module)
        except Exception as exc:
            raise RuntimeError(
                f"Failed to export model to TorchScript with method={method!r}: {exc}. "
                "Use method='trace' with an example_input of the expected shape."
            ) from exc
    save_path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_tracing():
        torch.jit.save(scripted, str(save_path))
    if optimize:
        try:
            with quiet_tracing():
                scripted = torch.jit.freeze(scripted, optimize_numerics=False)
        except RuntimeError as exc:
            warnings.warn(
                f"torch.jit.freeze failed ({exc}); returning the unfrozen module. "
                "optimize=False skips this step.",
                stacklevel=2,
            )
    return scripted


def load_torchscript(
    path: str | Path, device: str | torch.device = "cpu"
) -> torch.jit.ScriptModule:
    """Load a TorchScript file in eval mode.

    Parameters
    ----------
    path : str or Path
        A file written by :func:`export_to_torchscript` (or ``torch.jit.save``).
    device : str or torch.device
        Where its tensors go.

    Returns
    -------
    torch.jit.ScriptModule
    """
    # Files exported with postprocess=True call autotimm::multiclass_nms.
    import autotimm.export.nms  # noqa: F401

    with quiet_tracing():
        module = torch.jit.load(str(path), map_location=device)
    module.eval()
    return module


def export_checkpoint_to_torchscript(
    checkpoint_path: str | Path,
    save_path: str | Path,
    model_class: type[nn.Module],
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    method: str = "trace",
    load_kwargs: dict[str, Any] | None = None,
    **export_kwargs: Any,
) -> torch.jit.ScriptModule:
    """Load a Lightning checkpoint on CPU and export it to TorchScript.

    Parameters
    ----------
    checkpoint_path : str or Path
        ``.ckpt`` file.
    save_path : str or Path
        Output ``.pt`` file.
    model_class : type
        E.g. :class:`autotimm.ObjectDetector`; its ``load_from_checkpoint`` is used.
    example_input : Tensor [B, 3, H, W] float32
    method : {"trace", "script"}
    load_kwargs : dict, optional
        Passed to ``model_class.load_from_checkpoint``.
    **export_kwargs
        Passed to :func:`export_to_torchscript`.

    Returns
    -------
    torch.jit.ScriptModule
    """
    model = load_checkpoint(checkpoint_path, model_class, load_kwargs)
    return export_to_torchscript(
        model, save_path, example_input=example_input, method=method, **export_kwargs
    )


def validate_torchscript_export(
    original_model: nn.Module,
    scripted_model: torch.jit.ScriptModule,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> bool:
    """Whether a TorchScript module reproduces the eager model.

    Both outputs are flattened (a detector's ``(cls, reg, ctr)`` lists against
    the file's flat tuple). A module exported with ``postprocess=True`` (four
    outputs ``boxes, scores, labels, num_detections``) is compared with the
    detector's eager post-processing, each image's rows in label-then-box
    order (rows of nearly equal score may swap between runtimes). Boxes are
    pixels: compare them with an ``atol`` of about 1e-3.

    Parameters
    ----------
    original_model : nn.Module
    scripted_model : torch.jit.ScriptModule
    example_input : Tensor [B, 3, H, W] float32
    rtol, atol : float
        Tolerances of ``torch.allclose``.

    Returns
    -------
    bool
        True when every output has the same shape and is within tolerance.
    """
    inputs = as_inputs(example_input)
    device = model_device(original_model)
    scripted_model.eval()
    with torch.inference_mode():
        got = flatten_outputs(scripted_model(*(x.to(device) for x in inputs)))
    exported = [t.detach().cpu() for t in got]
    return export_matches(original_model, inputs, exported, rtol=rtol, atol=atol)
