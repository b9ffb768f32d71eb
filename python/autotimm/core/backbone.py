"""timm ``features_only`` backbones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import timm
import torch.nn as nn

#: Feature levels a backbone returns when neither the config nor the caller chooses.
DEFAULT_OUT_INDICES: tuple[int, ...] = (1, 2, 3, 4)


@dataclass
class FeatureBackboneConfig:
    """A timm backbone that returns a pyramid of feature maps.

    Parameters
    ----------
    model_name : str
        timm model name (``timm.list_models()``) or ``hf-hub:<repo>``.
    pretrained : bool
        Load pretrained weights (needs network access or a local cache).
    out_indices : tuple of int or None
        Feature levels to return. ``None`` lets the consumer choose:
        ``create_feature_backbone`` returns ``(1, 2, 3, 4)`` and
        ``ObjectDetector`` takes C3-C5, ``(2, 3, 4)``.
    drop_rate : float
        Dropout rate passed to ``timm.create_model``.
    drop_path_rate : float
        Stochastic depth rate passed to ``timm.create_model``.
    extra_kwargs : dict
        Further keyword arguments for ``timm.create_model``.
    """

    model_name: str = "resnet50"
    pretrained: bool = True
    out_indices: tuple[int, ...] | None = None
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    extra_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model_name, str) or not self.model_name:
            raise ValueError(f"model_name must be a non-empty str, got {self.model_name!r}")
        if self.out_indices is not None:
            self.out_indices = tuple(int(i) for i in self.out_indices)
        for name in ("drop_rate", "drop_path_rate"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if not isinstance(self.extra_kwargs, dict):
            raise TypeError(
                f"extra_kwargs must be a dict, got {type(self.extra_kwargs).__name__}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (for hyperparameters and checkpoints)."""
        return {
            "model_name": self.model_name,
            "pretrained": self.pretrained,
            "out_indices": None if self.out_indices is None else list(self.out_indices),
            "drop_rate": self.drop_rate,
            "drop_path_rate": self.drop_path_rate,
            "extra_kwargs": dict(self.extra_kwargs),
        }


def _check_model_name(name: str) -> None:
    if name.startswith("hf-hub:") or name.startswith("hf_hub:"):
        return
    if not timm.is_model(name):
        raise ValueError(
            f"Model '{name}' not found in timm. See timm.list_models() for available names."
        )


def create_feature_backbone(
    cfg: FeatureBackboneConfig | str, out_indices: tuple[int, ...] | None = None
) -> nn.Module:
    """Build a timm ``features_only`` model from a config or a name.

    Parameters
    ----------
    cfg : FeatureBackboneConfig or str
        The backbone; a str is ``FeatureBackboneConfig(model_name=cfg)``.
    out_indices : tuple of int, optional
        Used when ``cfg.out_indices`` is None (default ``(1, 2, 3, 4)``).

    Returns
    -------
    nn.Module
        The model; calling it on ``[B, 3, H, W]`` returns a list of feature maps.

    Raises
    ------
    ValueError
        Unknown model name.
    RuntimeError
        Pretrained weights could not be fetched; the message names
        ``pretrained=False`` as the way to build the model without them.
    """
    if isinstance(cfg, str):
        cfg = FeatureBackboneConfig(model_name=cfg)
    if not isinstance(cfg, FeatureBackboneConfig):
        raise TypeError(
            f"backbone must be a str or FeatureBackboneConfig, got {type(cfg).__name__}"
        )
    _check_model_name(cfg.model_name)
    indices = cfg.out_indices or out_indices or DEFAULT_OUT_INDICES
    kwargs: dict[str, Any] = {
        "pretrained": cfg.pretrained,
        "features_only": True,
        "out_indices": tuple(indices),
        "drop_rate": cfg.drop_rate,
        "drop_path_rate": cfg.drop_path_rate,
        **cfg.extra_kwargs,
    }
    try:
        return timm.create_model(cfg.model_name, **kwargs)
    except Exception as exc:
        if not cfg.pretrained:
            raise
        try:  # does the model build without weights? then the weights were the problem
            timm.create_model(cfg.model_name, **{**kwargs, "pretrained": False})
        except Exception:
            raise exc from None
        raise RuntimeError(
            f"Could not load pretrained weights for backbone '{cfg.model_name}' "
            f"({type(exc).__name__}: {exc}). Without network access pass "
            f"FeatureBackboneConfig(model_name='{cfg.model_name}', pretrained=False) "
            "to build the backbone with random weights."
        ) from exc


def _feature_info(backbone: nn.Module) -> Any:
    info = getattr(backbone, "feature_info", None)
    if info is None:
        raise AttributeError(
            f"{type(backbone).__name__} has no feature_info; build it with "
            "create_feature_backbone (timm features_only=True)"
        )
    return info


def get_feature_channels(backbone: nn.Module) -> list[int]:
    """Channels of each returned feature map."""
    return list(_feature_info(backbone).channels())


def get_feature_strides(backbone: nn.Module) -> list[int]:
    """Stride (reduction) of each returned feature map relative to the input."""
    return list(_feature_info(backbone).reduction())


def get_feature_info(backbone: nn.Module) -> list[dict[str, Any]]:
    """timm's feature info dicts (``num_chs``, ``reduction``, ``module``, ...)."""
    return list(_feature_info(backbone).get_dicts())
