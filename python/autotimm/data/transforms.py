"""Detection transforms on ``torchvision.transforms.v2`` with ``tv_tensors.BoundingBoxes``.

:class:`DetectionTransform` maps a dataset item (``image`` uint8 [3, H, W],
``boxes`` xyxy pixels, ``labels``, ``crowd_boxes``, …) to a model-ready item:

1. convert to float in [0, 1];
2. resize so the longest side is ``image_size`` (aspect ratio kept);
3. training only: horizontal flip (``hflip_prob``) and colour jitter;
4. pad right/bottom to ``image_size x image_size`` (``pad_value`` in 0..255) —
   padding on those sides leaves box coordinates unchanged;
5. normalise with the backbone's mean/std;
6. clamp boxes to the image and drop boxes that became empty or smaller than
   ``min_bbox_area``.

Boxes go through the same v2 functional kernels as the image, so they stay
aligned. The item gains ``resized_size`` ([h, w] of the image region inside the
padded canvas), used to map predictions back to the original image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "AUGMENTATION_PRESETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DetectionTransform",
    "build_detection_transforms",
    "resolve_normalization",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Training augmentation per preset: (hflip probability, colour jitter
#: (brightness, contrast, saturation, hue) or None).
AUGMENTATION_PRESETS: dict[str, tuple[float, tuple[float, float, float, float] | None]] = {
    "default": (0.5, (0.2, 0.2, 0.2, 0.0)),
    "light": (0.5, None),
    "strong": (0.5, (0.4, 0.4, 0.4, 0.05)),
    "none": (0.0, None),
}


class DetectionTransform:
    """Resize longest side + pad + (flip, colour jitter) + normalise, boxes kept exact.

    Parameters
    ----------
    image_size:
        Output side; images are resized so the longest side equals it, then padded.
    train:
        Apply the random augmentations of ``preset``.
    mean, std:
        Normalisation (RGB, 0..1 scale).
    preset:
        Augmentation preset, a key of :data:`AUGMENTATION_PRESETS`.
    pad_value:
        Padding colour in 0..255 before normalisation (114, as YOLO-style letterboxing).
    min_bbox_area:
        Boxes smaller than this after the transform (pixels²) are dropped.
    interpolation:
        ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
    pad:
        Pad to a square ``image_size``; with ``False`` the collate pads the batch.
    """

    def __init__(
        self,
        image_size: int = 640,
        train: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        preset: str = "default",
        pad_value: float = 114.0,
        min_bbox_area: float = 0.0,
        interpolation: str = "bilinear",
        pad: bool = True,
    ) -> None:
        if int(image_size) <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if preset not in AUGMENTATION_PRESETS:
            raise ValueError(
                f"augmentation preset must be one of {sorted(AUGMENTATION_PRESETS)}, got {preset!r}"
            )
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std must have 3 values, got {mean}, {std}")
        if interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(
                f"interpolation must be 'bilinear', 'bicubic' or 'nearest', got {interpolation!r}"
            )
        self.image_size = int(image_size)
        self.train = bool(train)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.preset = preset
        self.pad_value = float(pad_value)
        self.min_bbox_area = float(min_bbox_area)
        self.interpolation = interpolation
        self.pad = bool(pad)
        flip, jitter = AUGMENTATION_PRESETS[preset]
        self.hflip_prob = flip if train else 0.0
        self.color_jitter = jitter if train else None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(image_size={self.image_size}, train={self.train}, "
            f"preset={self.preset!r}, mean={self.mean}, std={self.std})"
        )

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        from torchvision import tv_tensors
        from torchvision.transforms import InterpolationMode, v2
        from torchvision.transforms.v2 import functional as TF

        image = item["image"]
        if not isinstance(image, tv_tensors.Image):
            image = tv_tensors.Image(image)
        h, w = int(image.shape[-2]), int(image.shape[-1])
        canvas = (h, w)
        boxes = tv_tensors.BoundingBoxes(
            torch.as_tensor(item["boxes"], dtype=torch.float32).reshape(-1, 4),
            format="XYXY",
            canvas_size=canvas,
        )
        crowd = item.get("crowd_boxes")
        crowd_boxes = tv_tensors.BoundingBoxes(
            torch.as_tensor(
                crowd if crowd is not None else torch.zeros(0, 4), dtype=torch.float32
            ).reshape(-1, 4),
            format="XYXY",
            canvas_size=canvas,
        )

        image = TF.to_dtype(image, torch.float32, scale=True)
        scale = self.image_size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        if (nh, nw) != (h, w):
            mode = InterpolationMode(self.interpolation)
            image = TF.resize(image, [nh, nw], interpolation=mode, antialias=True)
            boxes = TF.resize(boxes, [nh, nw])
            crowd_boxes = TF.resize(crowd_boxes, [nh, nw])

        if self.hflip_prob > 0 and torch.rand(()) < self.hflip_prob:
            image = TF.horizontal_flip(image)
            boxes = TF.horizontal_flip(boxes)
            crowd_boxes = TF.horizontal_flip(crowd_boxes)
        if self.color_jitter is not None:
            b, c, s, hue = self.color_jitter
            image = v2.ColorJitter(brightness=b, contrast=c, saturation=s, hue=hue or None)(image)

        if self.pad and (nh, nw) != (self.image_size, self.image_size):
            fill = self.pad_value / 255.0
            padding = [0, 0, self.image_size - nw, self.image_size - nh]
            image = TF.pad(image, padding, fill=fill)
            boxes = TF.pad(boxes, padding)
            crowd_boxes = TF.pad(crowd_boxes, padding)
        image = TF.normalize(image, mean=self.mean, std=self.std)

        labels = torch.as_tensor(item["labels"], dtype=torch.int64)
        box_t, keep = _sanitize(boxes, (nh, nw), self.min_bbox_area)
        crowd_t, crowd_keep = _sanitize(crowd_boxes, (nh, nw), 0.0)
        out = dict(item)
        out["image"] = image.as_subclass(torch.Tensor)
        out["boxes"] = box_t
        out["labels"] = labels[keep]
        out["crowd_boxes"] = crowd_t
        if "crowd_labels" in item:
            out["crowd_labels"] = torch.as_tensor(item["crowd_labels"], dtype=torch.int64)[
                crowd_keep
            ]
        out["resized_size"] = torch.tensor([nh, nw], dtype=torch.int64)
        return out


def _sanitize(
    boxes: torch.Tensor, size: tuple[int, int], min_area: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clamp xyxy boxes to the resized image region and keep non-empty ones."""
    b = boxes.as_subclass(torch.Tensor).clone()
    b[:, 0::2] = b[:, 0::2].clamp(0.0, float(size[1]))
    b[:, 1::2] = b[:, 1::2].clamp(0.0, float(size[0]))
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    keep = (w > 0) & (h > 0) & (w * h >= min_area)
    return b[keep].contiguous(), keep


