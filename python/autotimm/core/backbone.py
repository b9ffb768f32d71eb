"""timm ``features_only`` backbones."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

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
        Feature levels to return (indices into the model's ``feature_info``).
        ``None`` lets the consumer choose: ``create_feature_backbone`` returns
        ``(1, 2, 3, 4)`` as AutoTimm's default, and ``ObjectDetector`` takes the
        levels at strides 8, 16 and 32 whatever their indices (a simple pyramid
        for a single-scale ViT); see ``autotimm.models.backbone``.
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
            raise TypeError(f"extra_kwargs must be a dict, got {type(self.extra_kwargs).__name__}")

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


def check_model_name(name: str) -> None:
    """Raise ``ValueError`` for a name that is neither a timm model nor ``hf-hub:<repo>``."""
    if name.startswith("hf-hub:") or name.startswith("hf_hub:"):
        return
    if not timm.is_model(name):
        raise ValueError(
            f"Model '{name}' not found in timm. See timm.list_models() for available names."
        )


def as_feature_backbone_config(backbone: FeatureBackboneConfig | str) -> FeatureBackboneConfig:
    """A config from a config or a timm model name (``FeatureBackboneConfig(model_name=...)``)."""
    if isinstance(backbone, str):
        return FeatureBackboneConfig(model_name=backbone)
    if not isinstance(backbone, FeatureBackboneConfig):
        raise TypeError(
            f"backbone must be a str or FeatureBackboneConfig, got {type(backbone).__name__}"
        )
    return backbone


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
        Pretrained weights could not be fetched (no network and not in the
        local cache); the message names ``pretrained=False`` as the way to
        build the model without them. Without network this fails within
        seconds, without timm's download retries.
    """
    cfg = as_feature_backbone_config(cfg)
    check_model_name(cfg.model_name)
    indices = cfg.out_indices or out_indices or DEFAULT_OUT_INDICES
    return timm_features_model(cfg, tuple(indices))


def timm_features_model(
    cfg: FeatureBackboneConfig,
    out_indices: tuple[int, ...] | None,
    size_kwargs: dict[str, Any] | None = None,
    pretrained: bool | None = None,
) -> nn.Module:
    """``timm.create_model(features_only=True)`` with the config's settings.

    Parameters
    ----------
    cfg : FeatureBackboneConfig
    out_indices : tuple of int or None
        Levels to return; None = the model's timm default.
    size_kwargs : dict, optional
        Input-size keywords (``img_size``, ``dynamic_img_size``) for the model.
    pretrained : bool, optional
        Overrides ``cfg.pretrained`` (a weightless probe passes False).

    Raises
    ------
    RuntimeError
        Pretrained weights that cannot be fetched, naming ``pretrained=False``.
    """
    load_weights = cfg.pretrained if pretrained is None else pretrained
    kwargs: dict[str, Any] = {"pretrained": load_weights, "features_only": True}
    # Zero rates are the timm defaults; passing them would refuse models that
    # have no such argument (DenseNet has no drop_path_rate).
    if cfg.drop_rate:
        kwargs["drop_rate"] = cfg.drop_rate
    if cfg.drop_path_rate:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    kwargs.update(size_kwargs or {})
    kwargs.update(cfg.extra_kwargs)
    if out_indices is not None:
        kwargs["out_indices"] = tuple(out_indices)
    if load_weights:
        check_weights_reachable(cfg.model_name)
    try:
        return timm.create_model(cfg.model_name, **kwargs)
    except Exception as exc:
        if not load_weights:
            raise
        try:  # does the model build without weights? then the weights were the problem
            timm.create_model(cfg.model_name, **{**kwargs, "pretrained": False})
        except Exception:
            raise exc from None
        raise RuntimeError(
            f"Could not load pretrained weights for backbone '{cfg.model_name}' "
            f"({type(exc).__name__}: {exc}). {_offline_hint(cfg.model_name)}"
        ) from exc


