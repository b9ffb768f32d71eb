"""What the exporters trace: a detector's network, optionally with its post-processing.

:class:`DetectorExport` holds the eager backbone, FPN and head of an
:class:`autotimm.ObjectDetector` (never compiled wrappers, metrics or losses)
and returns either

* the raw head outputs, flattened: ``cls_l0..``, ``reg_l0..`` and, for FCOS,
  ``ctr_l0..`` (AutoTimm's export layout), or
* with ``postprocess=True``, the final detections of each image, padded to the
  model's ``max_detections_per_image`` (``D``):

  ========================  ======================  =====================================
  output                    shape, dtype            content
  ========================  ======================  =====================================
  ``boxes``                 [B, D, 4] float32       xyxy pixels of the input, 0 as padding
  ``scores``                [B, D] float32          decreasing, 0 as padding
  ``labels``                [B, D] int64            class index, -1 as padding
  ``num_detections``        [B] int64               valid rows of each image
  ========================  ======================  =====================================

The post-processing is what ``predict`` runs,
:func:`autotimm.models.postprocess.postprocess_detections` (torchvision's FCOS
``postprocess_detections``, with its score function), written with fixed-size
tensors so that it traces for any batch and image size: per level the
``pre_nms_top_k`` best (point, class) pairs, scores strictly
above ``score_thresh``, boxes decoded from LTRB around the cell centres and
clipped to the image, NMS per image and class (:func:`multiclass_nms`, one ONNX
``NonMaxSuppression`` node), then the ``max_detections_per_image`` best of each
image. Thresholds and sizes are the model's at export time.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from autotimm.export.nms import multiclass_nms
from autotimm.models.postprocess import _scores as level_scores
from autotimm.ops.boxes import level_points, ltrb_to_xyxy

__all__ = [
    "POSTPROCESS_OUTPUT_NAMES",
    "DetectorExport",
    "flatten_outputs",
    "is_detector",
    "raw_output_names",
]

#: Output names of an export with ``postprocess=True``, in order.
POSTPROCESS_OUTPUT_NAMES: tuple[str, ...] = ("boxes", "scores", "labels", "num_detections")

#: Score given to candidates that are not detections (below any threshold >= 0).
_INVALID_SCORE = -1.0
#: How centerness enters the score, as in ``ObjectDetector.predict``: sqrt(cls * ctr).
_QUALITY_MODE = "sqrt"


def is_detector(model: nn.Module) -> bool:
    """Whether ``model`` is built like :class:`autotimm.ObjectDetector`."""
    return all(hasattr(model, name) for name in ("backbone", "fpn", "head", "detection_arch"))


def flatten_outputs(outputs: Any) -> list[torch.Tensor]:
    """The tensors of nested tuples/lists/dicts, depth first (None skipped)."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if outputs is None:
        return []
    if isinstance(outputs, (list, tuple)):
        return [t for o in outputs for t in flatten_outputs(o)]
    if isinstance(outputs, dict):
        return [t for o in outputs.values() for t in flatten_outputs(o)]
    raise TypeError(f"cannot export an output of type {type(outputs).__name__}")


def raw_output_names(detection_arch: str, num_levels: int) -> list[str]:
    """``cls_l0..``, ``reg_l0..`` and (FCOS) ``ctr_l0..`` for ``num_levels`` levels."""
    groups = ("cls", "reg", "ctr") if detection_arch == "fcos" else ("cls", "reg")
    return [f"{group}_l{level}" for group in groups for level in range(num_levels)]


def _eager(module: nn.Module) -> nn.Module:
    """The original of a ``torch.compile`` wrapper (the module itself otherwise)."""
    return getattr(module, "_orig_mod", module)


