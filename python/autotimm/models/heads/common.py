"""Building blocks shared by the detection heads."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class ScaleModule(nn.Module):
    """A learnable scalar multiplier (one per FPN level in FCOS / YOLOX heads).

    Parameters
    ----------
    init_value : float
        Initial value of ``scale``.
    """

    def __init__(self, init_value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def norm_layer(channels: int, use_group_norm: bool, num_groups: int) -> nn.Module:
    """GroupNorm with the largest group count <= ``num_groups`` that divides ``channels``
    and leaves at least two channels per group (one-channel groups fail on 1x1 maps)."""
    if not use_group_norm:
        return nn.Identity()
    limit = min(num_groups, max(channels // 2, 1))
    groups = max(g for g in range(1, limit + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def conv_block(
    in_ch: int,
    out_ch: int,
    kernel_size: int,
    activation: type[nn.Module],
    use_group_norm: bool,
    num_groups: int,
    depthwise: bool = False,
) -> nn.Sequential:
    """conv (optionally depthwise-separable) -> GroupNorm -> activation."""
    pad = kernel_size // 2
    if depthwise and kernel_size > 1:
        conv: list[nn.Module] = [
            nn.Conv2d(in_ch, in_ch, kernel_size, padding=pad, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=not use_group_norm),
        ]
    else:
        conv = [nn.Conv2d(in_ch, out_ch, kernel_size, padding=pad, bias=not use_group_norm)]
    return nn.Sequential(*conv, norm_layer(out_ch, use_group_norm, num_groups), activation())


def prior_bias(prior_prob: float) -> float:
    """Classification bias so that sigmoid(bias) == prior_prob."""
    if not 0.0 < prior_prob < 1.0:
        raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob!r}")
    return -math.log((1 - prior_prob) / prior_prob)


def init_head(module: nn.Module, cls_pred: nn.Conv2d, prior_prob: float) -> None:
    """normal(0, 0.01) conv weights, zero biases, prior bias on the classifier."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    nn.init.constant_(cls_pred.bias, prior_bias(prior_prob))
