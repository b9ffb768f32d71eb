"""Inference-time preprocessing for tasks built with a TransformConfig."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from autotimm.data.transform_config import TransformConfig

_NO_CONFIG = (
    "{name}() needs a TransformConfig: build the model with "
    "transform_config=TransformConfig(...)"
)


class PreprocessingMixin:
    """Adds ``preprocess``, ``get_data_config`` and ``get_transform`` to a task.

    The task calls ``_setup_transforms(transform_config, task=...)`` in its
    constructor (after building ``self.backbone``).
    """

    _transform_config: TransformConfig | None
    _data_config: dict[str, Any] | None
    _train_transform: Any
    _eval_transform: Any

    def _setup_transforms(self, transform_config: TransformConfig | None, task: str) -> None:
        self._transform_config = transform_config
        self._data_config = None
        self._train_transform = None
        self._eval_transform = None
        if transform_config is None:
            return
        if not isinstance(transform_config, TransformConfig):
            raise TypeError(
                "transform_config must be a TransformConfig or None, got "
                f"{type(transform_config).__name__}"
            )
        self._data_config = self._resolve_data_config(transform_config)
        self._eval_transform = self._build_transform(is_train=False, task=task)
        self._train_transform = self._build_transform(is_train=True, task=task)

    def _resolve_data_config(self, cfg: TransformConfig) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
            "interpolation": cfg.interpolation,
            "crop_pct": cfg.crop_pct,
        }
        backbone = getattr(self, "backbone", None)
        if cfg.use_timm_config and backbone is not None:
            import timm.data

            try:
                timm_cfg = timm.data.resolve_data_config({}, model=backbone)
            except Exception:  # backbones without a pretrained config
                timm_cfg = {}
            for key in ("mean", "std", "interpolation", "crop_pct"):
                if key in timm_cfg:
                    data[key] = timm_cfg[key]
        if cfg.mean is not None:
            data["mean"] = tuple(cfg.mean)
        if cfg.std is not None:
            data["std"] = tuple(cfg.std)
        data["mean"] = tuple(float(v) for v in data["mean"])
        data["std"] = tuple(float(v) for v in data["std"])
        data["input_size"] = (3, cfg.image_size, cfg.image_size)
        return data

    def _build_transform(self, is_train: bool, task: str) -> T.Compose:
        assert self._data_config is not None
        size = self._data_config["input_size"][1:]
        try:
            interp = InterpolationMode(self._data_config["interpolation"])
        except ValueError:
            interp = InterpolationMode.BILINEAR
        steps: list[Any] = [T.ToImage(), T.Resize(size, interpolation=interp, antialias=True)]
        if is_train:
            steps += [T.RandomHorizontalFlip(), T.ColorJitter(0.2, 0.2, 0.2)]
        steps += [
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(self._data_config["mean"], self._data_config["std"]),
        ]
        return T.Compose(steps)

    def get_data_config(self) -> dict[str, Any]:
        """``mean``, ``std``, ``input_size`` (3, H, W), ``interpolation``, ``crop_pct``."""
        if self._data_config is None:
            raise RuntimeError(_NO_CONFIG.format(name="get_data_config"))
        return dict(self._data_config)

    def get_transform(self, is_train: bool = False) -> Any:
        """The image transform (torchvision v2) for training or inference."""
        if self._transform_config is None:
            raise RuntimeError(_NO_CONFIG.format(name="get_transform"))
        return self._train_transform if is_train else self._eval_transform

    def preprocess(self, images: Any, is_train: bool = False) -> torch.Tensor:
        """Resize and normalise images for the model.

        Parameters
        ----------
        images : PIL image, ndarray [H, W, 3] uint8, Tensor [3, H, W] / [B, 3, H, W], or a list
        is_train : bool
            Use the training transform (with augmentation).

        Returns
        -------
        Tensor [B, 3, S, S] float32, S = ``TransformConfig.image_size``.
        """
        transform = self.get_transform(is_train)
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            items: list[Any] = list(images)
        elif isinstance(images, (list, tuple)):
            items = list(images)
        else:
            items = [images]
        out = []
        for item in items:
            if isinstance(item, np.ndarray):
                item = torch.from_numpy(np.ascontiguousarray(item)).permute(2, 0, 1)
            out.append(transform(item))
        batch = torch.stack(out)
        device = getattr(self, "device", None)
        return batch.to(device) if isinstance(device, torch.device) else batch
