"""Evaluation reports: per-class AP table, confusion matrix and precision-recall curves.

Shared by ``autotimm validate``/``test`` (:class:`DetectionReport`) and
``autotimm evaluate`` (:func:`per_class_table`). Names resolve lazily, so the
table code loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "DetectionReport": "autotimm.reports.evaluation",
    "ReportFiles": "autotimm.reports.evaluation",
    "confusion_matrix": "autotimm.reports.confusion",
    "plot_confusion_matrix": "autotimm.reports.confusion",
    "PerClassAP": "autotimm.reports.per_class",
    "per_class_ap": "autotimm.reports.per_class",
    "per_class_table": "autotimm.reports.per_class",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autotimm.reports' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
