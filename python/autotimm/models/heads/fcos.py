"""FCOS head: shared convs, classification, LTRB regression and centerness."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from autotimm.models.heads.common import ScaleModule, conv_block, init_head


class DetectionHead(nn.Module):
    """FCOS head shared across FPN levels.

    Parameters
    ----------
    in_channels : int
        Channels of the FPN levels.
    num_classes : int
        Number of classes (no background class).
    num_convs : int
        3x3 conv -> GroupNorm -> ReLU blocks in each of the two branches.
    prior_prob : float
        Initial foreground probability of the classifier.
    use_group_norm : bool
        GroupNorm after each branch conv.
    num_groups : int
        GroupNorm groups (reduced to a divisor of ``in_channels``).
    num_levels : int
        Number of FPN levels, one learnable ``ScaleModule`` each (default 5).
    strides : sequence of int, optional
        Stride of each level. When given, the regression is normalised by the
        level's stride as in torchvision and mmdetection (``norm_on_bbox``):
        ``relu(scale * conv) * stride``, so every level predicts distances of
        the same order; None keeps ``relu(scale * conv)`` in pixels.

    Outputs per level: cls logits ``[B, C, H, W]``; reg ``[B, 4, H, W]`` = LTRB
    distances in pixels (>= 0); centerness logits ``[B, 1, H, W]`` from the
    regression branch.
    """

    def __init__(
        self,
        in_channels: int = 256,
        num_classes: int = 80,
        num_convs: int = 4,
        prior_prob: float = 0.01,
        use_group_norm: bool = True,
        num_groups: int = 32,
        num_levels: int = 5,
        strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        if num_convs < 0:
            raise ValueError(f"num_convs must be >= 0, got {num_convs!r}")
        self.num_classes = num_classes
        self.cls_convs = nn.Sequential(*(
            conv_block(in_channels, in_channels, 3, nn.ReLU, use_group_norm, num_groups)
            for _ in range(num_convs)
        ))
        self.reg_convs = nn.Sequential(*(
            conv_block(in_channels, in_channels, 3, nn.ReLU, use_group_norm, num_groups)
            for _ in range(num_convs)
        ))
        self.cls_pred = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.reg_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.centerness_pred = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(ScaleModule(1.0) for _ in range(num_levels))
        if strides is not None and len(strides) != num_levels:
            raise ValueError(
                f"strides has {len(strides)} levels ({tuple(strides)}) but num_levels is "
                f"{num_levels}; expected one stride per level"
            )
        self.strides = None if strides is None else tuple(int(s) for s in strides)
        init_head(self, self.cls_pred, prior_prob)

    def forward_single(
        self, feat: torch.Tensor, scale_idx: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outputs for one level ``[B, in_channels, H, W]``; levels past the last
        scale share the last one (as AutoTimm)."""
        cls_feat = self.cls_convs(feat)
        reg_feat = self.reg_convs(feat)
        cls = self.cls_pred(cls_feat)
        scale = self.scales[min(scale_idx, len(self.scales) - 1)]
        reg = F.relu(scale(self.reg_pred(reg_feat)))
        if self.strides is not None:
            last = len(self.strides) - 1
            reg = reg * (self.strides[min(scale_idx, last)] * 2 ** max(scale_idx - last, 0))
        ctr = self.centerness_pred(reg_feat)
        return cls, reg, ctr

    def forward(
        self, features: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        outs = [self.forward_single(f, i) for i, f in enumerate(features)]
        return [o[0] for o in outs], [o[1] for o in outs], [o[2] for o in outs]
