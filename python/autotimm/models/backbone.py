"""The detector's backbone: any timm model -> NCHW feature maps at strides 8, 16, 32.

The levels are read from the model's own ``feature_info``, so a timm model
works whatever the index of its stride-8/16/32 stages (ResNet, EfficientNet,
RegNet, MobileNet: 5 levels; ConvNeXt, Swin, PVT: 4 levels). Channels-last
maps (Swin) are made NCHW. A single-scale model (plain ViT, DeiT, BEiT: one
stride-16 map) gets a simple feature pyramid (ViTDet): up-sampled x2,
identity, max-pooled x2. Transformers are built with timm's
``dynamic_img_size`` so that they run at the data's image size (any multiple
of 32), not only at the size they were defined for.

A backbone built without pretrained weights starts as torchvision's detection
backbones do: timm zero-initialises the last norm layer of each residual
branch (``zero_init_last``, a large-batch classification recipe); the
detector resets those gains to one (measured on BCCD in the README).
``extra_kwargs={"zero_init_last": True}`` keeps timm's choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import FeatureInfo

from autotimm.constants import DEFAULT_STRIDES
from autotimm.core.backbone import (
    FeatureBackboneConfig,
    as_feature_backbone_config,
    check_model_name,
    timm_features_model,
)

#: Strides of the backbone levels the FPN starts from (C3, C4, C5).
BACKBONE_STRIDES: tuple[int, ...] = tuple(DEFAULT_STRIDES[:3])

#: Keyword arguments of ``timm.create_model`` that set the input size.
_SIZE_KWARGS = ("img_size", "dynamic_img_size")


@dataclass(frozen=True)
class DetectionBackbone:
    """A backbone ready for the FPN.

    Attributes
    ----------
    module : nn.Module
        ``module(images [B, 3, H, W] float)`` returns a list of NCHW float maps,
        ``[B, channels[i], ceil(H / strides[i]), ceil(W / strides[i])]`` for
        inputs whose sides are multiples of the largest stride.
    channels : tuple of int
        Channels of each map, finest first.
    strides : tuple of int
        Stride (reduction) of each map relative to the input, finest first.
    """

    module: nn.Module
    channels: tuple[int, ...]
    strides: tuple[int, ...]


class ChannelsFirst(nn.Module):
    """Wraps a timm features model that returns NHWC maps (Swin) to return NCHW maps.

    Parameters
    ----------
    body : nn.Module
        timm ``features_only`` model whose ``output_fmt`` is NHWC.

    Forward
    -------
    images : [B, 3, H, W] -> list of [B, C_i, H_i, W_i] (contiguous).
    """

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.feature_info = body.feature_info

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [f.permute(0, 3, 1, 2).contiguous() for f in self.body(images)]


class SimpleFeaturePyramid(nn.Module):
    """Three maps from a single-scale backbone's last map (ViTDet's simple pyramid).

    From the map at stride ``s``: bilinear up-sampling x2 gives stride ``s / 2``,
    the map itself stride ``s``, and ``MaxPool2d(2, stride 2, ceil_mode)`` stride
    ``2 s``. The pyramid has no parameters of its own (the FPN's lateral and
    output convolutions learn on top of it), so ``freeze_backbone`` freezes
    exactly the timm model and the backbone's weights are the timm model's.

    Parameters
    ----------
    body : nn.Module
        timm ``features_only`` model returning one NCHW map (its last block).
    channels : int
        Channels ``C`` of that map.
    stride : int
        Its stride ``s`` (even).

    Forward
    -------
    images : [B, 3, H, W] -> [[B, C, 2h, 2w], [B, C, h, w], [B, C, ceil(h / 2), ceil(w / 2)]]
    with ``h, w = H / s, W / s``.
    """

    def __init__(self, body: nn.Module, channels: int, stride: int) -> None:
        super().__init__()
        if stride % 2:
            raise ValueError(
                f"a simple feature pyramid needs an even stride to up-sample x2, got {stride}"
            )
        self.body = body
        self.down = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
        module = f"body.{body.feature_info.get_dicts()[-1]['module']}"
        self.feature_info = FeatureInfo(
            [
                {"num_chs": channels, "reduction": stride // 2, "module": module},
                {"num_chs": channels, "reduction": stride, "module": module},
                {"num_chs": channels, "reduction": stride * 2, "module": module},
            ],
            (0, 1, 2),
        )

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        feature = self.body(images)[-1]
        up = F.interpolate(feature, scale_factor=2.0, mode="bilinear", align_corners=False)
        return [up, feature, self.down(feature)]


def build_detection_backbone(
    backbone: FeatureBackboneConfig | str,
    image_size: int | tuple[int, int] | None = None,
) -> DetectionBackbone:
    """Build a timm backbone that returns the detector's C3-C5 maps (strides 8, 16, 32).

    Parameters
    ----------
    backbone : FeatureBackboneConfig or str
        The timm model. An explicit ``out_indices`` is used as given (the maps
        those indices return, at their own strides). ``None`` picks, from the
        model's ``feature_info``, the last level at each of the strides 8, 16
        and 32; a model whose levels all share one stride (a plain ViT) gets a
        :class:`SimpleFeaturePyramid` from its last level.
    image_size : int or (int, int), optional
        Models that take an input size (ViT, Swin, ...) are always built with
        ``dynamic_img_size=True``: any input whose sides are multiples of the
        patch grid runs, position embeddings interpolated to it. ``image_size``
        also sets timm's ``img_size``, the grid the position embeddings are made
        for (their shape: a model must be rebuilt with the same value to load
        its weights). ``ObjectDetector`` leaves it unset, so its checkpoints
        load whatever the data's size. ``extra_kwargs`` setting ``img_size`` or
        ``dynamic_img_size`` overrides both.

    Returns
    -------
    DetectionBackbone
        The module, the channels and the strides of its maps.

    Raises
    ------
    ValueError
        Unknown model name, or a model without maps at strides 8, 16 and 32 and
        without a single-scale map to build a pyramid from; the message lists the
        strides the model returns and the ``out_indices`` to choose from.
    RuntimeError
        Pretrained weights that cannot be fetched (see ``create_feature_backbone``).
    """
    cfg = as_feature_backbone_config(backbone)
    check_model_name(cfg.model_name)
    size_kwargs = _size_kwargs(cfg, image_size)
    if cfg.out_indices is not None:
        body, _ = _create(cfg, cfg.out_indices, size_kwargs)
        return _finish(_channels_first(body), cfg)
    levels, size_kwargs = _all_levels(cfg, size_kwargs)
    reductions = [int(level["reduction"]) for level in levels]
    if all(s in reductions for s in BACKBONE_STRIDES):
        last_at = {s: i for i, s in enumerate(reductions)}
        indices = tuple(last_at[s] for s in BACKBONE_STRIDES)
        body, _ = _create(cfg, indices, size_kwargs)
        return _finish(_channels_first(body), cfg)
    if len(set(reductions)) == 1:
        body, _ = _create(cfg, (len(levels) - 1,), size_kwargs)
        body = _channels_first(body)
        pyramid = SimpleFeaturePyramid(body, int(levels[-1]["num_chs"]), reductions[-1])
        return _finish(pyramid, cfg)
    raise ValueError(
        f"backbone '{cfg.model_name}' cannot serve the detector: its feature levels "
        f"(out_indices 0..{len(levels) - 1}) have strides {tuple(reductions)} and channels "
        f"{tuple(int(level['num_chs']) for level in levels)}; the detector needs maps at "
        f"strides {BACKBONE_STRIDES}, or one single-scale map for a simple pyramid. Choose "
        "levels with FeatureBackboneConfig(out_indices=...) and pass the detector the "
        "matching strides (those levels, then two more doubling the last)."
    )


def unit_residual_gains(module: nn.Module) -> int:
    """Reset to one the norm-layer gains that timm's ``zero_init_last`` zeroed.

    Within every block that has a ``zero_init_last`` method (timm's residual
    blocks: ResNet, RegNet, ByobNet, ...), each norm layer whose weight is all
    zeros gets weight 1, so the residual branches start with unit gain as in
    torchvision's ResNets. Blocks whose ``zero_init_last`` zeroes a conv are
    left as they are. Returns the number of layers reset.
    """
    reset = 0
    for block in module.modules():
        if not callable(getattr(block, "zero_init_last", None)):
            continue
        for layer in block.modules():
            weight = getattr(layer, "weight", None)
            is_norm = isinstance(layer, (nn.modules.batchnorm._NormBase, nn.GroupNorm,
                                         nn.LayerNorm))
            if is_norm and isinstance(weight, torch.Tensor) and weight.numel() and not bool(
                weight.detach().any()
            ):
                with torch.no_grad():
                    weight.fill_(1.0)
                reset += 1
    return reset


def _finish(module: nn.Module, cfg: FeatureBackboneConfig) -> DetectionBackbone:
    """Unit residual gains for a from-scratch backbone (unless ``extra_kwargs``
    sets ``zero_init_last``), then its channels and strides."""
    if not cfg.pretrained and "zero_init_last" not in cfg.extra_kwargs:
        unit_residual_gains(module)
    return _describe(module)


def _describe(module: nn.Module) -> DetectionBackbone:
    info = module.feature_info
    return DetectionBackbone(
        module=module,
        channels=tuple(int(c) for c in info.channels()),
        strides=tuple(int(r) for r in info.reduction()),
    )


def _channels_first(body: nn.Module) -> nn.Module:
    fmt = getattr(body, "output_fmt", "NCHW")
    return ChannelsFirst(body) if str(getattr(fmt, "value", fmt)) == "NHWC" else body


def _size_kwargs(
    cfg: FeatureBackboneConfig, image_size: int | tuple[int, int] | None
) -> dict[str, Any]:
    if any(key in cfg.extra_kwargs for key in _SIZE_KWARGS):
        return {}
    kwargs: dict[str, Any] = {"dynamic_img_size": True}
    if image_size is not None:
        kwargs["img_size"] = image_size
    return kwargs


def _create(
    cfg: FeatureBackboneConfig,
    out_indices: Sequence[int] | None,
    size_kwargs: dict[str, Any],
    pretrained: bool | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The timm features model with the size keywords it accepts (all of
    ``size_kwargs``, ``img_size`` only, or none), and the keywords used."""
    attempts = [size_kwargs]
    if "dynamic_img_size" in size_kwargs and "img_size" in size_kwargs:
        attempts.append({"img_size": size_kwargs["img_size"]})
    if size_kwargs:
        attempts.append({})
    indices = None if out_indices is None else tuple(out_indices)
    for kwargs in attempts[:-1]:
        try:
            return timm_features_model(cfg, indices, kwargs, pretrained), kwargs
        except TypeError as exc:  # the constructor does not take a size keyword
            if not any(key in str(exc) for key in kwargs):
                raise
    return timm_features_model(cfg, indices, attempts[-1], pretrained), attempts[-1]


def _all_levels(
    cfg: FeatureBackboneConfig, size_kwargs: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every feature level of the model (timm's ``FeatureInfo.info``) and the size
    keywords the model accepts, from a weightless build on the meta device (on
    the CPU if the constructor computes on tensors)."""
    try:
        with torch.device("meta"):
            probe, kwargs = _create(cfg, None, size_kwargs, pretrained=False)
    except Exception:
        probe, kwargs = _create(cfg, None, size_kwargs, pretrained=False)
    return [dict(level) for level in probe.feature_info.info], kwargs
