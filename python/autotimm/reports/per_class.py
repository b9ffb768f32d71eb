"""Per-class AP from COCO's precision array, and its text table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PerClassAP", "per_class_ap", "per_class_table"]


@dataclass(frozen=True)
class PerClassAP:
    """AP of one class (``-1`` where the class has no ground truth)."""

    name: str
    ap: float
    ap50: float
    ap75: float
    num_gt: int | None = None


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def per_class_ap(
    precision: np.ndarray,
    iou_thresholds: Sequence[float],
    class_names: Sequence[str],
    num_gt: Sequence[int] | None = None,
) -> list[PerClassAP]:
    """AP@[.5:.95], AP50 and AP75 per class, at area "all" and the largest maxDets.

    Parameters
    ----------
    precision : ndarray [T, R, K, A, M] float
        COCOeval's ``eval["precision"]`` (``-1`` = no ground truth).
    iou_thresholds : sequence of float, length T
    class_names : sequence of str, length K
    num_gt : sequence of int, optional, length K
    """
    p = np.asarray(precision)[:, :, :, 0, -1]  # [T, R, K]
    thr = np.asarray(iou_thresholds, dtype=np.float64)
    t50 = np.nonzero(np.isclose(thr, 0.5))[0]
    t75 = np.nonzero(np.isclose(thr, 0.75))[0]
    out = []
    for k, name in enumerate(class_names):
        out.append(
            PerClassAP(
                name=str(name),
                ap=_mean_valid(p[:, :, k]),
                ap50=_mean_valid(p[t50[0], :, k]) if len(t50) else -1.0,
                ap75=_mean_valid(p[t75[0], :, k]) if len(t75) else -1.0,
                num_gt=None if num_gt is None else int(num_gt[k]),
            )
        )
    return out


def per_class_table(rows: Sequence[PerClassAP]) -> str:
    """A fixed-width table: class, ground-truth boxes, AP, AP50, AP75 (``-`` = no data)."""
    width = max([5, *(len(r.name) for r in rows)])
    head = f"{'class':<{width}}  {'boxes':>6}  {'AP':>6}  {'AP50':>6}  {'AP75':>6}"
    lines = [head, "-" * len(head)]

    def fmt(v: float) -> str:
        return f"{v:6.3f}" if v >= 0 else f"{'-':>6}"

    for r in rows:
        boxes = "" if r.num_gt is None else str(r.num_gt)
        lines.append(f"{r.name:<{width}}  {boxes:>6}  {fmt(r.ap)}  {fmt(r.ap50)}  {fmt(r.ap75)}")
    return "\n".join(lines)