def resolve_normalization(
    backbone: str | None = None, transform_config: Any = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std for a backbone: explicit config values, else the timm pretrained
    config of ``backbone`` (when ``use_timm_config``), else ImageNet's.

    Parameters
    ----------
    backbone:
        A timm model name (or an object with ``model_name``), or ``None``.
    transform_config:
        A :class:`autotimm.TransformConfig` (``mean``, ``std``, ``use_timm_config``).
    """
    mean = getattr(transform_config, "mean", None)
    std = getattr(transform_config, "std", None)
    use_timm = getattr(transform_config, "use_timm_config", True)
    if mean is not None and std is not None:
        return tuple(mean), tuple(std)
    t_mean, t_std = IMAGENET_MEAN, IMAGENET_STD
    name = getattr(backbone, "model_name", backbone)
    if use_timm and isinstance(name, str) and name:
        try:
            import timm

            cfg = timm.models.get_pretrained_cfg(name)
            if cfg is not None:
                t_mean, t_std = tuple(cfg.mean), tuple(cfg.std)
        except Exception:  # unknown name or timm API change: keep ImageNet's
            pass
    return tuple(mean) if mean is not None else t_mean, tuple(std) if std is not None else t_std


def build_detection_transforms(
    image_size: int = 640,
    augmentation_preset: str = "default",
    transform_config: Any = None,
    backbone: str | None = None,
    min_bbox_area: float | None = None,
) -> tuple[DetectionTransform, DetectionTransform]:
    """Training and evaluation transforms.

    A :class:`autotimm.TransformConfig` overrides ``image_size`` (its
    ``image_size``), the normalisation (``mean``/``std``/``use_timm_config``), the
    interpolation and the post-transform ``min_bbox_area``; its ``preset`` is used
    when it names a detection preset (``default``, ``light``, ``strong``, ``none``).

    Returns
    -------
    (train_transform, eval_transform)
    """
    preset = augmentation_preset or "none"
    interpolation = "bilinear"
    area = 0.0 if min_bbox_area is None else float(min_bbox_area)
    if transform_config is not None:
        image_size = int(getattr(transform_config, "image_size", image_size))
        cfg_preset = getattr(transform_config, "preset", None)
        if cfg_preset in AUGMENTATION_PRESETS:
            preset = cfg_preset
        interp = getattr(transform_config, "interpolation", interpolation)
        if interp in ("bilinear", "bicubic", "nearest"):
            interpolation = interp
        area = max(area, float(getattr(transform_config, "min_bbox_area", 0.0) or 0.0))
    mean, std = resolve_normalization(backbone, transform_config)
    common = dict(
        image_size=image_size,
        mean=mean,
        std=std,
        interpolation=interpolation,
        min_bbox_area=area,
    )
    return (
        DetectionTransform(train=True, preset=preset, **common),
        DetectionTransform(train=False, preset=preset, **common),
    )


def feature_sizes(height: int, width: int, strides: Sequence[int]) -> list[tuple[int, int]]:
    """Feature-map sizes ``(ceil(H/s), ceil(W/s))`` per stride."""
    return [(math.ceil(height / s), math.ceil(width / s)) for s in strides]
