"""Detection metrics: a streaming mAP metric and a pycocotools-compatible evaluator,
and the metric and logging configs (AutoTimm's ``autotimm.metric``).

Names are resolved lazily so ``import autotimm.metrics`` imports neither torch,
torchmetrics nor ``autotimm.core.metrics`` until one of them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "MeanAveragePrecision": "autotimm.metrics.mean_ap",
    "COCO": "autotimm.metrics.coco",
    "COCOeval": "autotimm.metrics.coco",
    "MetricConfig": "autotimm.core.metrics",
    "MetricManager": "autotimm.core.metrics",
    "LoggingConfig": "autotimm.core.logging_config",
    "plot_precision_recall": "autotimm.metrics.plot",
}

__all__ = [
    "COCO",
    "COCOeval",
    "LoggingConfig",
    "MeanAveragePrecision",
    "MetricConfig",
    "MetricManager",
    "plot_precision_recall",
]

if TYPE_CHECKING:  # pragma: no cover
    from autotimm.core.logging_config import LoggingConfig
    from autotimm.core.metrics import MetricConfig, MetricManager
    from autotimm.metrics.coco import COCO, COCOeval
    from autotimm.metrics.mean_ap import MeanAveragePrecision
    from autotimm.metrics.plot import plot_precision_recall


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autotimm.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
