"""YOLOX-style decoupled head with constrained LTRB regression."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from autotimm.constants import DEFAULT_STRIDES
from autotimm.models.heads.common import ScaleModule, conv_block, init_head

_ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "relu": nn.ReLU}


class YOLOXHead(nn.Module):
    """Decoupled head: 1x1 stem, separate classification and regression branches.

    Parameters
    ----------
    in_channels : int
        Channels of the FPN levels.
    num_classes : int
    num_convs : int
        3x3 conv -> GroupNorm -> activation blocks per branch.
    prior_prob : float
        Initial foreground probability of the classifier.
    use_group_norm : bool
    num_groups : int
    use_depthwise : bool
        Depthwise-separable branch convolutions.
    activation : {"silu", "relu"}
    strides : sequence of int
        Stride of each level; also the number of level scales.

    Outputs per level: cls logits ``[B, C, H, W]`` and reg ``[B, 4, H, W]`` =
    LTRB distances in pixels, ``softplus(scale * conv) * stride``: always
    positive, so boxes are never inverted and IoU losses stay true losses
    (AutoTimm's head emitted unconstrained distances and its loss went negative).
    """

    def __init__(
        self,
        in_channels: int = 256,
        num_classes: int = 80,
        num_convs: int = 2,
        prior_prob: float = 0.01,
        use_group_norm: bool = True,
        num_groups: int = 32,
        use_depthwise: bool = False,
        activation: str = "silu",
        strides: Sequence[int] = DEFAULT_STRIDES,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        if num_convs < 0:
            raise ValueError(f"num_convs must be >= 0, got {num_convs!r}")
        act = _ACTIVATIONS[activation]
        self.num_classes = num_classes
        self.strides = tuple(int(s) for s in strides)
        self.stem_conv = conv_block(in_channels, in_channels, 1, act, use_group_norm, num_groups)
        self.cls_convs = nn.Sequential(*(
            conv_block(in_channels, in_channels, 3, act, use_group_norm, num_groups, use_depthwise)
            for _ in range(num_convs)
        ))
        self.reg_convs = nn.Sequential(*(
            conv_block(in_channels, in_channels, 3, act, use_group_norm, num_groups, use_depthwise)
            for _ in range(num_convs)
        ))
        self.cls_pred = nn.Conv2d(in_channels, num_classes, 1)
        self.reg_pred = nn.Conv2d(in_channels, 4, 1)
        self.scales = nn.ModuleList(ScaleModule(1.0) for _ in self.strides)
        init_head(self, self.cls_pred, prior_prob)

    def forward_single(
        self, feat: torch.Tensor, scale_idx: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs for one level ``[B, in_channels, H, W]``. Levels past the last
        stride share the last scale, their stride doubling per level."""
        x = self.stem_conv(feat)
        cls = self.cls_pred(self.cls_convs(x))
        last = len(self.strides) - 1
        raw = self.scales[min(scale_idx, last)](self.reg_pred(self.reg_convs(x)))
        stride = self.strides[min(scale_idx, last)] * 2 ** max(scale_idx - last, 0)
        reg = F.softplus(raw) * stride
        return cls, reg

    def forward(
        self, features: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        outs = [self.forward_single(f, i) for i, f in enumerate(features)]
        return [o[0] for o in outs], [o[1] for o in outs]
