"""``MeanAveragePrecision``: torchmetrics' detection mAP, evaluated as batches arrive.

The metric takes torchmetrics' arguments and inputs and returns the same keys,
values (pycocotools' numbers) and dtypes, without needing pycocotools. Unlike
torchmetrics, which stores every box and runs pycocotools in ``compute()``,
``update()`` matches each batch natively (GIL released) and stores compact
per-detection records; ``compute()`` only accumulates them. The records are
tensor states reduced by concatenation, so they sync across processes (DDP).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from autotimm.metrics.coco import Params, _record_args, evaluate_columns

__all__ = ["MeanAveragePrecision"]

_RECORDS = ("dt_image", "dt_category", "dt_rank", "dt_score", "dt_flags", "gt_category", "gt_count")
_AREA_RNG = np.asarray(Params().areaRng, dtype=np.float64)
_AREA_LBL = list(Params().areaRngLbl)


def _threads() -> int:
    value = os.environ.get("AUTOTIMM_NUM_THREADS", "")
    try:
        return max(int(value), 0)
    except ValueError:
        return max(torch.get_num_threads(), 1)


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _validate_inputs(
    preds: Sequence[dict[str, Tensor]], target: Sequence[dict[str, Tensor]]
) -> None:
    if not isinstance(preds, Sequence):
        raise ValueError(f"Expected argument `preds` to be of type Sequence, but got {preds}")
    if not isinstance(target, Sequence):
        raise ValueError(f"Expected argument `target` to be of type Sequence, but got {target}")
    if len(preds) != len(target):
        raise ValueError(
            "Expected argument `preds` and `target` to have the same length, "
            f"but got {len(preds)} and {len(target)}"
        )
    for k in ("boxes", "scores", "labels"):
        if any(k not in p for p in preds):
            raise ValueError(f"Expected all dicts in `preds` to contain the `{k}` key")
        if not all(isinstance(p[k], Tensor) for p in preds):
            raise ValueError(f"Expected all {k} in `preds` to be of type Tensor")
    for k in ("boxes", "labels"):
        if any(k not in t for t in target):
            raise ValueError(f"Expected all dicts in `target` to contain the `{k}` key")
        if not all(isinstance(t[k], Tensor) for t in target):
            raise ValueError(f"Expected all {k} in `target` to be of type Tensor")
    for i, t in enumerate(target):
        if t["boxes"].size(0) != t["labels"].size(0):
            raise ValueError(
                f"Input 'boxes' and labels of sample {i} in targets have a different length "
                f"(expected {t['boxes'].size(0)} labels, got {t['labels'].size(0)})"
            )
    for i, p in enumerate(preds):
        if not (p["boxes"].size(0) == p["labels"].size(0) == p["scores"].size(0)):
            raise ValueError(
                f"Input 'boxes', labels and scores of sample {i} in predictions have a different "
                f"length (expected {p['boxes'].size(0)} labels and scores, "
                f"got {p['labels'].size(0)} labels and {p['scores'].size(0)})"
            )


def _to_xywh(boxes: list[Tensor], box_format: str) -> np.ndarray:
    """torchmetrics' conversion: ``box_convert(..., "xywh")`` in the boxes' dtype, then float64."""
    from torchvision.ops import box_convert

    if not boxes:
        return np.empty((0, 4), np.float64)
    if any(b.dim() != 2 for b in boxes):  # e.g. empty 1-D tensors
        boxes = [b.reshape(-1, 4) for b in boxes]
    dtypes = {b.dtype for b in boxes}
    if len(dtypes) == 1:
        cat = (torch.cat(boxes) if len(boxes) > 1 else boxes[0]).detach().cpu()
        if cat.numel() and box_format != "xywh":
            cat = box_convert(cat, in_fmt=box_format, out_fmt="xywh")
        return cat.double().numpy()
    boxes = [b.detach().cpu() for b in boxes]
    parts = [
        (
            box_convert(b, in_fmt=box_format, out_fmt="xywh")
            if b.numel() and box_format != "xywh"
            else b
        )
        .double()
        .numpy()
        for b in boxes
    ]
    return np.concatenate(parts)


def _state_array(state: list[Tensor] | Tensor) -> np.ndarray | None:
    """A list state (or its synced, concatenated tensor) as one numpy array.

    numpy, not ``torch.cat``: no intra-op thread pool on this path.
    """
    if isinstance(state, Tensor):
        return state.detach().cpu().numpy()
    if len(state) == 0:
        return None
    parts = [t.detach().cpu().numpy() for t in state]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _cat(tensors: list[Tensor], dtype: torch.dtype) -> np.ndarray:
    """Per-image 1-D tensors as one numpy array of ``dtype`` (exact conversions)."""
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    if not tensors:
        return np.empty(0, dtype=np_dtype)
    try:  # the common case: 1-D tensors of one dtype, one torch.cat
        cat = torch.cat(tensors) if len(tensors) > 1 else tensors[0]
        if cat.dim() == 1 and cat.dtype != torch.bfloat16:
            return cat.detach().cpu().numpy().astype(np_dtype, copy=False)
    except (RuntimeError, TypeError):
        pass
    return np.concatenate([t.detach().cpu().reshape(-1).to(dtype).numpy() for t in tensors])


def _optional(target: list[dict[str, Tensor]], key: str, counts: np.ndarray) -> np.ndarray:
    """An optional per-box target field as float64 (0 where absent)."""
    if not any(key in t for t in target):
        return np.zeros(int(counts.sum()), np.float64)
    return _cat(
        [t[key] if key in t else torch.zeros(int(n)) for t, n in zip(target, counts, strict=True)],
        torch.float64,
    )


def _bb_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' ``bbIou`` on xywh boxes: [D, G], crowd IoU = inter / area(dt)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.fmin(d[:, None, 2] + d[:, None, 0], g[None, :, 2] + g[None, :, 0]) - np.fmax(
            d[:, None, 0], g[None, :, 0]
        )
        h = np.fmin(d[:, None, 3] + d[:, None, 1], g[None, :, 3] + g[None, :, 1]) - np.fmax(
            d[:, None, 1], g[None, :, 1]
        )
        inter = w * h
        da = (d[:, 2] * d[:, 3])[:, None]
        union = np.where(crowd[None, :], da, da + (g[:, 2] * g[:, 3])[None, :] - inter)
        return np.where((w <= 0) | (h <= 0), 0.0, inter / union)


class MeanAveragePrecision(Metric):
    """Mean average precision and recall for object detection (COCO bbox).

    Same constructor, inputs and outputs as
    ``torchmetrics.detection.MeanAveragePrecision`` for ``iou_type="bbox"``;
    the values equal pycocotools' (torchmetrics' default backend).

    Parameters
    ----------
    box_format : {"xyxy", "xywh", "cxcywh"}
        Format of the input boxes.
    iou_type : "bbox"
        Only bounding boxes are supported.
    iou_thresholds : list of float, optional
        Default: ``torch.linspace(0.5, 0.95, 10)`` (float32 values, as torchmetrics).
    rec_thresholds : list of float, optional
        Default: ``torch.linspace(0.0, 1.0, 101)``.
    max_detection_thresholds : list of int, optional
        Exactly three values, default ``[1, 10, 100]`` (sorted).
    class_metrics : bool
        Also return ``map_per_class`` and ``mar_{max}_per_class``.
    extended_summary : bool
        Also return ``precision`` ``[T, R, K, A, M]``, ``recall`` ``[T, K, A, M]``
        and ``scores``.
    average : {"macro", "micro"}
        Average over classes, or pool all classes into one.
    backend : {"pycocotools", "faster_coco_eval"}
        Accepted for compatibility; evaluation is always native and equals
        pycocotools.
    **kwargs
        Passed to ``torchmetrics.Metric``.

    Notes
    -----
    ``update`` matches each image once (at the largest max-detection
    threshold) and stores one record per kept detection; ``compute`` sorts
    and accumulates. Images are ordered as torchmetrics orders them, also
    after a DDP gather (image-major, rank-minor), so score ties break alike.
    """

    is_differentiable: bool = False
    higher_is_better: bool = True
    full_state_update: bool = True
    plot_lower_bound: float = 0.0
    plot_upper_bound: float = 1.0
    warn_on_many_detections: bool = True

    def __init__(
        self,
        box_format: Literal["xyxy", "xywh", "cxcywh"] = "xyxy",
        iou_type: Literal["bbox"] | tuple[Literal["bbox"], ...] = "bbox",
        iou_thresholds: list[float] | None = None,
        rec_thresholds: list[float] | None = None,
        max_detection_thresholds: list[int] | None = None,
        class_metrics: bool = False,
        extended_summary: bool = False,
        average: Literal["macro", "micro"] = "macro",
        backend: Literal["pycocotools", "faster_coco_eval"] = "pycocotools",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        allowed_box_formats = ("xyxy", "xywh", "cxcywh")
        if box_format not in allowed_box_formats:
            raise ValueError(
                f"Expected argument `box_format` to be one of {allowed_box_formats} "
                f"but got {box_format}"
            )
        self.box_format = box_format
        iou_types = (iou_type,) if isinstance(iou_type, str) else tuple(iou_type)
        if any(t not in ("bbox", "segm") for t in iou_types):
            raise ValueError(
                "Expected argument `iou_type` to be one of ('segm', 'bbox') or a tuple of, "
                f"but got {iou_type}"
            )
        if iou_types != ("bbox",):
            raise ValueError(f"Only iou_type='bbox' is supported, got {iou_type}")
        self.iou_type = iou_types
        if iou_thresholds is not None and not isinstance(iou_thresholds, list):
            raise ValueError(
                "Expected argument `iou_thresholds` to either be `None` or a list of floats "
                f"but got {iou_thresholds}"
            )
        self.iou_thresholds: list[float] = (
            iou_thresholds or torch.linspace(0.5, 0.95, round((0.95 - 0.5) / 0.05) + 1).tolist()
        )
        if rec_thresholds is not None and not isinstance(rec_thresholds, list):
            raise ValueError(
                "Expected argument `rec_thresholds` to either be `None` or a list of floats "
                f"but got {rec_thresholds}"
            )
        self.rec_thresholds: list[float] = (
            rec_thresholds or torch.linspace(0.0, 1.00, round(1.00 / 0.01) + 1).tolist()
        )
        if max_detection_thresholds is not None and not isinstance(max_detection_thresholds, list):
            raise ValueError(
                "Expected argument `max_detection_thresholds` to either be `None` or a list of ints"
                f" but got {max_detection_thresholds}"
            )
        if max_detection_thresholds is not None and len(max_detection_thresholds) != 3:
            raise ValueError(
                "When providing a list of max detection thresholds it should have length 3."
                f" Got value {len(max_detection_thresholds)}"
            )
        max_det, _ = torch.sort(
            torch.tensor(max_detection_thresholds or [1, 10, 100], dtype=torch.int)
        )
        self.max_detection_thresholds: list[int] = max_det.tolist()
        if not isinstance(class_metrics, bool):
            raise ValueError("Expected argument `class_metrics` to be a boolean")
        self.class_metrics = class_metrics
        if not isinstance(extended_summary, bool):
            raise ValueError("Expected argument `extended_summary` to be a boolean")
        self.extended_summary = extended_summary
        if average not in ("macro", "micro"):
            raise ValueError(
                f"Expected argument `average` to be one of ('macro', 'micro') but got {average}"
            )
        self.average = average
        if backend not in ("pycocotools", "faster_coco_eval"):
            raise ValueError(
                "Expected argument `backend` to be one of ('pycocotools', 'faster_coco_eval') "
                f"but got {backend}"
            )
        self.backend = backend

        self._groups = ["rec"]
        if average == "micro" and class_metrics:
            self._groups.append("cls")
        for group in self._groups:
            for name in _RECORDS:
                self.add_state(f"{group}_{name}", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        if extended_summary:  # boxes for the "ious" entry
            for name in ("ext_dt", "ext_dt_image", "ext_gt", "ext_gt_image"):
                self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state(
            "num_images", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum"
        )

    # ------------------------------------------------------------------ update
    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Tensor]]) -> None:
        """Matches a batch of images and stores its evaluation records.

        Parameters
        ----------
        preds : list of dict
            Per image: ``boxes`` (N, 4) in ``box_format``, ``scores`` (N,),
            ``labels`` (N,).
        target : list of dict
            Per image: ``boxes`` (M, 4), ``labels`` (M,), optional ``iscrowd``
            (M,) and ``area`` (M,) (used when > 0, else the box area).
        """
        _validate_inputs(preds, target)
        n_img = len(preds)
        if n_img == 0:
            return
        max_det = self.max_detection_thresholds[-1]
        if self.warn_on_many_detections and any(len(p["boxes"]) > max_det for p in preds):
            warnings.warn(
                f"Encountered more than {max_det} detections in a single image. This means that "
                "certain detections with the lowest scores will be ignored, that may have an "
                "undesirable impact on performance. Please consider adjusting the "
                "`max_detection_threshold` to suit your use case. To disable this warning, set "
                "attribute class `warn_on_many_detections=False`, after initializing the metric.",
                UserWarning,
                stacklevel=2,
            )
        rank, world = _rank_and_world()
        seen = int(self.num_images)  # this process's images so far (states sync in compute)
        keys = np.arange(seen, seen + n_img, dtype=np.int64) * world + rank

        dt_counts = np.fromiter((p["labels"].shape[0] for p in preds), np.int64, n_img)
        gt_counts = np.fromiter((t["labels"].shape[0] for t in target), np.int64, n_img)
        dt_box = _to_xywh([p["boxes"] for p in preds], self.box_format)
        gt_box = _to_xywh([t["boxes"] for t in target], self.box_format)
        dt_labels = _cat([p["labels"] for p in preds], torch.int64)
        gt_labels = _cat([t["labels"] for t in target], torch.int64)
        n_dt, n_gt = len(dt_labels), len(gt_labels)
        gt_wh = gt_box[:, 2] * gt_box[:, 3]
        area = _optional(target, "area", gt_counts)
        crowd = _optional(target, "iscrowd", gt_counts)
        gt = {
            "id": np.arange(1, n_gt + 1, dtype=np.int64),
            "image_id": np.repeat(keys, gt_counts),
            "category_id": gt_labels,
            "bbox": gt_box,
            "area": np.where(area > 0, area, gt_wh),
            "iscrowd": (crowd != 0).astype(np.uint8),
        }
        dt = {
            "id": np.arange(1, n_dt + 1, dtype=np.int64),
            "image_id": np.repeat(keys, dt_counts),
            "category_id": dt_labels,
            "bbox": dt_box,
            "area": dt_box[:, 2] * dt_box[:, 3],
            "score": _cat([p["scores"] for p in preds], torch.float64),
        }
        for group in self._groups:
            micro = group == "rec" and self.average == "micro"
            if micro:
                gt = {**gt, "category_id": np.zeros(n_gt, np.int64)}
                dt = {**dt, "category_id": np.zeros(n_dt, np.int64)}
            rec = evaluate_columns(
                gt,
                dt,
                keys,
                None,
                np.asarray(self.iou_thresholds, dtype=np.float64),
                _AREA_RNG,
                max_det,
                True,
                _threads(),
            )
            for name in _RECORDS:
                getattr(self, f"{group}_{name}").append(self._state(rec[name]))
            if micro:
                gt = {**gt, "category_id": gt_labels}
                dt = {**dt, "category_id": dt_labels}
        self.labels.append(self._state(np.unique(np.concatenate([dt_labels, gt_labels]))))
        if self.extended_summary:
            ext_dt = np.column_stack([dt_box, dt["score"], dt_labels.astype(np.float64)])
            ext_gt = np.column_stack([gt_box, gt["iscrowd"], gt_labels.astype(np.float64)])
            for name, value in (
                ("ext_dt", ext_dt),
                ("ext_dt_image", dt["image_id"]),
                ("ext_gt", ext_gt),
                ("ext_gt_image", gt["image_id"]),
            ):
                getattr(self, name).append(
                    torch.from_numpy(np.ascontiguousarray(value)).to(self.device)
                )
        self.num_images += n_img

    def _state(self, arr: np.ndarray) -> Tensor:
        """A state tensor on the metric's device (states must live there for DDP)."""
        t = torch.from_numpy(arr)
        return t if self.device.type == "cpu" else t.to(self.device)

    # ----------------------------------------------------------------- compute
    def _records(self, group: str) -> dict[str, np.ndarray]:
        num_iou, num_areas = len(self.iou_thresholds), len(_AREA_RNG)
        out: dict[str, np.ndarray] = {}
        for name in _RECORDS:
            arr = _state_array(getattr(self, f"{group}_{name}"))
            if arr is None:
                arr = np.empty(0, np.float64 if name == "dt_score" else np.int64)
            if name == "dt_flags":
                arr = np.ascontiguousarray(arr, dtype=np.uint8).reshape(-1, num_areas * num_iou)
            elif name == "gt_count":
                arr = np.ascontiguousarray(arr, dtype=np.int64).reshape(-1, num_areas)
            elif name == "dt_score":
                arr = np.ascontiguousarray(arr, dtype=np.float64)
            else:
                arr = np.ascontiguousarray(arr, dtype=np.int64)
            out[name] = arr
        return out

    def _accumulate(
        self, group: str, cat_ids: np.ndarray, with_scores: bool = False
    ) -> tuple[np.ndarray, ...]:
        from autotimm import _native

        rec = self._records(group)
        return _native.coco_accumulate(
            *_record_args(rec),
            np.ascontiguousarray(cat_ids, dtype=np.int64),
            len(self.iou_thresholds),
            np.asarray(self.rec_thresholds, dtype=np.float64),
            list(self.max_detection_thresholds),
            _threads(),
            with_scores,
        )

    def _summarize(self, precision: np.ndarray, recall: np.ndarray) -> list[float]:
        from autotimm import _native

        return _native.coco_summarize(
            np.ascontiguousarray(precision),
            np.ascontiguousarray(recall),
            np.asarray(self.iou_thresholds, dtype=np.float64),
            _AREA_LBL,
            list(self.max_detection_thresholds),
        )

    def _stats_dict(self, stats: Sequence[float]) -> dict[str, Tensor]:
        mdt = self.max_detection_thresholds
        keys = [
            "map",
            "map_50",
            "map_75",
            "map_small",
            "map_medium",
            "map_large",
            f"mar_{mdt[0]}",
            f"mar_{mdt[1]}",
            f"mar_{mdt[2]}",
            "mar_small",
            "mar_medium",
            "mar_large",
        ]
        return {k: torch.tensor([v], dtype=torch.float32) for k, v in zip(keys, stats, strict=True)}

    def compute(self) -> dict[str, Tensor]:
        """Accumulates the stored records into torchmetrics' result dict."""
        labels = _state_array(self.labels)
        classes = np.empty(0, np.int64) if labels is None else np.unique(labels.astype(np.int64))
        result: dict[str, Tensor] = {}
        if int(self.num_images) == 0:
            result.update(self._stats_dict([-1.0] * 12))
        else:
            cat_ids = np.zeros(1, np.int64) if self.average == "micro" else classes
            precision, recall, scores = self._accumulate("rec", cat_ids, self.extended_summary)
            result.update(self._stats_dict(self._summarize(precision, recall)))
            if self.extended_summary:
                result["precision"] = torch.from_numpy(precision)
                result["recall"] = torch.from_numpy(recall)
                result["scores"] = torch.from_numpy(scores)
                result["ious"] = self._ious(cat_ids)
            if self.class_metrics:
                if self.average == "micro":
                    precision, recall, _ = self._accumulate("cls", classes)
                map_per_class, mar_per_class = [], []
                for k in range(len(classes)):
                    stats = self._summarize(precision[:, :, k : k + 1], recall[:, k : k + 1])
                    map_per_class.append(stats[0])
                    mar_per_class.append(stats[8])
                map_pc = torch.tensor(map_per_class, dtype=torch.float32)
                mar_pc = torch.tensor(mar_per_class, dtype=torch.float32)
            else:
                map_pc = torch.tensor([-1], dtype=torch.float32)
                mar_pc = torch.tensor([-1], dtype=torch.float32)
            result["map_per_class"] = map_pc
            result[f"mar_{self.max_detection_thresholds[-1]}_per_class"] = mar_pc
        result["classes"] = torch.tensor(classes.tolist(), dtype=torch.int32)
        return result

    def _ious(self, cat_ids: np.ndarray) -> dict[tuple[int, int], Tensor | list]:
        """pycocotools' ``COCOeval.ious`` as torchmetrics returns it: per (image,
        class) the [D, G] IoU of the score-sorted, truncated detections (float32),
        or ``[]`` when either side is empty."""
        dt = _state_array(self.ext_dt)
        gt = _state_array(self.ext_gt)
        dt = np.empty((0, 6)) if dt is None else dt.reshape(-1, 6)
        gt = np.empty((0, 6)) if gt is None else gt.reshape(-1, 6)
        dt_img = _state_array(self.ext_dt_image)
        gt_img = _state_array(self.ext_gt_image)
        dt_img = np.empty(0, np.int64) if dt_img is None else dt_img
        gt_img = np.empty(0, np.int64) if gt_img is None else gt_img
        micro = self.average == "micro"
        dt_cat = np.zeros(len(dt), np.int64) if micro else dt[:, 5].astype(np.int64)
        gt_cat = np.zeros(len(gt), np.int64) if micro else gt[:, 5].astype(np.int64)
        max_det = self.max_detection_thresholds[-1]
        out: dict[tuple[int, int], Tensor | list] = {}
        for img in range(int(self.num_images)):
            d_in, g_in = dt_img == img, gt_img == img
            for cat in cat_ids.tolist():
                d = dt[d_in & (dt_cat == cat)]
                g = gt[g_in & (gt_cat == cat)]
                if len(d) == 0 or len(g) == 0:
                    out[(img, cat)] = []
                    continue
                d = d[np.argsort(-d[:, 4], kind="mergesort")][:max_det]
                out[(img, cat)] = torch.tensor(
                    _bb_iou(d[:, :4], g[:, :4], g[:, 4] != 0), dtype=torch.float32
                )
        return out

    def plot(self, val: Any = None, ax: Any = None) -> Any:
        """Plots a result (torchmetrics' ``Metric._plot``)."""
        return self._plot(val, ax)
