"""ObjectDetector: every constructor parameter's effect, errors, steps, predict, sync-freedom."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torchvision
from torch.profiler import profile

import autotimm
from autotimm import (
    FeatureBackboneConfig,
    GIoULoss,
    LoggingConfig,
    MetricConfig,
    MetricManager,
    ObjectDetector,
    TransformConfig,
)
from autotimm.constants import DEFAULT_PRE_NMS_TOP_K, DEFAULT_REGRESS_RANGES, DEFAULT_STRIDES
from autotimm.losses import FocalLoss, IoULoss
from autotimm.models import DetectionHead, YOLOXHead
from autotimm.ops import fcos_targets

BACKBONE = FeatureBackboneConfig("resnet18", pretrained=False)


def make(**kwargs) -> ObjectDetector:
    args = dict(backbone=BACKBONE, num_classes=2, fpn_channels=8, head_num_convs=1,
                compile_model=False, deterministic=False)
    args.update(kwargs)
    return ObjectDetector(**args)


def batch_of(n: int = 2, size: int = 64, boxes_per_image: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, boxes_per_image, 2, generator=g) * (size * 0.6)
    wh = torch.rand(n, boxes_per_image, 2, generator=g) * (size * 0.35) + 4
    return {
        "images": torch.randn(n, 3, size, size, generator=g),
        "boxes": list(torch.cat([xy, xy + wh], dim=-1)),
        "labels": list(torch.randint(0, 2, (n, boxes_per_image), generator=g)),
    }


@pytest.fixture(scope="module")
def fcos() -> ObjectDetector:
    return make()


@pytest.fixture(scope="module")
def yolox() -> ObjectDetector:
    return make(detection_arch="yolox")


# ----------------------------------------------------------- construction
def test_signature_matches_the_reference() -> None:
    import inspect

    params = list(inspect.signature(ObjectDetector.__init__).parameters.values())[1:]
    expected = [
        ("backbone", inspect.Parameter.empty), ("num_classes", inspect.Parameter.empty),
        ("detection_arch", "fcos"), ("cls_loss_fn", None), ("reg_loss_fn", None),
        ("metrics", None), ("logging_config", None), ("transform_config", None), ("lr", 1e-4),
        ("weight_decay", 1e-4), ("optimizer", "adamw"), ("optimizer_kwargs", None),
        ("scheduler", "cosine"), ("scheduler_kwargs", None), ("fpn_channels", 256),
        ("head_num_convs", 4), ("focal_alpha", 0.25), ("focal_gamma", 2.0),
        ("cls_loss_weight", 1.0), ("reg_loss_weight", 1.0), ("centerness_loss_weight", 1.0),
        ("score_thresh", 0.05), ("nms_thresh", 0.5), ("max_detections_per_image", 100),
        ("freeze_backbone", False), ("strides", (8, 16, 32, 64, 128)), ("regress_ranges", None),
        ("compile_model", True), ("compile_kwargs", None), ("seed", None),
        ("deterministic", True),
    ]
    got = [(p.name, p.default) for p in params]
    assert got[: len(expected)] == expected  # the reference's parameters, in order
    assert got[len(expected):] == [
        ("center_sampling_radius", 1.5), ("yolox_l1_epochs", 0), ("channels_last", None),
    ]
    assert issubclass(ObjectDetector, autotimm.tasks.preprocessing.PreprocessingMixin)


def test_backbone_string_keeps_pretrained_and_fails_clearly_offline(monkeypatch) -> None:
    import timm

    seen = []
    real = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        seen.append(pretrained)
        if pretrained:
            raise OSError("Name or service not known")
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    # past the quick reachability check, as if the hub answered
    monkeypatch.setattr(autotimm.core.backbone, "check_weights_reachable", lambda *a, **k: None)
    with pytest.raises(RuntimeError, match=r"pretrained=False"):
        ObjectDetector("resnet18", num_classes=2, compile_model=False, deterministic=False)
    assert True in seen  # weights requested (after a weightless probe of the levels)


def test_backbone_config_fields_are_honoured() -> None:
    model = make(backbone=FeatureBackboneConfig("resnet18", pretrained=False,
                                                drop_path_rate=0.1, extra_kwargs={"in_chans": 1}))
    assert model.backbone.conv1.in_channels == 1
    assert any(type(m).__name__ == "DropPath" for m in model.backbone.modules())
    assert model.hparams["backbone"]["extra_kwargs"] == {"in_chans": 1}
    assert model.hparams["backbone_name"] == "resnet18"
    cls, _, _ = model(torch.randn(2, 1, 64, 64))
    assert cls[0].shape == (2, 2, 8, 8)
    # out_indices honoured: C2-C4 gives strides 4..64
    c2 = make(backbone=FeatureBackboneConfig("resnet18", pretrained=False, out_indices=(1, 2, 3)),
              strides=(4, 8, 16, 32, 64))
    assert c2(torch.randn(2, 3, 64, 64))[0][0].shape[-1] == 16


def test_hparams_and_warnings() -> None:
    with pytest.warns(UserWarning, match="deterministic=True has no effect"):
        model = make(deterministic=True)
    for key in ("backbone_name", "username", "timestamp", "num_classes", "lr", "strides"):
        assert key in model.hparams
    for key in ("metrics", "logging_config", "transform_config", "cls_loss_fn", "reg_loss_fn"):
        assert key not in model.hparams
    with pytest.warns(UserWarning, match="compile_kwargs is ignored"):
        make(compile_kwargs={"mode": "default"})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"detection_arch": "retina"}, ValueError, "detection_arch must be 'fcos' or 'yolox'"),
        ({"num_classes": 0}, ValueError, "num_classes"),
        ({"optimizer": "adamax"}, ValueError, "Unknown optimizer"),
        ({"optimizer": {"class": "AdamW"}}, ValueError, "fully qualified"),
        ({"scheduler": "plateau"}, ValueError, "Unknown scheduler"),
        ({"cls_loss_fn": "nope"}, ValueError, "not found in registry"),
        ({"reg_loss_fn": 3}, TypeError, "reg_loss_fn must be a string or nn.Module"),
        ({"cls_loss_fn": 3.0}, TypeError, "cls_loss_fn must be a string or nn.Module"),
        ({"strides": (8, 16, 32, 64)}, ValueError, "regress_ranges"),
        ({"regress_ranges": ((-1, 64), (64, 1e8))}, ValueError, "regress_ranges has 2 levels"),
        ({"strides": (4, 8, 16, 32, 64)}, ValueError, "expected strides=.8, 16, 32, 64, 128"),
        ({"metrics": "mAP"}, TypeError, "metrics must be"),
        ({"metrics": [MetricConfig("m", "torchmetrics", "NoSuchMetric", {}, ["val"])]},
         ValueError, "Unknown metric"),
        ({"score_thresh": 1.5}, ValueError, "score_thresh"),
        ({"max_detections_per_image": 0}, ValueError, "max_detections_per_image"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        make(**kwargs)


# --------------------------------------------------------------- forward
def test_forward_shapes(fcos: ObjectDetector, yolox: ObjectDetector) -> None:
    x = torch.randn(2, 3, 64, 64)
    cls, reg, ctr = fcos(x)
    assert [c.shape[-1] for c in cls] == [8, 4, 2, 1, 1]
    assert all(r.shape[1] == 4 and (r >= 0).all() for r in reg) and ctr[0].shape[1] == 1
    assert isinstance(fcos.head, DetectionHead) and isinstance(yolox.head, YOLOXHead)
    cls, reg, ctr = yolox(x)
    assert ctr is None and all((r > 0).all() for r in reg)


def test_num_classes_fpn_channels_head_num_convs() -> None:
    model = make(num_classes=5, fpn_channels=16, head_num_convs=3)
    assert model.head.cls_pred.out_channels == 5 and model.num_classes == 5
    assert model.fpn.out_channels == 16 and len(model.head.cls_convs) == 3
    assert len(make(detection_arch="yolox", head_num_convs=4).head.cls_convs) == 2
    assert len(make(detection_arch="yolox", head_num_convs=1).head.cls_convs) == 1


# ---------------------------------------------------------------- losses
def test_loss_functions_and_focal_parameters() -> None:
    default = make(focal_alpha=0.4, focal_gamma=1.5)
    assert isinstance(default.focal_loss, FocalLoss) and default.focal_loss.alpha == 0.4
    assert default.focal_loss.gamma == 1.5 and default.focal_loss.reduction == "sum"
    assert isinstance(default.giou_loss, GIoULoss) and default.giou_loss.reduction == "sum"
    named = make(cls_loss_fn="focal", reg_loss_fn="iou", focal_alpha=0.3)
    assert named.focal_loss.alpha == 0.3 and isinstance(named.giou_loss, IoULoss)
    focal = FocalLoss(reduction="sum")
    assert make(cls_loss_fn=focal).focal_loss is focal


def test_reg_loss_fn_is_used_in_training() -> None:
    batch = batch_of()
    losses = []
    for kwargs in ({}, {"reg_loss_fn": "iou"}):
        torch.manual_seed(0)
        model = make(**kwargs)
        nn.init.constant_(model.head.reg_pred.bias, 0.75)  # boxes of about 12 px at stride 8
        losses.append(model.compute_losses(batch)["reg_loss"])
    assert 0 < losses[0].item() < 1 and not torch.allclose(losses[0], losses[1])

    class Counting(nn.Module):
        calls = 0

        def forward(self, pred, target, weights=None):
            Counting.calls += 1
            return GIoULoss(reduction="sum")(pred, target, weights)

    make(reg_loss_fn=Counting(), cls_loss_fn="focal").compute_losses(batch)
    assert Counting.calls == 1


def test_background_points_train_the_classifier(fcos: ObjectDetector) -> None:
    # An image without boxes: every point is background and must produce a loss.
    batch = {"images": torch.randn(2, 3, 64, 64), "boxes": [torch.zeros(0, 4)] * 2,
             "labels": [torch.zeros(0, dtype=torch.long)] * 2}
    losses = fcos.compute_losses(batch)
    assert losses["num_pos"].item() == 0
    assert losses["cls_loss"].item() > 0
    assert losses["reg_loss"].item() == 0 and losses["centerness_loss"].item() == 0


def test_loss_weights_scale_their_terms() -> None:
    batch = batch_of()
    torch.manual_seed(0)
    base = make().compute_losses(batch)
    torch.manual_seed(0)
    weighted = make(cls_loss_weight=2.0, reg_loss_weight=3.0,
                    centerness_loss_weight=0.0).compute_losses(batch)
    torch.testing.assert_close(weighted["cls_loss"], 2 * base["cls_loss"])
    torch.testing.assert_close(weighted["reg_loss"], 3 * base["reg_loss"])
    assert weighted["centerness_loss"].item() == 0
    torch.testing.assert_close(weighted["loss"], 2 * base["cls_loss"] + 3 * base["reg_loss"])
    torch.testing.assert_close(base["loss"],
                               base["cls_loss"] + base["reg_loss"] + base["centerness_loss"])


def test_regress_ranges_and_strides_drive_assignment() -> None:
    batch = batch_of()
    model = make(regress_ranges=((-1, 1e8), (1e8, 2e8), (2e8, 3e8), (3e8, 4e8), (4e8, 5e8)))
    assert model.regress_ranges[0] == (-1.0, 1e8)
    cls_t, _, _ = model._targets(batch, batch["images"], [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)])
    assert (cls_t[:, 64:] == -1).all() and (cls_t[:, :64] >= 0).any()
    default = make()
    assert default.regress_ranges == DEFAULT_REGRESS_RANGES and default.strides == DEFAULT_STRIDES


def test_precomputed_targets_are_used_when_they_fit(fcos: ObjectDetector) -> None:
    batch = batch_of()
    sizes = [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    targets = fcos_targets(batch["boxes"], batch["labels"], (64, 64), feature_sizes=sizes)
    torch.testing.assert_close(fcos.compute_losses({**batch, "targets": targets})["loss"],
                               fcos.compute_losses(batch)["loss"])
    # all-background precomputed targets change the loss; wrongly shaped ones are ignored
    empty = (torch.full_like(targets[0], -1), torch.zeros_like(targets[1]),
             torch.zeros_like(targets[2]))
    assert fcos.compute_losses({**batch, "targets": empty})["num_pos"].item() == 0
    wrong = tuple(t[:, :10] for t in targets)
    assert fcos.compute_losses({**batch, "targets": wrong})["num_pos"].item() > 0


def test_training_step_accepts_image_key_and_int_boxes(yolox: ObjectDetector) -> None:
    batch = batch_of()
    logged = {}
    yolox.log = lambda name, value, **kw: logged.__setitem__(name, value)  # type: ignore
    try:
        alt = {"image": batch["images"], "boxes": [b.round().long() for b in batch["boxes"]],
               "labels": batch["labels"]}
        loss = yolox.training_step(alt, 0)
    finally:
        del yolox.log
    assert loss.item() > 0 and loss.requires_grad
    assert set(logged) == {"train/loss", "train/cls_loss", "train/reg_loss", "train/num_pos"}


def test_training_step_makes_no_host_sync(fcos: ObjectDetector) -> None:
    batch = batch_of(n=8, boxes_per_image=20)
    fcos.log = lambda *a, **k: None  # type: ignore  # logging aside
    try:
        with profile() as control:
            torch.ones(1).item()
        assert "aten::item" in [e.name for e in control.events()]
        sizes = [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
        pre = fcos_targets(batch["boxes"], batch["labels"], (64, 64), feature_sizes=sizes)
        for b in (batch, {**batch, "targets": pre}):
            with profile() as prof:
                fcos.training_step(b, 0)
            names = [e.name for e in prof.events()]
            assert names.count("aten::item") == 0
            assert names.count("aten::_local_scalar_dense") == 0
    finally:
        del fcos.log


# --------------------------------------------------------------- predict
def _reference_predict(model: ObjectDetector, images: torch.Tensor) -> list[dict]:
    """torchvision's FCOS postprocess, per image and level (no top-k): every (point, class)
    above the threshold, FCOS scored sqrt(cls * ctr)."""
    cls_out, reg_out, ctr_out = model(images)
    out = []
    for b in range(images.shape[0]):
        boxes, scores, labels = [], [], []
        for lvl, (c, r) in enumerate(zip(cls_out, reg_out, strict=True)):
            s = model.strides[lvl]
            h, w = c.shape[-2:]
            gy, gx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
            px, py = (gx * s).reshape(-1), (gy * s).reshape(-1)
            sc = c[b].permute(1, 2, 0).reshape(-1, model.num_classes).sigmoid()
            if ctr_out is not None:
                sc = (sc * ctr_out[lvl][b, 0].reshape(-1, 1).sigmoid()).sqrt()
            point, lab = torch.nonzero(sc > model.score_thresh, as_tuple=True)
            best = sc[point, lab]
            ltrb = r[b].permute(1, 2, 0).reshape(-1, 4)[point]
            bx = torch.stack([px[point] - ltrb[:, 0], py[point] - ltrb[:, 1],
                              px[point] + ltrb[:, 2], py[point] + ltrb[:, 3]], -1)
            bx[:, 0::2] = bx[:, 0::2].clamp(0, images.shape[-1])
            bx[:, 1::2] = bx[:, 1::2].clamp(0, images.shape[-2])
            boxes.append(bx), scores.append(best), labels.append(lab)
        bx, sc, lab = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
        keep = torchvision.ops.batched_nms(bx, sc, lab, model.nms_thresh)
        keep = keep[: model.max_detections_per_image]
        out.append({"boxes": bx[keep], "scores": sc[keep], "labels": lab[keep]})
    return out


@pytest.mark.parametrize("arch", ["fcos", "yolox"])
def test_predict_matches_the_reference_postprocess(arch: str) -> None:
    model = make(detection_arch=arch, score_thresh=0.0)
    model.eval()
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        ref = _reference_predict(model, images)
    ours = model.predict(images)
    assert model.pre_nms_top_k == DEFAULT_PRE_NMS_TOP_K
    for o, r in zip(ours, ref, strict=True):
        torch.testing.assert_close(o["scores"], r["scores"])
        torch.testing.assert_close(o["boxes"], r["boxes"])
        assert torch.equal(o["labels"], r["labels"]) and o["labels"].dtype == torch.int64


def test_predict_thresholds_top_k_and_nms(fcos: ObjectDetector, monkeypatch) -> None:
    fcos.eval()
    images = torch.randn(2, 3, 64, 64)
    calls = []
    real = autotimm.ops.batched_nms
    monkeypatch.setattr(autotimm.ops, "batched_nms", lambda *a: calls.append(a) or real(*a))
    for attr, value in (("score_thresh", 0.0), ("nms_thresh", 1.0),
                        ("max_detections_per_image", 1000)):
        monkeypatch.setattr(fcos, attr, value)
    loose = fcos.predict(images)
    assert len(calls) == 1  # one batched NMS call for the whole batch
    # no threshold, no suppression: every (point, class) pair
    assert len(loose[0]["boxes"]) == (64 + 16 + 4 + 1 + 1) * fcos.num_classes
    monkeypatch.setattr(fcos, "pre_nms_top_k", 3)  # per level, at most its pairs
    assert len(fcos.predict(images)[0]["boxes"]) == 3 + 3 + 3 + 2 + 2
    monkeypatch.setattr(fcos, "pre_nms_top_k", DEFAULT_PRE_NMS_TOP_K)
    monkeypatch.setattr(fcos, "max_detections_per_image", 7)
    assert len(fcos.predict(images)[1]["scores"]) == 7
    monkeypatch.setattr(fcos, "nms_thresh", 0.0)
    strict = fcos.predict(images)
    assert len(strict[0]["boxes"]) < 7 or len(strict[0]["boxes"]) <= len(loose[0]["boxes"])
    monkeypatch.setattr(fcos, "score_thresh", 1.0)
    none = fcos.predict(images)
    assert none[0]["boxes"].shape == (0, 4) and none[0]["labels"].dtype == torch.int64
    median = loose[0]["scores"].median().item()
    monkeypatch.setattr(fcos, "score_thresh", median)
    assert (fcos.predict(images)[0]["scores"] > median).all()
    # predict_step takes a dict (either key) or a tensor
    monkeypatch.setattr(fcos, "score_thresh", 0.0)
    n = len(fcos.predict(images)[0]["boxes"])
    assert len(fcos.predict_step({"image": images}, 0)[0]["boxes"]) == n
    assert len(fcos.predict_step(images, 0)[0]["boxes"]) == n


def test_nms_thresh_suppresses_overlaps() -> None:
    model = make(score_thresh=0.0, nms_thresh=0.99, max_detections_per_image=1000)
    nn.init.constant_(model.head.reg_pred.bias, 6.0)  # overlapping boxes of about 12 px
    model.eval()
    images = torch.randn(1, 3, 64, 64)
    loose = len(model.predict(images)[0]["boxes"])
    model.nms_thresh = 0.0
    assert len(model.predict(images)[0]["boxes"]) < loose


# ------------------------------------------------------------- metrics
def test_default_metrics_and_metric_manager(monkeypatch) -> None:
    import sys

    # a bare install: no pycocotools, no faster-coco-eval
    for mod in ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval", "faster_coco_eval"):
        monkeypatch.setitem(sys.modules, mod, None)
    model = make()
    assert list(model.val_metrics) == ["mAP"] and list(model.test_metrics) == ["mAP"]
    assert type(model.val_metrics["mAP"]).__module__.startswith("autotimm.metrics")
    assert model._use_metric_manager is False and model._metric_configs[0].prog_bar
    cfg = MetricConfig("box_map", "torchmetrics", "MeanAveragePrecision", {}, ["test"])
    managed = make(metrics=MetricManager([cfg], num_classes=2))
    assert managed._use_metric_manager and list(managed.test_metrics) == ["box_map"]
    assert len(managed.val_metrics) == 0
    listed = make(metrics=[cfg])
    assert list(listed.test_metrics) == ["box_map"] and len(listed.val_metrics) == 0


def test_validation_and_test_steps_log_metric_keys(fcos: ObjectDetector) -> None:
    batch = batch_of()
    logged: dict = {}
    fcos.log = lambda name, value, **kw: logged.__setitem__(name, kw)  # type: ignore
    try:
        fcos.validation_step(batch, 0)
        fcos.on_validation_epoch_end()
        fcos.test_step({"image": batch["images"], "boxes": batch["boxes"],
                        "labels": batch["labels"]}, 0)
        fcos.on_test_epoch_end()
    finally:
        del fcos.log
    assert {"val/map", "val/map_50", "val/map_75", "test/map", "test/map_50"} <= set(logged)
    assert logged["val/map"]["prog_bar"] is True and logged["val/map_50"]["prog_bar"] is False


# ---------------------------------------------------------- optimizers
def test_optimizers_and_their_kwargs() -> None:
    model = make(lr=0.02, weight_decay=0.003, optimizer="sgd",
                 optimizer_kwargs={"momentum": 0.8}, scheduler=None)
    cfg = model.configure_optimizers()
    opt = cfg["optimizer"]
    assert isinstance(opt, torch.optim.SGD) and "lr_scheduler" not in cfg
    group = opt.param_groups[0]
    assert group["lr"] == 0.02 and group["weight_decay"] == 0.003 and group["momentum"] == 0.8
    for name, cls in (("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam),
                      ("RMSprop", torch.optim.RMSprop)):
        assert isinstance(make(optimizer=name, scheduler="none").configure_optimizers()[
            "optimizer"], cls)
    import timm.optim

    assert isinstance(make(optimizer="lamb", scheduler=None).configure_optimizers()["optimizer"],
                      timm.optim.Lamb)
    custom = make(optimizer={"class": "torch.optim.Adagrad", "params": {"lr_decay": 0.1}},
                  scheduler=None).configure_optimizers()["optimizer"]
    assert isinstance(custom, torch.optim.Adagrad) and custom.param_groups[0]["lr_decay"] == 0.1


def test_schedulers_and_their_kwargs() -> None:
    sched = torch.optim.lr_scheduler
    cases = [
        ("cosine", {"T_max": 10}, sched.CosineAnnealingLR),
        ("step", {"step_size": 3, "interval": "epoch"}, sched.StepLR),
        ("multistep", {"frequency": 2}, sched.MultiStepLR),
        ("onecycle", {"total_steps": 20}, sched.OneCycleLR),
        ({"class": "torch.optim.lr_scheduler.ExponentialLR", "params": {"gamma": 0.5}}, {},
         sched.ExponentialLR),
    ]
    for scheduler, kwargs, cls in cases:
        cfg = make(scheduler=scheduler, scheduler_kwargs=kwargs).configure_optimizers()
        lr_cfg = cfg["lr_scheduler"]
        assert isinstance(lr_cfg["scheduler"], cls)
        assert lr_cfg["interval"] == kwargs.get("interval", "step")
        assert lr_cfg["frequency"] == kwargs.get("frequency", 1)
    step = make(scheduler="step", scheduler_kwargs={"step_size": 3}).configure_optimizers()
    assert step["lr_scheduler"]["scheduler"].step_size == 3
    multi = make(scheduler="multistep").configure_optimizers()["lr_scheduler"]["scheduler"]
    assert sorted(multi.milestones) == [8, 11]


def test_freeze_backbone() -> None:
    model = make(freeze_backbone=True)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    opt = model.configure_optimizers()["optimizer"] if model._scheduler is None else \
        make(freeze_backbone=True, scheduler=None).configure_optimizers()["optimizer"]
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_opt == n_trainable


def test_norm_logging_hooks() -> None:
    model = make(logging_config=LoggingConfig(log_learning_rate=False, log_gradient_norm=True,
                                              log_weight_norm=True))
    model.compute_losses(batch_of())["loss"].backward()
    logged = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, value)  # type: ignore
    model.on_before_optimizer_step(None)  # type: ignore[arg-type]
    grads = torch.cat([p.grad.double().flatten() for p in model.parameters()
                       if p.grad is not None])
    assert logged["train/grad_norm"].item() == pytest.approx(grads.norm().item(), rel=1e-4)
    weights = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    assert logged["train/weight_norm"].item() == pytest.approx(weights.norm().item(), rel=1e-4)
    quiet = make()
    quiet.log = lambda name, value, **kw: logged.__setitem__("quiet/" + name, value)  # type: ignore
    quiet.on_before_optimizer_step(None)  # type: ignore[arg-type]
    assert not any(k.startswith("quiet/") for k in logged)


# ---------------------------------------------------------- transforms
def test_transform_config_enables_preprocessing() -> None:
    model = make(transform_config=TransformConfig(image_size=64, mean=(0.5, 0.5, 0.5)))
    cfg = model.get_data_config()
    assert cfg["input_size"] == (3, 64, 64) and cfg["mean"] == (0.5, 0.5, 0.5)
    assert cfg["std"] == pytest.approx((0.229, 0.224, 0.225))  # from the timm config
    import numpy as np
    from PIL import Image

    img = Image.fromarray(np.full((40, 30, 3), 255, dtype=np.uint8))
    x = model.preprocess(img)
    assert x.shape == (1, 3, 64, 64)
    torch.testing.assert_close(x[0, 0, 0, 0], torch.tensor((1 - 0.5) / 0.229), atol=1e-4, rtol=0)
    assert model.preprocess([img, img]).shape == (2, 3, 64, 64)
    assert model.preprocess(np.zeros((20, 20, 3), dtype=np.uint8)).shape == (1, 3, 64, 64)
    assert model.get_transform(is_train=True) is not model.get_transform()
    plain = make()
    for call in (plain.get_data_config, plain.get_transform, lambda: plain.preprocess(img)):
        with pytest.raises(RuntimeError, match="TransformConfig"):
            call()


# --------------------------------------------------------- seed / compile
def test_seed_and_deterministic() -> None:
    before = torch.are_deterministic_algorithms_enabled()
    try:
        a = make(seed=3, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        b = make(seed=3, deterministic=False)
        c = make(seed=4, deterministic=False)
    finally:
        torch.use_deterministic_algorithms(before)
    assert torch.equal(a.head.cls_pred.weight, b.head.cls_pred.weight)
    assert not torch.equal(a.head.cls_pred.weight, c.head.cls_pred.weight)


def test_compile_model_wraps_backbone_fpn_and_head(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # compiles on CUDA only
    model = make(compile_model=True, compile_kwargs={"dynamic": False})
    for name in ("backbone", "fpn", "head"):
        assert type(getattr(model, name)).__name__ == "OptimizedModule"
    assert model.is_compiled
    # state dicts carry no compile prefix and load into eager models
    state = model.state_dict()
    assert not any("_orig_mod" in k for k in state)
    eager = make()
    eager.load_state_dict(state)
    model.load_state_dict(eager.state_dict())
    seen = {}
    monkeypatch.setattr(torch, "compile", lambda m, **kw: seen.update(kw) or m)
    make(compile_model=True, compile_kwargs={"mode": "reduce-overhead"})
    assert seen == {"mode": "reduce-overhead"}


def test_compile_failures_fall_back_with_a_warning(monkeypatch) -> None:
    def broken(module, **kwargs):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # compiles on CUDA only

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        model = make(compile_model=True)
    assert not model.is_compiled and isinstance(model.head, DetectionHead)

    class OptimizedModule(nn.Module):  # compiles lazily, fails at the first call
        def __init__(self, mod: nn.Module) -> None:
            super().__init__()
            self._orig_mod = mod

        def forward(self, *args):
            from torch._inductor.exc import InvalidCxxCompiler

            raise InvalidCxxCompiler()

    monkeypatch.setattr(torch, "compile", lambda m, **kw: OptimizedModule(m))
    lazy = make(compile_model=True)
    assert lazy.is_compiled
    with pytest.warns(UserWarning, match="first forward"):
        cls, _, _ = lazy(torch.randn(2, 3, 64, 64))
    assert cls[0].shape == (2, 2, 8, 8) and not lazy.is_compiled
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lazy(torch.randn(2, 3, 64, 64))


# ------------------------------------------------------- seed's helpers
def test_seed_private_helpers(fcos: ObjectDetector) -> None:
    points = torch.stack(torch.meshgrid(torch.arange(8) + 0.5, torch.arange(8) + 0.5,
                                        indexing="xy"), -1) * 8
    boxes = torch.tensor([[4.0, 4, 30, 40]])
    cls, reg, ctr = fcos._compute_targets_per_level(points, boxes, torch.tensor([1]), 8, 0,
                                                    (64, 64))
    assert cls.shape == (8, 8) and reg.shape == (8, 8, 4) and ctr.shape == (8, 8)
    assert cls[1, 1] == 1 and cls[7, 7] == -1
    torch.testing.assert_close(reg[1, 1], torch.tensor([8.0, 8.0, 18.0, 28.0]))
    pred = torch.tensor([[1.0, 1, 1, 1]])
    target = torch.tensor([[1.0, 1, 1, 1]])
    assert fcos._compute_iou_loss(pred, target).item() == pytest.approx(0.0, abs=1e-6)
    half = torch.tensor([[1.0, 1, 0, 1]])
    assert fcos._compute_iou_loss(half, target).item() == pytest.approx(-torch.log(
        torch.tensor(0.5)).item(), rel=1e-5)


def test_crowd_regions_are_ignored_by_the_metric() -> None:
    """A detection on a crowd region is neither a true nor a false positive."""
    model = make()
    gt = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    crowd = torch.tensor([[40.0, 40.0, 60.0, 60.0]])
    dets = {
        "boxes": torch.cat([crowd, gt]),
        "scores": torch.tensor([0.9, 0.8]),
        "labels": torch.tensor([0, 0]),
    }
    batch = {"images": torch.zeros(1, 3, 64, 64), "boxes": [gt], "labels": [torch.tensor([0])]}
    with_crowd = {**batch, "crowd_boxes": [crowd], "crowd_labels": [torch.tensor([0])]}
    results = []
    for b in (batch, with_crowd):
        metric = model.val_metrics["mAP"]
        metric.reset()
        model._update_metrics(model.val_metrics, b, [dets])
        results.append(float(metric.compute()["map_50"]))
    assert results[0] < 1.0  # the crowd detection counts as a false positive
    assert results[1] == pytest.approx(1.0)
