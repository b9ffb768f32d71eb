"""Feature pyramid network: C3-C5 -> P3-P7."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1, depthwise: bool = False) -> nn.Module:
    if not depthwise:
        return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, 3, stride=stride, padding=1, groups=in_ch),
        nn.Conv2d(in_ch, out_ch, 1),
    )


class FPN(nn.Module):
    """Top-down feature pyramid with extra stride-2 levels.

    Parameters
    ----------
    in_channels_list : list of int
        Channels of the backbone features, finest first (e.g. C3, C4, C5).
    out_channels : int
        Channels of every output level.
    num_extra_levels : int
        Levels added on top of the coarsest output by ``relu(conv3x3, stride 2)``
        chained (P6 from P5, P7 from P6).
    use_depthwise : bool
        Depthwise-separable 3x3 convolutions.

    Forward
    -------
    features : list of [B, C_i, H_i, W_i] (len == len(in_channels_list))
    returns list of [B, out_channels, h_l, w_l], ``len(in) + num_extra_levels`` levels.
    """

    def __init__(
        self,
        in_channels_list: list[int],
        out_channels: int = 256,
        num_extra_levels: int = 2,
        use_depthwise: bool = False,
    ) -> None:
        super().__init__()
        if not in_channels_list:
            raise ValueError("in_channels_list must name at least one input level")
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels!r}")
        if num_extra_levels < 0:
            raise ValueError(f"num_extra_levels must be >= 0, got {num_extra_levels!r}")
        self.in_channels_list = list(in_channels_list)
        self.out_channels = out_channels
        self.num_extra_levels = num_extra_levels
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels_list)
        self.output_convs = nn.ModuleList(
            _conv3x3(out_channels, out_channels, depthwise=use_depthwise) for _ in in_channels_list
        )
        self.extra_convs = nn.ModuleList(
            _conv3x3(out_channels, out_channels, stride=2, depthwise=use_depthwise)
            for _ in range(num_extra_levels)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def num_levels(self) -> int:
        return len(self.in_channels_list) + self.num_extra_levels

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.lateral_convs):
            raise ValueError(
                f"FPN expects {len(self.lateral_convs)} feature maps, got {len(features)}"
            )
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        outputs = [conv(x) for conv, x in zip(self.output_convs, laterals, strict=True)]
        for conv in self.extra_convs:
            outputs.append(F.relu(conv(outputs[-1])))
        return outputs
