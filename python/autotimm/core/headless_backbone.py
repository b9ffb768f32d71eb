"""Headless timm backbones (AutoTimm's classification-side helpers).

``create_backbone`` builds a timm model without its classifier
(``num_classes=0``): calling it on ``[B, 3, H, W]`` float32 returns pooled
features ``[B, num_features]``. The detector itself uses
:func:`autotimm.core.backbone.create_feature_backbone` (feature maps); these
helpers exist for code written against AutoTimm's public API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import timm
import torch.nn as nn

from autotimm.core.backbone import ModelSource, check_model_name, check_weights_reachable

__all__ = [
    "BackboneConfig",
    "create_backbone",
    "get_backbone_out_features",
    "list_hf_hub_backbones",
]


@dataclass
class BackboneConfig:
    """Configuration of a headless timm backbone.

    Attributes
    ----------
    model_name : str
        A timm model name (``"resnet50"``) or ``"hf-hub:<repo>"``.
    pretrained : bool
        Load pretrained weights (needs network or a local cache).
    num_classes : int
        0 (default) removes the classifier: the model returns pooled features.
    drop_rate, drop_path_rate : float
        Dropout and stochastic-depth rates.
    extra_kwargs : dict
        Passed to ``timm.create_model`` as they are.
    """

    model_name: str = "resnet50"
    pretrained: bool = True
    num_classes: int = 0
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    extra_kwargs: dict[str, Any] = field(default_factory=dict)


def create_backbone(cfg: BackboneConfig | str) -> nn.Module:
    """Build a headless timm model from a config or a model name.

    A str is ``BackboneConfig(model_name=cfg)`` (pretrained, headless).

    Raises
    ------
    TypeError
        ``cfg`` is neither a str nor a :class:`BackboneConfig`.
    ValueError
        Unknown model name.
    RuntimeError
        Pretrained weights that are neither cached nor reachable (within
        seconds; the message names ``pretrained=False``).
    """
    if isinstance(cfg, str):
        cfg = BackboneConfig(model_name=cfg)
    if not isinstance(cfg, BackboneConfig):
        raise TypeError(f"cfg must be a str or BackboneConfig, got {type(cfg).__name__}")
    check_model_name(cfg.model_name)
    if cfg.pretrained:
        check_weights_reachable(cfg.model_name)
    kwargs: dict[str, Any] = {"pretrained": cfg.pretrained, "num_classes": cfg.num_classes}
    # zero rates are timm's defaults; passing them refuses models without them
    if cfg.drop_rate:
        kwargs["drop_rate"] = cfg.drop_rate
    if cfg.drop_path_rate:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    return timm.create_model(cfg.model_name, **{**kwargs, **cfg.extra_kwargs})


def get_backbone_out_features(backbone: nn.Module) -> int:
    """Width of a headless timm backbone's output (``backbone.num_features``)."""
    num_features = getattr(backbone, "num_features", None)
    if not isinstance(num_features, int):
        raise TypeError(
            f"backbone must be a timm model with an int num_features, got "
            f"{type(backbone).__name__} (num_features={num_features!r})"
        )
    return num_features


def list_hf_hub_backbones(
    author: str = "timm",
    model_name: str | None = None,
    limit: int = 50,
    with_source: bool = False,
) -> list[str] | list[tuple[str, ModelSource]]:
    """timm models on the Hugging Face Hub, as ``"hf-hub:<repo>"`` names.

    Parameters
    ----------
    author : str
        Organisation or user (default ``"timm"``).
    model_name : str, optional
        Search text in the repository names.
    limit : int
        At most this many names (>= 1).
    with_source : bool
        Return ``(name, ModelSource.HF_HUB)`` pairs.

    Raises
    ------
    ValueError
        ``limit`` < 1.
    RuntimeError
        The Hub cannot be reached (the message says so).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an int >= 1, got {limit!r}")
    try:
        from huggingface_hub import HfApi
    except ImportError as exc:  # pragma: no cover - timm depends on huggingface_hub
        raise RuntimeError("list_hf_hub_backbones needs huggingface_hub installed") from exc
    try:
        repos = [
            m.id
            for m in HfApi().list_models(
                author=author, search=model_name, library="timm", limit=limit
            )
        ]
    except Exception as exc:
        raise RuntimeError(
            f"cannot list models on the Hugging Face Hub ({type(exc).__name__}: {exc}); "
            "this needs network access to huggingface.co"
        ) from exc
    names = [f"hf-hub:{repo}" for repo in repos]
    if with_source:
        return [(name, ModelSource.HF_HUB) for name in names]
    return names
