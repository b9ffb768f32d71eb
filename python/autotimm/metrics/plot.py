"""Precision-recall curves (PNG) from an accumulated COCO evaluation."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["plot_class_curves", "plot_precision_recall", "pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (ImportError naming the install)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plot_precision_recall needs matplotlib; install it with "
            "`pip install matplotlib` (or `pip install 'autotimm[plot]'`)"
        ) from err
    return plt


def _mean_curve(p: np.ndarray) -> np.ndarray:
    """Mean over the last axis of entries > -1 (NaN where none)."""
    valid = p > -1
    count = valid.sum(axis=-1)
    total = np.where(valid, p, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def plot_precision_recall(
    coco_eval: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    per_class: bool = False,
    iou_thr: float | None = 0.5,
    area: str = "all",
    max_dets: int | None = None,
    class_names: Mapping[int, str] | Sequence[str] | None = None,
    max_classes: int = 20,
) -> Any:
    """Plots interpolated precision against recall from ``coco_eval.eval``.

    Parameters
    ----------
    coco_eval : COCOeval
        An evaluator after ``accumulate()`` (ours or pycocotools').
    path : str or os.PathLike, optional
        Where to save the figure as PNG.
    per_class : bool
        One curve per category (the ``max_classes`` best by AP) instead of the
        overall curves at IoU 0.50, 0.75 and averaged over 0.50:0.95.
    iou_thr : float or None
        IoU threshold of the per-class curves (``None``: mean over thresholds).
    area : str
        Area range label (``"all"``, ``"small"``, ``"medium"``, ``"large"``).
    max_dets : int, optional
        Detections per image (default: the largest ``maxDets``).
    class_names : mapping or sequence, optional
        Category names by id (default: the ground truth's ``cats`` names).
    max_classes : int
        Most curves drawn with ``per_class=True``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not getattr(coco_eval, "eval", None) or "precision" not in coco_eval.eval:
        raise ValueError("run evaluate() and accumulate() before plotting")
    plt = pyplot()
    p = coco_eval.params
    precision = np.asarray(coco_eval.eval["precision"])  # [T, R, K, A, M]
    rec_thrs = np.asarray(p.recThrs)
    labels = list(p.areaRngLbl)
    if area not in labels:
        raise ValueError(f"area {area!r} is not one of {labels}")
    a = labels.index(area)
    md = list(p.maxDets)
    m = len(md) - 1 if max_dets is None else md.index(max_dets)
    iou_thrs = np.asarray(p.iouThrs)

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    if not per_class:
        curves = [("IoU=0.50:0.95", precision[:, :, :, a, m])]
        for thr in (0.5, 0.75):
            t = np.nonzero(np.isclose(iou_thrs, thr))[0]
            if len(t):
                curves.append((f"IoU={thr:.2f}", precision[t[0], :, :, a, m][None]))
        for name, pr in curves:
            # mean over IoUs of the class-mean curve: [T, R, K] -> [R]
            per_t = _mean_curve(pr)  # [T, R]
            curve = np.nanmean(per_t, axis=0) if np.isfinite(per_t).any() else per_t[0]
            ap = np.nanmean(curve) if np.isfinite(curve).any() else float("nan")
            ax.plot(rec_thrs, curve, label=f"{name} (AP={ap:.3f})")
    else:
        if iou_thr is None:
            pr = precision[:, :, :, a, m]  # [T, R, K]
        else:
            t = np.nonzero(np.isclose(iou_thrs, iou_thr))[0]
            if not len(t):
                raise ValueError(f"iou_thr {iou_thr} is not one of params.iouThrs")
            pr = precision[t[0] : t[0] + 1, :, :, a, m]
        curves_k = np.where(pr > -1, pr, np.nan)
        with np.errstate(invalid="ignore"):
            per_k = np.nanmean(curves_k, axis=0) if pr.shape[0] > 1 else curves_k[0]  # [R, K]
        cat_ids = list(p.catIds)
        names = _class_names(coco_eval, cat_ids, class_names)
        aps = np.array(
            [
                np.nanmean(per_k[:, k]) if np.isfinite(per_k[:, k]).any() else -1.0
                for k in range(per_k.shape[1])
            ]
        )
        for k in np.argsort(-aps, kind="stable")[:max_classes]:
            if aps[k] < 0:
                continue
            ax.plot(rec_thrs, per_k[:, k], label=f"{names[k]} (AP={aps[k]:.3f})", linewidth=1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    title_iou = (
        "" if per_class and iou_thr is None else (f", IoU={iou_thr:.2f}" if per_class else "")
    )
    ax.set_title(f"Precision-recall (area={area}, maxDets={md[m]}{title_iou})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), format="png")
    return fig


def plot_class_curves(
    precision: np.ndarray,
    rec_thrs: Sequence[float],
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "Precision-recall, IoU=0.50",
    max_classes: int = 20,
) -> Any:
    """One precision-recall curve per class (the ``max_classes`` best by AP).

    Parameters
    ----------
    precision : ndarray [R, K] float
        Interpolated precision per recall threshold and class (``-1``: no data).
    rec_thrs : sequence of float, length R
    class_names : sequence of str, length K
    path : output PNG
    title : str
    max_classes : int

    Returns
    -------
    matplotlib.figure.Figure (closed after saving)
    """
    plt = pyplot()
    p = np.asarray(precision, dtype=np.float64)
    curves = np.where(p > -1, p, np.nan)
    valid = np.isfinite(curves).any(axis=0)
    aps = np.where(valid, np.nanmean(np.where(valid, curves, 0.0), axis=0), -1.0)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    for k in np.argsort(-aps, kind="stable")[:max_classes]:
        if aps[k] >= 0:
            ax.plot(rec_thrs, curves[:, k], label=f"{class_names[k]} (AP={aps[k]:.3f})")
    if valid.any():
        mean_curve = np.nanmean(curves[:, valid], axis=1)
        ax.plot(
            rec_thrs,
            mean_curve,
            color="black",
            linewidth=2.5,
            label=f"all classes (mAP={float(np.nanmean(mean_curve)):.3f})",
        )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
    plt.close(fig)
    return fig


def _class_names(
    coco_eval: Any, cat_ids: list[Any], class_names: Mapping[int, str] | Sequence[str] | None
) -> list[str]:
    if class_names is not None:
        if isinstance(class_names, Mapping):
            return [str(class_names.get(c, c)) for c in cat_ids]
        return [
            str(class_names[i]) if i < len(class_names) else str(c) for i, c in enumerate(cat_ids)
        ]
    gt = getattr(coco_eval, "cocoGt", None)
    names = {}
    if gt is not None:
        cats = getattr(gt, "_categories", None)
        if cats is None:
            cats = list(getattr(gt, "cats", {}).values())
        names = {c["id"]: c.get("name", str(c["id"])) for c in cats}
    return [str(names.get(c, c)) for c in cat_ids]