class DetectorExport(nn.Module):
    """A detector's inference graph, ready for ``torch.jit.trace`` / ``torch.onnx.export``.

    Parameters
    ----------
    model : ObjectDetector
        Shares its (eager) backbone, FPN and head; reads ``detection_arch``,
        ``strides``, ``num_classes`` and, for ``postprocess=True``,
        ``score_thresh``, ``nms_thresh``, ``pre_nms_top_k`` and
        ``max_detections_per_image``.
    postprocess : bool
        Return final detections (see the module docstring) instead of the raw
        head outputs.

    Call
    ----
    images : Tensor [B, 3, H, W] float32 (normalised like the training data)
    """

    def __init__(self, model: Any, postprocess: bool = False) -> None:
        super().__init__()
        if not is_detector(model):
            raise TypeError(
                "model must be an ObjectDetector (backbone, fpn, head, detection_arch), "
                f"got {type(model).__name__}"
            )
        self.backbone = _eager(model.backbone)
        self.fpn = _eager(model.fpn)
        self.head = _eager(model.head)
        self.detection_arch = str(model.detection_arch)
        self.strides = tuple(int(s) for s in model.strides)
        self.num_classes = int(model.num_classes)
        self.postprocess = bool(postprocess)
        self.score_thresh = float(model.score_thresh)
        self.nms_thresh = float(model.nms_thresh)
        self.pre_nms_top_k = int(model.pre_nms_top_k)
        self.max_detections = int(model.max_detections_per_image)

    @property
    def output_names(self) -> list[str]:
        """Names of the outputs, in order."""
        if self.postprocess:
            return list(POSTPROCESS_OUTPUT_NAMES)
        return raw_output_names(self.detection_arch, len(self.strides))

    def head_outputs(
        self, images: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor] | None]:
        """``(cls, reg, ctr)`` per level as :meth:`ObjectDetector.forward` returns them."""
        outputs = self.head(self.fpn(self.backbone(images)))
        ctr = list(outputs[2]) if self.detection_arch == "fcos" else None
        return list(outputs[0]), list(outputs[1]), ctr

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cls_out, reg_out, ctr_out = self.head_outputs(images)
        if not self.postprocess:
            return (*cls_out, *reg_out, *(ctr_out or []))
        return self.detections(images, cls_out, reg_out, ctr_out)

    # ------------------------------------------------------------ post-processing
    def _level_candidates(
        self,
        level: int,
        cls: torch.Tensor,
        reg: torch.Tensor,
        ctr: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``pre_nms_top_k`` best (point, class) pairs of one level.

        Returns boxes [B, k, 4] (not clipped), scores [B, k] (``_INVALID_SCORE``
        for padding when the level has fewer pairs) and labels [B, k] int64.
        """
        batch, num_classes = cls.shape[0], self.num_classes
        top_k = self.pre_nms_top_k
        scores = level_scores(cls, ctr, _QUALITY_MODE)  # [B, hw * C], point-major
        # Padding to at least top_k pairs keeps k fixed whatever the level's size.
        padding = scores.new_full((1, 1), _INVALID_SCORE).expand(batch, top_k)
        scores, pair = torch.cat([scores, padding], dim=1).topk(top_k, dim=1)
        point = pair // num_classes
        labels = pair - point * num_classes
        pad_points = top_k // num_classes + 1  # points past the end, for padding pairs
        centres = level_points(
            [(cls.shape[2], cls.shape[3])], [self.strides[level]], device=cls.device
        )
        centres = torch.cat([centres, centres.new_zeros(pad_points, 2)], dim=0)[point]
        ltrb = reg.float().flatten(2).transpose(1, 2)  # [B, hw, 4]
        ltrb = torch.cat([ltrb, ltrb.new_zeros(1, 1, 4).expand(batch, pad_points, 4)], dim=1)
        ltrb = ltrb.gather(1, point[..., None].expand(-1, -1, 4))
        return ltrb_to_xyxy(centres, ltrb), scores, labels

    def detections(
        self,
        images: torch.Tensor,
        cls_out: list[torch.Tensor],
        reg_out: list[torch.Tensor],
        ctr_out: list[torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded final detections ``(boxes, scores, labels, num_detections)``."""
        candidates = [
            self._level_candidates(level, cls, reg, None if ctr_out is None else ctr_out[level])
            for level, (cls, reg) in enumerate(zip(cls_out, reg_out, strict=True))
        ]
        boxes = torch.cat([c[0] for c in candidates], dim=1)  # [B, N, 4]
        scores = torch.cat([c[1] for c in candidates], dim=1)  # [B, N]
        labels = torch.cat([c[2] for c in candidates], dim=1)  # [B, N]
        # Clip to the image; the size is read from the input so it stays dynamic.
        one = images.new_ones(())
        width, height = one * images.shape[3], one * images.shape[2]
        boxes = torch.minimum(boxes.clamp(min=0), torch.stack([width, height, width, height]))

        classes = torch.arange(self.num_classes, device=labels.device)
        valid = scores > self.score_thresh
        # Score of each candidate for each class: its own class only. [B, C, N]
        class_scores = torch.where(
            (labels[:, None, :] == classes[None, :, None]) & valid[:, None, :],
            scores[:, None, :],
            _INVALID_SCORE,
        )
        kept = multiclass_nms(
            boxes, class_scores, self.nms_thresh, self.score_thresh, self.max_detections
        )
        image, label, box = kept[:, 0], kept[:, 1], kept[:, 2]
        kept_scores = torch.full_like(class_scores, _INVALID_SCORE)
        kept_scores[image, label, box] = class_scores[image, label, box]

        # The best max_detections kept (class, candidate) pairs of each image;
        # padding columns keep k fixed when an image has fewer pairs.
        num_candidates = class_scores.shape[2]
        batch = images.shape[0]
        padding = kept_scores.new_full((1, 1), _INVALID_SCORE).expand(batch, self.max_detections)
        flat = torch.cat([kept_scores.flatten(1), padding], dim=1)
        out_scores, pair = flat.topk(self.max_detections, dim=1)
        found = out_scores > self.score_thresh
        out_labels = torch.where(found, pair // num_candidates, -1)
        candidate = torch.where(found, pair % num_candidates, 0)
        out_boxes = boxes.gather(1, candidate[..., None].expand(-1, -1, 4))
        out_boxes = torch.where(found[..., None], out_boxes, 0.0)
        out_scores = torch.where(found, out_scores, 0.0)
        return out_boxes, out_scores, out_labels, found.sum(dim=1)
