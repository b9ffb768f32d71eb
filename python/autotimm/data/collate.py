"""Collate functions: AutoTimm's batch dict, optionally with precomputed FCOS targets.

Batch keys: ``images`` [B, 3, H, W] (padded to the largest image with zeros, i.e.
the normalised mean), ``boxes`` list of [N_i, 4] xyxy, ``labels`` list of [N_i],
``image_ids`` list of int, ``image_sizes`` int64 [B, 2] (H, W of each image
before padding: detections are clipped to it), ``orig_sizes`` int64 [B, 2] (H,
W on disk), and when
the items carry them: ``crowd_boxes`` / ``crowd_labels`` lists (ignore regions
for evaluation) and ``resized_sizes`` int64 [B, 2] (image region inside the
padded canvas). :class:`FCOSTargetCollate` adds ``targets`` = ``(cls [B, P]
int64, reg [B, P, 4] float32, ctr [B, P] float32)`` over all points of all levels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from autotimm.constants import DEFAULT_STRIDES
from autotimm.data.label_checks import check_labels

__all__ = ["FCOSTargetCollate", "detection_collate_fn"]


def _stack_padded(images: Sequence[torch.Tensor], size_divisor: int = 1) -> torch.Tensor:
    hs = [int(im.shape[-2]) for im in images]
    ws = [int(im.shape[-1]) for im in images]
    h, w = max(hs), max(ws)
    if size_divisor > 1:
        h = math.ceil(h / size_divisor) * size_divisor
        w = math.ceil(w / size_divisor) * size_divisor
    if all(x == h for x in hs) and all(x == w for x in ws):
        return torch.stack([im.as_subclass(torch.Tensor) for im in images])
    out = images[0].new_zeros((len(images), int(images[0].shape[0]), h, w))
    for i, im in enumerate(images):
        out[i, :, : im.shape[-2], : im.shape[-1]] = im
    return out.as_subclass(torch.Tensor)


def detection_collate_fn(
    batch: Sequence[dict[str, Any]], size_divisor: int = 1, num_classes: int | None = None
) -> dict[str, Any]:
    """Collate detection items into AutoTimm's batch dict.

    Parameters
    ----------
    batch:
        Items with ``image``, ``boxes``, ``labels`` and optionally ``image_id``,
        ``orig_size``, ``crowd_boxes``, ``crowd_labels``, ``resized_size``.
    size_divisor:
        Pad the batch height and width up to a multiple of this.
    num_classes:
        If given, every label must be in ``[0, num_classes)``
        (:class:`autotimm.data.label_checks.LabelRangeError` naming the image id).
    """
    if len(batch) == 0:
        raise ValueError("detection_collate_fn got an empty batch")
    images = [item["image"] for item in batch]
    out: dict[str, Any] = {
        "images": _stack_padded(images, size_divisor),
        "boxes": [
            torch.as_tensor(item["boxes"], dtype=torch.float32).reshape(-1, 4) for item in batch
        ],
        "labels": [
            torch.as_tensor(item["labels"], dtype=torch.int64).reshape(-1) for item in batch
        ],
        "image_ids": [_as_int(item.get("image_id", i)) for i, item in enumerate(batch)],
        "image_sizes": torch.tensor(
            [tuple(int(v) for v in item["image"].shape[-2:]) for item in batch], dtype=torch.int64
        ),
        "orig_sizes": torch.stack(
            [
                torch.as_tensor(
                    item.get("orig_size", item["image"].shape[-2:]), dtype=torch.int64
                ).reshape(2)
                for item in batch
            ]
        ),
    }
    if num_classes is not None:
        check_labels(out["labels"], num_classes, out["image_ids"], "batch")
    if all("crowd_boxes" in item for item in batch):
        out["crowd_boxes"] = [
            torch.as_tensor(item["crowd_boxes"], dtype=torch.float32).reshape(-1, 4)
            for item in batch
        ]
        out["crowd_labels"] = [
            torch.as_tensor(item.get("crowd_labels", torch.zeros(0)), dtype=torch.int64).reshape(-1)
            for item in batch
        ]
    if all("resized_size" in item for item in batch):
        out["resized_sizes"] = torch.stack(
            [torch.as_tensor(item["resized_size"], dtype=torch.int64).reshape(2) for item in batch]
        )
    return out


def _as_int(v: Any) -> int:
    return int(v.item()) if isinstance(v, torch.Tensor) else int(v)


class FCOSTargetCollate:
    """Collate that also assigns FCOS targets for the padded batch, in the loader worker.

    A small picklable callable, usable with ``num_workers > 0``.

    Parameters
    ----------
    strides:
        FPN strides; feature sizes are ``ceil(H / s), ceil(W / s)`` of the padded batch.
    regress_ranges:
        Per-level ``(lo, hi)`` ranges (``None`` → the defaults).
    center_sampling_radius:
        Centre sampling radius in strides (``None`` → off).
    size_divisor:
        Pad the batch to a multiple of this (see :func:`detection_collate_fn`).
    num_classes:
        If given, labels are checked against it (see :func:`detection_collate_fn`).
    """

    def __init__(
        self,
        strides: Sequence[int] = DEFAULT_STRIDES,
        regress_ranges: Sequence[Sequence[float]] | None = None,
        center_sampling_radius: float | None = None,
        size_divisor: int = 1,
        num_classes: int | None = None,
    ) -> None:
        self.strides = tuple(int(s) for s in strides)
        self.regress_ranges = (
            tuple((float(lo), float(hi)) for lo, hi in regress_ranges)
            if regress_ranges is not None
            else None
        )
        self.center_sampling_radius = center_sampling_radius
        self.size_divisor = int(size_divisor)
        self.num_classes = num_classes

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(strides={self.strides}, regress_ranges={self.regress_ranges}, "
            f"center_sampling_radius={self.center_sampling_radius})"
        )

    def __call__(self, batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        from autotimm.ops import fcos_targets

        out = detection_collate_fn(batch, self.size_divisor, self.num_classes)
        h, w = (int(v) for v in out["images"].shape[-2:])
        sizes = [(math.ceil(h / s), math.ceil(w / s)) for s in self.strides]
        out["targets"] = tuple(
            fcos_targets(
                out["boxes"],
                out["labels"],
                image_size=(h, w),
                strides=self.strides,
                regress_ranges=self.regress_ranges,
                feature_sizes=sizes,
                center_sampling_radius=self.center_sampling_radius,
            )
        )
        return out
