"""What both exporters share: the module to trace, eval mode, checkpoint loading."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from autotimm.export.detector import (
    POSTPROCESS_OUTPUT_NAMES,
    DetectorExport,
    flatten_outputs,
    is_detector,
)


class FlatOutputs(nn.Module):
    """Runs a model and returns its (nested) tensor outputs as one flat tuple."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(flatten_outputs(self.model(x)))


def module_to_export(model: nn.Module, wrap_model: bool, postprocess: bool) -> nn.Module:
    """The module the exporters trace.

    A detector becomes a :class:`DetectorExport` (its eager network, raw or
    post-processed outputs) when ``wrap_model`` or ``postprocess``; any other
    model is wrapped to flatten nested outputs when ``wrap_model``.
    """
    if is_detector(model) and (wrap_model or postprocess):
        return DetectorExport(model, postprocess=postprocess)
    if postprocess:
        raise TypeError(f"postprocess=True needs an ObjectDetector, got {type(model).__name__}")
    return FlatOutputs(model) if wrap_model else model


@contextlib.contextmanager
def quiet_tracing() -> Iterator[None]:
    """Silence the notices of tracing: torch.jit's and the TorchScript-based ONNX
    exporter's deprecation notices, and tracer warnings (the exports are checked
    at other batch and image sizes in the tests instead)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit.* is deprecated", category=FutureWarning
        )
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", module=r"torch\.onnx(\.|$)")
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode inside the block; each one's mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def load_checkpoint(
    checkpoint_path: str | Path, model_class: type[nn.Module], load_kwargs: dict[str, Any] | None
) -> nn.Module:
    """``model_class.load_from_checkpoint`` on CPU, with ``load_kwargs``."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint_path {str(path)!r} is not a file")
    loader = getattr(model_class, "load_from_checkpoint", None)
    if loader is None:
        raise TypeError(
            f"model_class must have load_from_checkpoint (a LightningModule), "
            f"got {getattr(model_class, '__name__', model_class)!r}"
        )
    return loader(str(path), map_location="cpu", **(load_kwargs or {}))


def as_inputs(example_input: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """``example_input`` as a tuple of tensors."""
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    for x in inputs:
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"example_input must be a tensor or a tuple of tensors, got {type(x).__name__}"
            )
    return inputs


def reference_outputs(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], exported_count: int
) -> tuple[list[torch.Tensor], bool]:
    """The eager outputs an export with ``exported_count`` outputs must reproduce.

    A detector export with the four post-processed outputs is compared with the
    detector's eager post-processing; anything else with ``model(*inputs)``.

    Returns
    -------
    (list of Tensor, bool)
        The outputs, flat and on CPU, and whether they are post-processed detections.
    """
    device = model_device(model)
    inputs = tuple(x.to(device) for x in inputs)
    postprocessed = False
    with eval_mode(model), torch.inference_mode():
        flat = flatten_outputs(model(*inputs))
        if is_detector(model) and len(flat) != exported_count == len(POSTPROCESS_OUTPUT_NAMES):
            flat = list(DetectorExport(model, postprocess=True)(*inputs))
            postprocessed = True
    return [t.detach().cpu() for t in flat], postprocessed


def canonical_detections(outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Post-processed detections with each image's rows sorted by label, then box.

    Rows of nearly equal score may come in either order from two runtimes; this
    order does not depend on the scores. Padding rows (label -1) come first.
    """
    boxes, scores, labels, counts = outputs
    order = torch.arange(labels.shape[1]).expand_as(labels)
    for key in (*(boxes[..., i] for i in (3, 2, 1, 0)), labels.to(boxes.dtype)):
        order = order.gather(1, torch.sort(key.gather(1, order), dim=1, stable=True).indices)
    return [
        boxes.gather(1, order[..., None].expand(-1, -1, 4)),
        scores.gather(1, order),
        labels.gather(1, order),
        counts,
    ]


def outputs_match(
    expected: list[torch.Tensor], got: list[torch.Tensor], rtol: float, atol: float
) -> bool:
    """Same number of tensors, same shapes, values within ``rtol``/``atol``."""
    if len(expected) != len(got):
        return False
    for want, have in zip(expected, got, strict=True):
        have = have.to(want.dtype) if have.dtype != want.dtype else have
        if want.shape != have.shape or not torch.allclose(want, have, rtol=rtol, atol=atol):
            return False
    return True


def export_matches(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    exported: list[torch.Tensor],
    rtol: float,
    atol: float,
) -> bool:
    """Whether the outputs of an exported file reproduce ``model`` on ``inputs``.

    Post-processed detections are compared in :func:`canonical_detections` order.
    """
    expected, postprocessed = reference_outputs(model, inputs, exported_count=len(exported))
    if postprocessed:
        expected, exported = canonical_detections(expected), canonical_detections(exported)
    return outputs_match(expected, exported, rtol=rtol, atol=atol)
