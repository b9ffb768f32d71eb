"""Detection confusion matrix (classes + background) and its PNG."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["confusion_matrix", "plot_confusion_matrix"]


def confusion_matrix(
    det_boxes: torch.Tensor,
    det_labels: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    num_classes: int,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """Counts of one image: rows = true class, columns = predicted class.

    Each detection is matched to at most one ground-truth box and vice versa, by
    decreasing IoU (>= ``iou_threshold``, any class). Matched pairs count at
    ``[true, predicted]``; unmatched detections at ``[K, predicted]`` (background
    row), unmatched ground truth at ``[true, K]`` (background column).

    Parameters
    ----------
    det_boxes : Tensor [D, 4] xyxy (detections already filtered by score)
    det_labels : Tensor [D] int
    gt_boxes : Tensor [G, 4] xyxy, same pixels as ``det_boxes``
    gt_labels : Tensor [G] int
    num_classes : int
    iou_threshold : float

    Returns
    -------
    ndarray [K + 1, K + 1] int64
    """
    from torchvision.ops import box_iou

    k = int(num_classes)
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    dl = det_labels.detach().cpu().long().numpy()
    gl = gt_labels.detach().cpu().long().numpy()
    matched_d = np.zeros(len(dl), dtype=bool)
    matched_g = np.zeros(len(gl), dtype=bool)
    if len(dl) and len(gl):
        iou = box_iou(det_boxes.detach().cpu().float(), gt_boxes.detach().cpu().float()).numpy()
        d_idx, g_idx = np.nonzero(iou >= iou_threshold)
        order = np.argsort(-iou[d_idx, g_idx], kind="stable")
        d_idx, g_idx = d_idx[order], g_idx[order]
        _, first_d = np.unique(d_idx, return_index=True)  # best pair per detection
        keep = np.sort(first_d)
        d_idx, g_idx = d_idx[keep], g_idx[keep]
        _, first_g = np.unique(g_idx, return_index=True)  # then best per ground truth
        keep = np.sort(first_g)
        d_idx, g_idx = d_idx[keep], g_idx[keep]
        np.add.at(matrix, (gl[g_idx], dl[d_idx]), 1)
        matched_d[d_idx] = True
        matched_g[g_idx] = True
    np.add.at(matrix, (np.full((~matched_d).sum(), k), dl[~matched_d]), 1)
    np.add.at(matrix, (gl[~matched_g], np.full((~matched_g).sum(), k)), 1)
    return matrix


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "Confusion matrix",
) -> Path:
    """Save the matrix as a PNG: counts in the cells, colours normalised per true class.

    Parameters
    ----------
    matrix : ndarray [K + 1, K + 1] int
        From :func:`confusion_matrix` (summed over images).
    class_names : sequence of str, length K
    path : output PNG
    title : str
    """
    from autotimm.metrics.plot import pyplot

    plt = pyplot()
    names = [*map(str, class_names), "background"]
    n = len(names)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, np.maximum(rows, 1), dtype=np.float64)
    side = min(max(5.0, 0.6 * n + 2.5), 18.0)
    fig, ax = plt.subplots(figsize=(side, side * 0.85), dpi=120)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(matrix[i, j])),
                    ha="center",
                    va="center",
                    color="white" if share[i, j] > 0.5 else "black",
                    fontsize=9,
                )
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out
