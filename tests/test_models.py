"""FPN, FCOS head, YOLOX head and the autotimm.heads module."""

from __future__ import annotations

import pytest
import torch

from autotimm.models import FPN, DetectionHead, ScaleModule, YOLOXHead


def _features(channels=(16, 32, 64), size=32, batch=2):
    return [torch.randn(batch, c, size // 2**i, size // 2**i) for i, c in enumerate(channels)]


def test_fpn_levels_shapes_and_input_check() -> None:
    fpn = FPN([16, 32, 64], out_channels=24, num_extra_levels=2)
    outs = fpn(_features())
    assert [tuple(o.shape) for o in outs] == [
        (2, 24, 32, 32), (2, 24, 16, 16), (2, 24, 8, 8), (2, 24, 4, 4), (2, 24, 2, 2)
    ]
    assert (outs[3] >= 0).all() and (outs[4] >= 0).all()  # relu'd extra levels
    assert len(FPN([16, 32, 64], 8, num_extra_levels=0)(_features())) == 3
    dw = FPN([16, 32, 64], 24, use_depthwise=True)
    assert any(getattr(m, "groups", 1) == 24 for m in dw.modules())
    with pytest.raises(ValueError, match="expects 3"):
        fpn(_features()[:2])


def test_fpn_odd_sizes_top_down() -> None:
    feats = [torch.randn(1, 8, 13, 13), torch.randn(1, 8, 7, 7), torch.randn(1, 8, 4, 4)]
    outs = FPN([8, 8, 8], 8)(feats)
    assert [o.shape[-1] for o in outs] == [13, 7, 4, 2, 1]


def test_fcos_head_outputs() -> None:
    head = DetectionHead(in_channels=16, num_classes=3, num_convs=2)
    feats = [torch.randn(2, 16, s, s) for s in (8, 4, 2, 1, 1)]
    cls, reg, ctr = head(feats)
    assert [tuple(c.shape) for c in cls] == [(2, 3, s, s) for s in (8, 4, 2, 1, 1)]
    assert all(r.shape[1] == 4 and (r >= 0).all() for r in reg)
    assert all(c.shape[1] == 1 for c in ctr)
    # prior probability: initial foreground score ~ 0.01
    assert abs(torch.sigmoid(cls[0]).mean().item() - 0.01) < 0.005
    assert len(head.scales) == 5 and isinstance(head.scales[0], ScaleModule)
    c0, r0, t0 = head.forward_single(feats[1], scale_idx=1)
    torch.testing.assert_close(c0, cls[1])
    # group norm count adapts to the channel count
    odd = DetectionHead(in_channels=24, num_classes=1, num_convs=1)
    assert odd([torch.randn(1, 24, 4, 4)])[0][0].shape == (1, 1, 4, 4)
    no_gn = DetectionHead(16, 2, 1, use_group_norm=False)
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in no_gn.modules())


def test_yolox_head_regression_is_positive_pixels() -> None:
    head = YOLOXHead(in_channels=16, num_classes=2, num_convs=2)
    feats = [torch.randn(2, 16, s, s) * 10 for s in (8, 4, 2, 1, 1)]
    cls, reg = head(feats)
    assert [tuple(c.shape) for c in cls] == [(2, 2, s, s) for s in (8, 4, 2, 1, 1)]
    for r, stride in zip(reg, (8, 16, 32, 64, 128), strict=True):
        assert (r > 0).all()
        # initial distances are about softplus(0) * stride
        assert 0.1 * stride < r.median().item() < 3 * stride
    assert isinstance(head.stem_conv[-1], torch.nn.SiLU)
    relu = YOLOXHead(16, 2, activation="relu")
    assert isinstance(relu.stem_conv[-1], torch.nn.ReLU)
    with pytest.raises(ValueError, match="activation"):
        YOLOXHead(16, 2, activation="gelu")
    cls3, reg3 = head(feats[:3])  # any number of levels, as AutoTimm's example (P3-P5)
    assert len(cls3) == len(reg3) == 3


def test_scale_module_and_heads_module() -> None:
    s = ScaleModule(2.5)
    torch.testing.assert_close(s(torch.ones(3)), torch.full((3,), 2.5))
    assert s.scale.requires_grad
    import autotimm
    import autotimm.heads as heads

    assert heads.FPN is FPN and heads.DetectionHead is DetectionHead
    assert heads.YOLOXHead is YOLOXHead and heads.ScaleModule is ScaleModule
    assert autotimm.ScaleModule is ScaleModule
    import autotimm.head

    assert autotimm.head.YOLOXHead is YOLOXHead


def test_head_argument_errors() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        DetectionHead(16, 0)
    with pytest.raises(ValueError, match="prior_prob"):
        DetectionHead(16, 2, prior_prob=1.5)
    with pytest.raises(ValueError, match="out_channels"):
        FPN([8], 0)


def test_group_norm_keeps_two_channels_per_group_on_1x1_maps() -> None:
    head = DetectionHead(in_channels=8, num_classes=2, num_convs=1)
    gn = [m for m in head.modules() if isinstance(m, torch.nn.GroupNorm)][0]
    assert gn.num_groups == 4
    cls, reg, ctr = head([torch.randn(1, 8, 1, 1)])  # P7 of a small image, batch 1
    assert cls[0].shape == (1, 2, 1, 1)
    wide = DetectionHead(in_channels=256, num_classes=2, num_convs=1)
    assert [m for m in wide.modules() if isinstance(m, torch.nn.GroupNorm)][0].num_groups == 32
