"""autotimm: anchor-free object detection (timm backbone -> FPN -> FCOS/YOLOX -> NMS)
as a Lightning module, with a Rust core for NMS, FCOS target assignment and COCO mAP.

Public names are imported lazily, so ``import autotimm`` stays cheap; the heavy
submodules (torch, timm, lightning) load on first use of a name that needs them.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # tasks
    "ObjectDetector": "autotimm.tasks.object_detection",
    # configs and helpers
    "FeatureBackboneConfig": "autotimm.core.backbone",
    "create_feature_backbone": "autotimm.core.backbone",
    "get_feature_channels": "autotimm.core.backbone",
    "get_feature_strides": "autotimm.core.backbone",
    "get_feature_info": "autotimm.core.backbone",
    "get_model_source": "autotimm.core.backbone",
    "list_backbones": "autotimm.core.backbone",
    "ModelSource": "autotimm.core.backbone",
    "BackboneConfig": "autotimm.core.headless_backbone",
    "create_backbone": "autotimm.core.headless_backbone",
    "get_backbone_out_features": "autotimm.core.headless_backbone",
    "list_hf_hub_backbones": "autotimm.core.headless_backbone",
    "MetricConfig": "autotimm.core.metrics",
    "MetricManager": "autotimm.core.metrics",
    "LoggingConfig": "autotimm.core.logging_config",
    "seed_everything": "autotimm.core.utils",
    "TransformConfig": "autotimm.data.transform_config",
    "list_transform_presets": "autotimm.data.transform_config",
    # losses
    "get_loss_registry": "autotimm.losses",
    "list_available_losses": "autotimm.losses",
    "register_custom_loss": "autotimm.losses",
    "LossRegistry": "autotimm.losses",
    "FocalLoss": "autotimm.losses",
    "GIoULoss": "autotimm.losses",
    "IoULoss": "autotimm.losses",
    "DIoULoss": "autotimm.losses",
    "CIoULoss": "autotimm.losses",
    "CenternessLoss": "autotimm.losses",
    "FCOSLoss": "autotimm.losses",
    # model parts
    "FPN": "autotimm.models.fpn",
    "DetectionHead": "autotimm.models.heads.fcos",
    "YOLOXHead": "autotimm.models.heads.yolox",
    "ScaleModule": "autotimm.models.heads.common",
    # data
    "DetectionDataModule": "autotimm.data.detection_datamodule",
    "COCODetectionDataset": "autotimm.data.detection_dataset",
    "CSVDetectionDataset": "autotimm.data.detection_dataset",
    "detection_collate_fn": "autotimm.data.collate",
    # metrics
    "MeanAveragePrecision": "autotimm.metrics.mean_ap",
    "COCO": "autotimm.metrics.coco",
    "COCOeval": "autotimm.metrics.coco",
    # training and export
    "AutoTrainer": "autotimm.trainer",
    "TunerConfig": "autotimm.trainer",
    "export_to_torchscript": "autotimm.export",
    "load_torchscript": "autotimm.export",
    "export_checkpoint_to_torchscript": "autotimm.export",
    "validate_torchscript_export": "autotimm.export",
    "export_to_onnx": "autotimm.export",
    "load_onnx": "autotimm.export",
    "export_checkpoint_to_onnx": "autotimm.export",
    "validate_onnx_export": "autotimm.export",
}

# AutoTimm's singular module aliases: ``import autotimm.loss`` etc.
_MODULE_ALIASES: dict[str, str] = {
    "loss": "autotimm.losses",
    "metric": "autotimm.metrics",
    "head": "autotimm.heads",
    "task": "autotimm.tasks",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def _read_version() -> str:
    """The installed distribution's version (set once, in Cargo.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("autotimm")
    except PackageNotFoundError:  # a source tree that is not installed
        return "unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read lazily: importlib.metadata is slow to import
        value = _read_version()
        globals()[name] = value
        return value
    module_name = _EXPORTS.get(name)
    if module_name is not None:
        value = getattr(importlib.import_module(module_name), name)
        globals()[name] = value
        return value
    alias = _MODULE_ALIASES.get(name)
    if alias is not None:
        module = importlib.import_module(alias)
        sys.modules[f"{__name__}.{name}"] = module
        globals()[name] = module
        return module
    raise AttributeError(f"module 'autotimm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_MODULE_ALIASES])


class _AliasFinder:
    """Lets ``import autotimm.loss`` (and friends) resolve to the real module."""

    @staticmethod
    def find_spec(fullname: str, path: Any = None, target: Any = None) -> Any:
        prefix = f"{__name__}."
        if not fullname.startswith(prefix):
            return None
        alias = _MODULE_ALIASES.get(fullname[len(prefix) :])
        if alias is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(alias))


class _AliasLoader:
    def __init__(self, target: str) -> None:
        self._target = target

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(self._target)

    def exec_module(self, module: Any) -> None:
        return None


sys.meta_path.append(_AliasFinder())

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from autotimm.core.backbone import FeatureBackboneConfig
    from autotimm.core.logging_config import LoggingConfig
    from autotimm.core.metrics import MetricConfig, MetricManager
    from autotimm.data.detection_datamodule import DetectionDataModule
    from autotimm.data.transform_config import TransformConfig
    from autotimm.losses import (
        CenternessLoss,
        FCOSLoss,
        FocalLoss,
        GIoULoss,
        get_loss_registry,
    )
    from autotimm.metrics.coco import COCO, COCOeval
    from autotimm.metrics.mean_ap import MeanAveragePrecision
    from autotimm.tasks.object_detection import ObjectDetector
    from autotimm.trainer import AutoTrainer
