"""Detection data: datasets, transforms, collate functions, the data module and
the embedded synthetic shapes dataset.

Names load lazily so ``import autotimm.data`` does not import torchvision.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "DetectionDataModule": "autotimm.data.detection_datamodule",
    "COCODetectionDataset": "autotimm.data.detection_dataset",
    "CSVDetectionDataset": "autotimm.data.detection_dataset",
    "DetectionDataError": "autotimm.data.detection_dataset",
    "detection_collate_fn": "autotimm.data.collate",
    "FCOSTargetCollate": "autotimm.data.collate",
    "DetectionTransform": "autotimm.data.transforms",
    "build_detection_transforms": "autotimm.data.transforms",
    "ShapesDataset": "autotimm.data.shapes",
    "write_shapes_coco": "autotimm.data.shapes",
    "SHAPES_CLASS_NAMES": "autotimm.data.shapes",
    "TransformConfig": "autotimm.data.transform_config",
    "list_transform_presets": "autotimm.data.transform_config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'autotimm.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
