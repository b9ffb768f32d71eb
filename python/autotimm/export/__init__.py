"""Export to TorchScript and ONNX, as AutoTimm's ``autotimm.export``.

- :mod:`autotimm.export.torchscript`: ``export_to_torchscript``, ``load_torchscript``,
  ``export_checkpoint_to_torchscript``, ``validate_torchscript_export``.
- :mod:`autotimm.export.onnx`: ``export_to_onnx``, ``load_onnx``,
  ``export_checkpoint_to_onnx``, ``validate_onnx_export`` (onnx and onnxruntime
  are needed when called: ``pip install 'autotimm[onnx]'``).
- :mod:`autotimm.export.detector`: the traced graph of a detector, raw head
  outputs or, with ``postprocess=True``, final padded detections.
- :mod:`autotimm.export.nms`: multi-class NMS exported as ONNX ``NonMaxSuppression``.
"""

from autotimm.export.detector import POSTPROCESS_OUTPUT_NAMES, DetectorExport
from autotimm.export.onnx import (
    export_checkpoint_to_onnx,
    export_to_onnx,
    load_onnx,
    validate_onnx_export,
)
from autotimm.export.torchscript import (
    export_checkpoint_to_torchscript,
    export_to_torchscript,
    load_torchscript,
    validate_torchscript_export,
)

__all__ = [
    "POSTPROCESS_OUTPUT_NAMES",
    "DetectorExport",
    "export_checkpoint_to_onnx",
    "export_checkpoint_to_torchscript",
    "export_to_onnx",
    "export_to_torchscript",
    "load_onnx",
    "load_torchscript",
    "validate_onnx_export",
    "validate_torchscript_export",
]
