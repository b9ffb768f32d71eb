"""Evaluation reports: per-class AP table, confusion matrix and precision-recall curves.

Shared by ``autotimm validate``/``test`` (:class:`DetectionReport`) and
``autotimm evaluate`` (:func:`per_class_table` on a COCOeval).
"""

from autotimm.reports.confusion import confusion_matrix, plot_confusion_matrix
from autotimm.reports.evaluation import DetectionReport, ReportFiles
from autotimm.reports.per_class import PerClassAP, per_class_ap, per_class_table

__all__ = [
    "DetectionReport",
    "PerClassAP",
    "ReportFiles",
    "confusion_matrix",
    "per_class_ap",
    "per_class_table",
    "plot_confusion_matrix",
]
