"""The report written after ``validate`` / ``test``: per-class AP, confusion matrix, PR curves.

:class:`DetectionReport` collects detections and ground truth batch by batch (in
the same pixels, e.g. the network input), then computes COCO AP with
:class:`autotimm.MeanAveragePrecision` and writes

* ``<stage>_per_class_ap.txt`` — the table also printed on the console,
* ``<stage>_confusion_matrix.png`` — counts at IoU 0.5 for detections scoring at
  least ``score_threshold``,
* ``<stage>_pr_curves.png`` — per-class precision-recall at IoU 0.5.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from autotimm.reports.confusion import confusion_matrix, plot_confusion_matrix
from autotimm.reports.per_class import PerClassAP, per_class_ap, per_class_table

__all__ = ["DetectionReport", "ReportFiles"]


@dataclass
class ReportFiles:
    """What :meth:`DetectionReport.write` produced."""

    table: str
    rows: list[PerClassAP]
    table_path: Path
    confusion_matrix_path: Path | None = None
    pr_curves_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        """Where each file went, one line each."""
        lines = [f"  per-class AP table: {self.table_path}"]
        if self.confusion_matrix_path is not None:
            lines.append(f"  confusion matrix:   {self.confusion_matrix_path}")
        if self.pr_curves_path is not None:
            lines.append(f"  PR curves:          {self.pr_curves_path}")
        return lines + [f"  note: {n}" for n in self.notes]


class DetectionReport:
    """Accumulates detections and targets; writes the evaluation report.

    Parameters
    ----------
    class_names : sequence of str
        Name of each contiguous label.
    score_threshold : float
        Detections counted in the confusion matrix score at least this.
    iou_threshold : float
        IoU of a match in the confusion matrix.
    confusion : bool
        Draw the confusion matrix.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        score_threshold: float = 0.3,
        iou_threshold: float = 0.5,
        confusion: bool = True,
    ) -> None:
        from autotimm.metrics.mean_ap import MeanAveragePrecision

        self.class_names = [str(n) for n in class_names]
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.confusion = bool(confusion)
        self.metric = MeanAveragePrecision(box_format="xyxy", extended_summary=True)
        k = len(self.class_names)
        self.matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
        self.num_gt = np.zeros(k, dtype=np.int64)

    def update(
        self,
        detections: Sequence[dict[str, torch.Tensor]],
        gt_boxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
    ) -> None:
        """Add a batch: per image ``{"boxes", "scores", "labels"}`` and its ground truth."""
        k = len(self.class_names)
        dets = [
            {
                "boxes": d["boxes"].detach().float().cpu(),
                "scores": d["scores"].detach().float().cpu(),
                "labels": d["labels"].detach().long().cpu(),
            }
            for d in detections
        ]
        targets = [
            {"boxes": b.detach().float().cpu(), "labels": lab.detach().long().cpu()}
            for b, lab in zip(gt_boxes, gt_labels, strict=True)
        ]
        self.metric.update(dets, targets)
        for det, tgt in zip(dets, targets, strict=True):
            self.num_gt += np.bincount(tgt["labels"].numpy(), minlength=k)[:k]
            if self.confusion:
                keep = det["scores"] >= self.score_threshold
                self.matrix += confusion_matrix(
                    det["boxes"][keep],
                    det["labels"][keep],
                    tgt["boxes"],
                    tgt["labels"],
                    k,
                    self.iou_threshold,
                )

    def sync(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Sum the confusion matrix and box counts over processes (DDP).

        ``reduce_sum`` sums a tensor over processes (e.g. Lightning's
        ``strategy.reduce(t, reduce_op="sum")``); the AP metric syncs itself in
        :meth:`compute`, which every process must call.
        """
        self.matrix = reduce_sum(torch.from_numpy(self.matrix)).cpu().numpy().astype(np.int64)
        self.num_gt = reduce_sum(torch.from_numpy(self.num_gt)).cpu().numpy().astype(np.int64)

    def write(self, output_dir: str | os.PathLike[str], stage: str) -> ReportFiles:
        """Compute the AP and write the table and PNGs under ``output_dir``."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        k = len(self.class_names)
        result = self.metric.compute()
        notes: list[str] = []
        precision = result.get("precision")
        if isinstance(precision, torch.Tensor) and precision.dim() == 5:
            full = -np.ones((*precision.shape[:2], k, *precision.shape[3:]), dtype=np.float64)
            for col, cls in enumerate(result["classes"].tolist()):
                if 0 <= cls < k:
                    full[:, :, cls] = precision[:, :, col].numpy()
        else:  # no image evaluated
            full = -np.ones((10, 101, k, 4, 3), dtype=np.float64)
        iou_thrs = np.linspace(0.5, 0.95, full.shape[0])
        rows = per_class_ap(full, iou_thrs, self.class_names, self.num_gt.tolist())
        table = per_class_table(rows)
        table_path = out / f"{stage}_per_class_ap.txt"
        table_path.write_text(table + "\n")
        files = ReportFiles(table=table, rows=rows, table_path=table_path, notes=notes)
        try:
            from autotimm.metrics.plot import plot_class_curves

            pr_path = out / f"{stage}_pr_curves.png"
            plot_class_curves(
                full[0, :, :, 0, -1],
                np.linspace(0, 1, full.shape[1]),
                self.class_names,
                pr_path,
                title=f"{stage}: precision-recall, IoU=0.50",
            )
            files.pr_curves_path = pr_path
            if self.confusion:
                files.confusion_matrix_path = plot_confusion_matrix(
                    self.matrix,
                    self.class_names,
                    out / f"{stage}_confusion_matrix.png",
                    title=f"{stage}: confusion matrix (IoU>={self.iou_threshold:.2f}, "
                    f"score>={self.score_threshold:.2f})",
                )
        except ImportError as err:
            notes.append(f"no PNGs: {err}")
        return files