def _offline_hint(model_name: str) -> str:
    return (
        f"Without network access pass FeatureBackboneConfig(model_name='{model_name}', "
        "pretrained=False) to build the backbone with random weights, or put the weights "
        "in the local Hugging Face / torch hub cache."
    )


def check_weights_reachable(model_name: str, timeout_s: float = 3.0) -> None:
    """Fail fast when pretrained weights are neither cached nor downloadable.

    timm retries an unreachable hub for about a minute; this looks in the local
    Hugging Face and torch hub caches and, when the weights are not there,
    opens one connection to their host (``timeout_s``). Anything it cannot
    resolve (unknown sources, offline mode, an HTTPS proxy) is left to timm.

    Raises
    ------
    RuntimeError
        Not cached and the host cannot be reached; the message says so and
        names ``pretrained=False``.
    """
    host = _uncached_weights_host(model_name)
    if host is None:
        return
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError as exc:
        raise RuntimeError(
            f"pretrained=True: the weights of backbone '{model_name}' are not in the local "
            f"cache and {host} cannot be reached ({type(exc).__name__}: {exc}). "
            + _offline_hint(model_name)
        ) from None


def _uncached_weights_host(model_name: str) -> str | None:
    """Host to download the weights from, or None when they are cached or unknown."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return None  # timm fails fast itself, or reads the cache
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # downloads go through a proxy: a direct connection proves nothing
    try:
        from huggingface_hub import constants as hf_constants
        from huggingface_hub import try_to_load_from_cache
        from timm.models._builder import _resolve_pretrained_source
        from timm.models._registry import get_pretrained_cfg

        hf_host = urlparse(hf_constants.ENDPOINT).hostname
        if model_name.startswith(("hf-hub:", "hf_hub:")):
            repo = model_name.split(":", 1)[1]
            cached = any(
                isinstance(try_to_load_from_cache(repo, f), str)
                for f in ("open_clip_pytorch_model.bin", "model.safetensors", "pytorch_model.bin")
            )
            return None if cached else hf_host
        pretrained_cfg = get_pretrained_cfg(model_name)
        if pretrained_cfg is None:
            return None
        source, location = _resolve_pretrained_source(pretrained_cfg.to_dict())
        if source == "hf-hub":
            repo = location[0] if isinstance(location, tuple) else location
            names = (
                [location[1]]
                if isinstance(location, tuple)
                else ["model.safetensors", "pytorch_model.bin"]
            )
            if any(isinstance(try_to_load_from_cache(repo, f), str) for f in names):
                return None
            return hf_host
        if source == "url":
            import torch.hub

            cached_file = Path(torch.hub.get_dir()) / "checkpoints" / Path(location).name
            return None if cached_file.exists() else urlparse(location).hostname
    except Exception:  # private timm / hub API changed: let timm decide
        return None
    return None


class ModelSource(str, Enum):
    """Where a backbone comes from: the timm library or the Hugging Face Hub."""

    TIMM = "timm"
    HF_HUB = "hf_hub"


def get_model_source(model_name: str) -> ModelSource:
    """``HF_HUB`` for ``hf-hub:`` / ``hf_hub:`` / ``timm/`` names, else ``TIMM``."""
    if model_name.startswith(("hf-hub:", "hf_hub:", "timm/")):
        return ModelSource.HF_HUB
    return ModelSource.TIMM


def list_backbones(
    pattern: str = "", pretrained_only: bool = False, with_source: bool = False
) -> list[str] | list[tuple[str, ModelSource]]:
    """timm model names matching a glob ``pattern`` (all when empty).

    Parameters
    ----------
    pattern : str
        Glob, e.g. ``"*resnet*"``.
    pretrained_only : bool
        Only models with pretrained weights.
    with_source : bool
        Return ``(name, ModelSource.TIMM)`` pairs.
    """
    names = timm.list_models(pattern or "*", pretrained=pretrained_only)
    if with_source:
        return [(name, ModelSource.TIMM) for name in names]
    return names


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
