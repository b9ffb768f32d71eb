"""Losses: focal (background as negatives), IoU family, centerness, FCOSLoss, registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision.ops as tvo

from autotimm.losses import (
    CenternessLoss,
    CIoULoss,
    DIoULoss,
    FCOSLoss,
    FocalLoss,
    GIoULoss,
    IoULoss,
    LossRegistry,
    centerness_target,
    get_loss_registry,
    list_available_losses,
    ltrb_as_boxes,
    register_custom_loss,
)


def _boxes(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 50
    wh = torch.rand(n, 2, generator=g) * 40 + 1
    return torch.cat([xy, xy + wh], dim=1)


# ------------------------------------------------------------------ focal
def test_focal_background_is_a_negative() -> None:
    # AutoTimm ignored -1, so an all-background batch had zero loss and no gradient.
    logits = torch.full((6, 3), 2.0, requires_grad=True)
    targets = torch.full((6,), -1)
    loss = FocalLoss(reduction="sum")(logits, targets)
    assert loss.item() > 0
    loss.backward()
    assert (logits.grad > 0).all()  # pushes every class score down


def test_focal_matches_torchvision_and_alpha_gamma_take_effect() -> None:
    logits = torch.randn(10, 4)
    targets = torch.tensor([0, 1, 2, 3, -1, -1, 0, -1, 2, 1])
    one_hot = torch.zeros(10, 4)
    one_hot[targets >= 0, targets[targets >= 0]] = 1
    for alpha, gamma in ((0.25, 2.0), (0.5, 0.0), (0.9, 3.0)):
        ours = FocalLoss(alpha, gamma, reduction="sum")(logits, targets)
        ref = tvo.sigmoid_focal_loss(logits, one_hot, alpha=alpha, gamma=gamma, reduction="sum")
        torch.testing.assert_close(ours, ref)


def test_focal_reductions_ignore_index_and_4d() -> None:
    logits = torch.randn(2, 3, 4, 5)
    targets = torch.randint(-1, 3, (2, 4, 5))
    flat = FocalLoss(reduction="none")(logits, targets)
    assert flat.shape == (40,) and (flat >= 0).all()
    torch.testing.assert_close(FocalLoss(reduction="sum")(logits, targets), flat.sum())
    torch.testing.assert_close(FocalLoss(reduction="mean")(logits, targets), flat.mean())
    t = targets.clone()
    t[0] = -100
    ignored = FocalLoss(reduction="sum", ignore_index=-100)(logits, t)
    torch.testing.assert_close(ignored, flat[20:].sum())
    with pytest.raises(ValueError, match="ignore_index"):
        FocalLoss(ignore_index=-1)
    with pytest.raises(ValueError, match="reduction"):
        FocalLoss(reduction="avg")
    with pytest.raises(ValueError, match="expected"):
        FocalLoss()(torch.randn(3, 2), torch.zeros(4, dtype=torch.long))


# ------------------------------------------------------------ IoU family
@pytest.mark.parametrize(
    ("cls", "ref"),
    [
        (GIoULoss, tvo.generalized_box_iou_loss),
        (DIoULoss, tvo.distance_box_iou_loss),
        (CIoULoss, tvo.complete_box_iou_loss),
    ],
)
def test_box_losses_match_torchvision(cls: type, ref) -> None:
    a, b = _boxes(32, 0), _boxes(32, 1)
    torch.testing.assert_close(cls(reduction="none")(a, b), ref(a, b), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cls(reduction="sum")(a, b), ref(a, b).sum(), atol=1e-4, rtol=1e-4)


def test_iou_loss_modes_weights_and_empty() -> None:
    a, b = _boxes(8, 2), _boxes(8, 3)
    iou = tvo.box_iou(a, b).diagonal()
    torch.testing.assert_close(IoULoss(reduction="none")(a, b), 1 - iou, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(
        IoULoss(reduction="none", mode="log")(a, b), -torch.log(iou.clamp(min=1e-7)),
        atol=1e-5, rtol=1e-4,
    )
    w = torch.tensor([1.0, 0, 0, 2, 0, 0, 0, 1])
    per = GIoULoss(reduction="none")(a, b)
    torch.testing.assert_close(GIoULoss()(a, b, weights=w), (per * w).sum() / w.sum())
    empty = torch.zeros(0, 4)
    assert GIoULoss()(empty, empty).item() == 0.0
    assert GIoULoss(reduction="sum")(empty, empty).item() == 0.0


def test_box_losses_finite_on_degenerate_boxes() -> None:
    pred = torch.zeros(4, 4, requires_grad=True)
    target = torch.tensor([[0.0, 0, 0, 0], [0, 0, 10, 10], [5, 5, 5, 9], [1, 1, 2, 2]])
    for cls in (IoULoss, GIoULoss, DIoULoss, CIoULoss):
        loss = cls(reduction="sum")(pred, target, weights=torch.tensor([0.0, 1, 1, 1]))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
        pred.grad = None


def test_ltrb_as_boxes_is_translation_invariant() -> None:
    g = torch.Generator().manual_seed(4)
    p, t = torch.rand(16, 4, generator=g) * 20, torch.rand(16, 4, generator=g) * 20
    pts = torch.rand(16, 2, generator=g) * 100
    from autotimm.ops.boxes import ltrb_to_xyxy

    torch.testing.assert_close(
        GIoULoss(reduction="none")(ltrb_as_boxes(p), ltrb_as_boxes(t)),
        GIoULoss(reduction="none")(ltrb_to_xyxy(pts, p), ltrb_to_xyxy(pts, t)),
        atol=1e-5, rtol=1e-5,
    )


# ------------------------------------------------------------ centerness
def test_centerness_target_and_loss() -> None:
    ltrb = torch.tensor([[5.0, 5, 5, 5], [1, 2, 3, 4]])
    torch.testing.assert_close(
        centerness_target(ltrb), torch.tensor([1.0, (1 / 3 * 2 / 4) ** 0.5])
    )
    pred = torch.randn(5, 1)
    target = torch.rand(5)
    ref = nn.functional.binary_cross_entropy_with_logits(pred[:, 0], target)
    torch.testing.assert_close(CenternessLoss()(pred, target), ref)
    w = torch.tensor([1.0, 0, 1, 0, 0])
    assert CenternessLoss(reduction="sum")(pred, target, w) < CenternessLoss(reduction="sum")(
        pred, target
    )


# --------------------------------------------------------------- FCOSLoss
def _level_inputs(num_classes: int = 3):
    sizes = [(4, 4), (2, 2)]
    g = torch.Generator().manual_seed(0)
    cls = [torch.randn(2, num_classes, h, w, generator=g) for h, w in sizes]
    reg = [torch.rand(2, 4, h, w, generator=g) * 10 + 1 for h, w in sizes]
    ctr = [torch.randn(2, 1, h, w, generator=g) for h, w in sizes]
    cls_t = [torch.full((2, h, w), -1) for h, w in sizes]
    cls_t[0][0, 1, 1] = 2
    cls_t[0][1, 2, 3] = 0
    cls_t[1][1, 0, 0] = 1
    reg_t = [torch.rand(2, 4, h, w, generator=g) * 10 + 1 for h, w in sizes]
    ctr_t = [torch.rand(2, h, w, generator=g) for h, w in sizes]
    return cls, reg, ctr, cls_t, reg_t, ctr_t


def test_fcos_loss_standalone_normalises_by_positives() -> None:
    cls, reg, ctr, cls_t, reg_t, ctr_t = _level_inputs()
    loss = FCOSLoss(num_classes=3, strides=(8, 16))
    out = loss(cls, reg, ctr, cls_t, reg_t, ctr_t)
    assert out["num_pos"].item() == 3
    flat_logits = torch.cat([c.flatten(2) for c in cls], 2).transpose(1, 2).reshape(-1, 3)
    flat_t = torch.cat([t.flatten(1) for t in cls_t], 1).reshape(-1)
    expected_cls = FocalLoss(reduction="sum")(flat_logits, flat_t) / 3
    torch.testing.assert_close(out["cls_loss"], expected_cls)
    torch.testing.assert_close(
        out["total_loss"], out["cls_loss"] + out["reg_loss"] + out["centerness_loss"]
    )
    for key in ("cls_loss", "reg_loss", "centerness_loss", "total_loss"):
        assert out[key].item() >= 0


def test_fcos_loss_uses_reg_loss_fn_giou_by_default() -> None:
    cls, reg, ctr, cls_t, reg_t, ctr_t = _level_inputs()
    default = FCOSLoss(3, strides=(8, 16))(cls, reg, ctr, cls_t, reg_t, ctr_t)["reg_loss"]
    giou = FCOSLoss(3, strides=(8, 16), reg_loss_fn=GIoULoss(reduction="sum"))(
        cls, reg, ctr, cls_t, reg_t, ctr_t
    )["reg_loss"]
    iou_log = FCOSLoss(3, strides=(8, 16), reg_loss_fn=IoULoss(reduction="sum", mode="log"))(
        cls, reg, ctr, cls_t, reg_t, ctr_t
    )["reg_loss"]
    torch.testing.assert_close(default, giou)
    assert not torch.allclose(default, iou_log)

    class L1NoWeights(nn.Module):  # a user loss without a weights argument
        def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return (pred - target).abs().sum()

    l1 = FCOSLoss(3, strides=(8, 16), reg_loss_fn=L1NoWeights())(
        cls, reg, ctr, cls_t, reg_t, ctr_t
    )["reg_loss"]
    assert l1.item() > 0 and not torch.allclose(l1, default)


def test_centerness_box_weighting_is_the_weighted_mean_over_positives() -> None:
    from autotimm.losses import detection_losses
    from autotimm.ops.boxes import level_points, ltrb_to_xyxy

    cls, reg, ctr, cls_t, reg_t, ctr_t = _level_inputs()
    points = level_points([(4, 4), (2, 2)], (8, 16))

    def flat(maps):  # [B, K, H, W] per level -> [B, P, K]
        return torch.cat([m.flatten(2) for m in maps], 2).transpose(1, 2)

    args = (
        flat(cls), flat(reg), flat(ctr)[..., 0], torch.cat([t.flatten(1) for t in cls_t], 1),
        flat(reg_t), torch.cat([t.flatten(1) for t in ctr_t], 1), points,
        FocalLoss(reduction="sum"), GIoULoss(reduction="sum"),
    )
    uniform = detection_losses(*args)  # the default: torchvision's
    weighted = detection_losses(*args, box_weighting="centerness")
    pos = args[3] >= 0
    per_box = GIoULoss(reduction="none")(
        ltrb_to_xyxy(points, args[1])[pos], ltrb_to_xyxy(points, args[4])[pos]
    )
    w = args[5][pos]
    torch.testing.assert_close(weighted["reg_loss"], (w * per_box).sum() / w.sum())
    torch.testing.assert_close(uniform["reg_loss"], per_box.mean())
    assert not torch.allclose(weighted["reg_loss"], uniform["reg_loss"])
    for key in ("cls_loss", "centerness_loss", "num_pos"):  # only the box term changes
        torch.testing.assert_close(weighted[key], uniform[key])
    with pytest.raises(ValueError, match="box_weighting"):
        detection_losses(*args, box_weighting="iou")
    with pytest.raises(ValueError, match="box_weighting"):
        FCOSLoss(3, box_weighting="iou")


def test_fcos_loss_checks_levels() -> None:
    cls, reg, ctr, cls_t, reg_t, ctr_t = _level_inputs()
    with pytest.raises(ValueError, match="strides"):
        FCOSLoss(3)(cls, reg, ctr, cls_t, reg_t, ctr_t)
    with pytest.raises(ValueError, match="num_classes"):
        FCOSLoss(0)


# --------------------------------------------------------------- registry
def test_registry_names_aliases_and_errors() -> None:
    registry = get_loss_registry()
    assert registry is get_loss_registry()
    for name in ("focal", "giou", "centerness", "fcos", "iou", "diou", "ciou"):
        assert name in list_available_losses("detection")
    assert {"cross_entropy", "bce_with_logits", "mse", "nll"} <= set(
        list_available_losses("classification")
    )
    assert isinstance(registry.get_loss("ce"), nn.CrossEntropyLoss)
    focal = registry.get_loss("focal", alpha=0.5, gamma=1.0, reduction="sum")
    assert isinstance(focal, FocalLoss) and focal.alpha == 0.5 and focal.reduction == "sum"
    assert registry.has_loss("bce") and not registry.has_loss("nope")
    with pytest.raises(ValueError, match="not found in registry"):
        registry.get_loss("nope")
    with pytest.raises(ValueError, match="Unknown task"):
        registry.list_losses("audio")
    with pytest.raises(ValueError, match="nn.Module"):
        LossRegistry().register_loss("x", int)  # type: ignore[arg-type]
    info = registry.get_loss_info()
    assert set(info) == {"classification", "detection", "segmentation"}
    assert "giou" in info["detection"] and "cross_entropy" in info["classification"]
    assert LossRegistry().has_loss("focal")  # a new registry holds the built-ins


def test_register_custom_loss() -> None:
    class MyLoss(nn.Module):
        def __init__(self, reduction: str = "mean") -> None:
            super().__init__()
            self.reduction = reduction

    register_custom_loss("my_test_loss", MyLoss, alias="mtl")
    assert isinstance(get_loss_registry().get_loss("mtl", reduction="sum"), MyLoss)
    assert "my_test_loss" in list_available_losses()


def _ranks_worker(rank: int, world: int, store: str, results) -> None:
    import torch.distributed as dist

    from autotimm.losses._distributed import mean_over_ranks
    from autotimm.losses.fcos import detection_losses

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        num_pos = torch.tensor(2.0 + 4.0 * rank)  # 2 and 6 positives: the mean is 4
        labels = torch.full((1, 8), -1, dtype=torch.int64)
        labels[0, : int(num_pos)] = 0
        points = torch.zeros(8, 2)
        losses = detection_losses(
            torch.zeros(1, 8, 1), torch.ones(1, 8, 4), None, labels, torch.ones(1, 8, 4), None,
            points, FocalLoss(reduction="sum"), GIoULoss(reduction="sum"),
        )
        plain = FocalLoss(reduction="sum")(torch.zeros(8, 1), labels.reshape(-1))
        results[rank] = (float(mean_over_ranks(num_pos)), float(losses["cls_loss"]),
                         float(plain / 4), float(losses["num_pos"]))
    finally:
        dist.destroy_process_group()


def test_num_pos_is_averaged_over_ranks(tmp_path) -> None:
    """Two gloo processes with 2 and 6 positives both normalise by 4."""
    import torch.multiprocessing as mp

    results = mp.Manager().dict()
    mp.spawn(_ranks_worker, args=(2, str(tmp_path / "store"), results), nprocs=2, join=True)
    for rank in (0, 1):
        mean, cls_loss, expected, own = results[rank]
        assert mean == 4.0 and cls_loss == pytest.approx(expected) and own == 2.0 + 4.0 * rank
