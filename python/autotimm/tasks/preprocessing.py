"""Inference-time preprocessing: a TransformConfig's transforms, and the data settings
(:class:`autotimm.tasks.inputs.DataInfo`) a detector keeps in its checkpoints."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from autotimm.data.transform_config import TransformConfig
from autotimm.tasks.inputs import CHECKPOINT_KEY, DataInfo

_NO_CONFIG = (
    "{name}() needs a TransformConfig: build the model with transform_config=TransformConfig(...)"
)


class PreprocessingMixin:
    """Adds ``preprocess``, ``get_data_config`` and ``get_transform`` to a task.

    The task calls ``_setup_transforms(transform_config, task=...)`` in its
    constructor (after building ``self.backbone``).

    Also keeps the model's data settings (:attr:`data_info`: class names, input
    size, normalisation), writes them into every checkpoint under
    ``checkpoint["autotimm_data"]`` and reads them back on load.
    """

    _data_info: DataInfo | None = None

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

    # ------------------------------------------------------------ data settings
    @property
    def data_info(self) -> DataInfo:
        """Class names, input size and normalisation used to read raw images.

        In order: the settings set with :meth:`set_data_info` or loaded from a
        checkpoint; those of the data module of the attached trainer; the
        ``TransformConfig``; else ``image_size`` 640, the backbone's pretrained
        normalisation and labels named by their number.
        """
        if self._data_info is not None:
            return self._data_info
        trainer = getattr(self, "_trainer", None)
        from_data = DataInfo.from_datamodule(getattr(trainer, "datamodule", None))
        if from_data is not None:
            return from_data
        if self._data_config is not None:
            return DataInfo(
                image_size=int(self._data_config["input_size"][1]),
                mean=tuple(self._data_config["mean"]),
                std=tuple(self._data_config["std"]),
            )
        from autotimm.data.transforms import resolve_normalization

        hparams = getattr(self, "hparams", {})
        mean, std = resolve_normalization(hparams.get("backbone_name"))
        return DataInfo(mean=tuple(mean), std=tuple(std))

    def set_data_info(self, info: DataInfo | dict[str, Any] | None) -> None:
        """Set (or with None, forget) the data settings stored with the model."""
        if isinstance(info, dict):
            info = DataInfo.from_dict(info)
        if info is not None and not isinstance(info, DataInfo):
            raise TypeError(f"info must be a DataInfo, a dict or None, got {type(info).__name__}")
        self._data_info = info

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store :attr:`data_info` as ``checkpoint["autotimm_data"]``."""
        checkpoint[CHECKPOINT_KEY] = self.data_info.to_dict()
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore :attr:`data_info` from ``checkpoint["autotimm_data"]`` when present."""
        stored = checkpoint.get(CHECKPOINT_KEY)
        if isinstance(stored, dict):
            self._data_info = DataInfo.from_dict(stored)
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
