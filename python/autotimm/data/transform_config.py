"""One configuration for training and inference image transforms."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

_PRESETS: dict[str, tuple[str, ...]] = {
    "torchvision": ("default", "autoaugment", "randaugment", "trivialaugment", "light"),
    "albumentations": ("default", "strong", "light"),
}
#: What each preset does to a detection training image (see ``data.transforms``).
_PRESET_DESCRIPTIONS: dict[str, str] = {
    "default": "HorizontalFlip, ColorJitter(0.2, 0.2, 0.2)",
    "light": "HorizontalFlip only",
    "strong": "HorizontalFlip, ColorJitter(0.4, 0.4, 0.4, hue 0.05)",
    "autoaugment": "classification preset; detection keeps the augmentation_preset of the data",
    "randaugment": "classification preset; detection keeps the augmentation_preset of the data",
    "trivialaugment": "classification preset; detection keeps the augmentation_preset of the data",
}
_BBOX_FORMATS = ("coco", "pascal_voc", "yolo", "xyxy", "xywh", "cxcywh")


@dataclass
class TransformConfig:
    """Transforms of a task and its data module.

    Parameters
    ----------
    preset : str
        Augmentation preset (see :func:`list_transform_presets`).
    backend : {"torchvision", "albumentations"}
    image_size : int
        Side of the square model input, > 0.
    use_timm_config : bool
        Take mean / std / interpolation / crop_pct from the backbone's timm
        pretrained config, unless given here.
    mean, std : 3-tuples of float, optional
        Normalisation; override the timm config.
    interpolation : str
        Resize interpolation (``bicubic``, ``bilinear``, ``nearest``).
    crop_pct : float
        Centre-crop fraction for classification eval, in (0, 1].
    min_bbox_area, min_visibility : float
        Boxes smaller or less visible after augmentation are dropped (>= 0).
    bbox_format : str
        Box format of the dataset annotations (``coco`` = xywh).
    ignore_index : int
        Segmentation ignore label.
    randaugment_num_ops, randaugment_magnitude : int
        RandAugment settings.
    """

    preset: str = "default"
    backend: str = "torchvision"
    image_size: int = 224
    use_timm_config: bool = True
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    min_bbox_area: float = 0.0
    min_visibility: float = 0.0
    bbox_format: str = "coco"
    ignore_index: int = 255
    randaugment_num_ops: int = 2
    randaugment_magnitude: int = 9

    def __post_init__(self) -> None:
        if self.backend not in _PRESETS:
            raise ValueError(f"backend must be one of {sorted(_PRESETS)}, got {self.backend!r}")
        if self.preset not in _PRESETS[self.backend]:
            raise ValueError(
                f"preset {self.preset!r} is not a {self.backend} preset; expected one of "
                f"{list(_PRESETS[self.backend])}"
            )
        if not isinstance(self.image_size, int) or self.image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                value = tuple(float(v) for v in value)
                if len(value) != 3:
                    raise ValueError(f"{name} must have 3 values (RGB), got {value!r}")
                setattr(self, name, value)
        if self.std is not None and any(v <= 0 for v in self.std):
            raise ValueError(f"std must be positive, got {self.std!r}")
        if self.min_bbox_area < 0 or not 0.0 <= self.min_visibility <= 1.0:
            raise ValueError(
                f"min_bbox_area must be >= 0 and min_visibility in [0, 1], got "
                f"{self.min_bbox_area!r} and {self.min_visibility!r}"
            )
        if self.bbox_format not in _BBOX_FORMATS:
            raise ValueError(
                f"bbox_format must be one of {list(_BBOX_FORMATS)}, got {self.bbox_format!r}"
            )
        if self.randaugment_num_ops < 0 or self.randaugment_magnitude < 0:
            raise ValueError(
                "randaugment_num_ops and randaugment_magnitude must be >= 0, got "
                f"{self.randaugment_num_ops!r} and {self.randaugment_magnitude!r}"
            )

    def with_overrides(self, **kwargs: Any) -> TransformConfig:
        """A copy with some fields replaced (validated again)."""
        unknown = set(kwargs) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown TransformConfig fields: {sorted(unknown)}")
        return dataclasses.replace(self, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Fields as a plain dict."""
        return dataclasses.asdict(self)


def list_transform_presets(
    backend: str = "torchvision", verbose: bool = False
) -> list[str] | list[tuple[str, str]]:
    """Preset names of a backend.

    Parameters
    ----------
    backend : {"torchvision", "albumentations"}
    verbose : bool
        Return ``(name, description)`` pairs instead of names (as AutoTimm).

    Returns
    -------
    list of str, or list of (str, str) when ``verbose``.
    """
    if backend not in _PRESETS:
        raise ValueError(f"backend must be one of {sorted(_PRESETS)}, got {backend!r}")
    presets = list(_PRESETS[backend])
    if verbose:
        return [(name, _PRESET_DESCRIPTIONS[name]) for name in presets]
    return presets
