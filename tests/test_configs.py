"""FeatureBackboneConfig, MetricConfig / MetricManager, LoggingConfig, TransformConfig, seeding."""

from __future__ import annotations

import random
import sys

import pytest
import torch
import torch.nn as nn

import autotimm
from autotimm import (
    FeatureBackboneConfig,
    LoggingConfig,
    MetricConfig,
    MetricManager,
    TransformConfig,
    create_feature_backbone,
    get_feature_channels,
    get_feature_info,
    get_feature_strides,
    list_transform_presets,
    seed_everything,
)
from autotimm.core.metrics import resolve_metric_class


# --------------------------------------------------------------- backbone
def test_feature_backbone_fields_are_honoured() -> None:
    cfg = FeatureBackboneConfig(
        "resnet18", pretrained=False, out_indices=(3, 4), drop_rate=0.3, drop_path_rate=0.2,
        extra_kwargs={"in_chans": 1},
    )
    bb = create_feature_backbone(cfg)
    assert get_feature_channels(bb) == [256, 512]
    assert get_feature_strides(bb) == [16, 32]
    assert get_feature_info(bb)[0]["num_chs"] == 256
    assert bb.conv1.in_channels == 1  # extra_kwargs
    assert bb.drop_rate == 0.3 if hasattr(bb, "drop_rate") else True
    drop_paths = [m for m in bb.modules() if type(m).__name__ == "DropPath"]
    assert drop_paths and max(m.drop_prob for m in drop_paths) == pytest.approx(0.2, abs=0.05)
    default = create_feature_backbone(FeatureBackboneConfig("resnet18", pretrained=False))
    assert get_feature_strides(default) == [4, 8, 16, 32]


def test_feature_backbone_errors() -> None:
    with pytest.raises(ValueError, match="not found in timm"):
        create_feature_backbone(FeatureBackboneConfig("no_such_net", pretrained=False))
    with pytest.raises(ValueError, match="drop_rate"):
        FeatureBackboneConfig("resnet18", drop_rate=1.5)
    with pytest.raises(AttributeError, match="feature_info"):
        get_feature_channels(nn.Linear(2, 2))


def test_pretrained_without_network_names_the_way_out(monkeypatch) -> None:
    import timm

    real = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="pretrained=False"):
        create_feature_backbone("resnet18")
    assert create_feature_backbone(FeatureBackboneConfig("resnet18", pretrained=False))


# ---------------------------------------------------------------- metrics
def _map_config(**kw) -> MetricConfig:
    return MetricConfig(
        name="mAP", backend="torchmetrics", metric_class="MeanAveragePrecision",
        params={"box_format": "xyxy", "iou_type": "bbox"}, stages=["val", "test"], **kw,
    )


def test_metric_config_validation() -> None:
    cfg = MetricConfig("acc", "TorchMetrics", "Accuracy", {"task": "multiclass"}, ["VAL"])
    assert cfg.backend == "torchmetrics" and cfg.stages == ["val"]
    with pytest.raises(ValueError, match="backend"):
        MetricConfig("a", "sklearn", "X", {}, ["val"])
    with pytest.raises(ValueError, match="stages"):
        MetricConfig("a", "torchmetrics", "X", {}, ["predict"])
    with pytest.raises(ValueError, match="stages"):
        MetricConfig("a", "torchmetrics", "X", {}, [])
    with pytest.raises(ValueError, match="name"):
        MetricConfig("", "torchmetrics", "X", {}, ["val"])


def test_mean_average_precision_resolves_to_autotimm() -> None:
    cls = resolve_metric_class(_map_config())
    assert cls.__module__.startswith("autotimm.metrics")
    with pytest.raises(ValueError, match="Unknown metric"):
        resolve_metric_class(MetricConfig("x", "torchmetrics", "NoSuchMetric", {}, ["val"]))


def test_metric_manager_resolves_detection_metrics() -> None:
    manager = MetricManager([_map_config()], num_classes=2)
    assert "mAP" in manager.get_val_metrics() and "mAP" in manager.get_test_metrics()
    assert len(manager.get_train_metrics()) == 0
    assert type(manager.get_metric_by_name("mAP", stage="test")).__name__ == "MeanAveragePrecision"
    assert manager.get_config_by_name("mAP").prog_bar is False
    assert manager.get_metric_config("val", "mAP") is manager[0]
    assert manager.get_metric_config("train", "mAP") is None
    assert len(manager) == 1 and list(manager) == manager.configs and manager.num_classes == 2


def test_metric_manager_injects_num_classes_and_checks() -> None:
    acc = MetricConfig("acc", "torchmetrics", "Accuracy", {"task": "multiclass"}, ["train"])
    manager = MetricManager([acc], num_classes=5)
    assert manager.get_metric_by_name("acc", "train").num_classes == 5
    custom = MetricConfig("m", "custom", "torchmetrics.MeanMetric", {}, ["val"])
    assert type(MetricManager([custom], 2).get_val_metrics()["m"]).__name__ == "MeanMetric"
    with pytest.raises(ValueError, match="at least one"):
        MetricManager([], 2)
    with pytest.raises(ValueError, match="num_classes"):
        MetricManager([acc], 0)
    with pytest.raises(ValueError, match="fully qualified"):
        MetricManager([MetricConfig("m", "custom", "MeanMetric", {}, ["val"])], 2)


def test_default_metric_needs_no_pycocotools(monkeypatch) -> None:
    # A bare install has neither pycocotools nor faster-coco-eval.
    for mod in ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval", "faster_coco_eval"):
        monkeypatch.setitem(sys.modules, mod, None)
    import torchmetrics.utilities.imports as tmi

    for flag in ("_PYCOCOTOOLS_AVAILABLE", "_FASTER_COCO_EVAL_AVAILABLE"):
        if hasattr(tmi, flag):
            monkeypatch.setattr(tmi, flag, False)
    metric = MetricManager([_map_config()], 2).get_val_metrics()["mAP"]
    metric.update(
        [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.9]),
          "labels": torch.tensor([1])}],
        [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}],
    )
    assert metric.compute()["map_50"].item() == pytest.approx(1.0)


# ---------------------------------------------------------------- logging
def test_logging_config() -> None:
    cfg = LoggingConfig(log_learning_rate=False, log_gradient_norm=True)
    assert cfg.log_weight_norm is False and cfg.verbosity == 1 and cfg.predictions_per_epoch == 8
    with pytest.raises(ValueError, match="verbosity"):
        LoggingConfig(True, True, verbosity=3)
    with pytest.raises(ValueError, match="predictions_per_epoch"):
        LoggingConfig(True, True, predictions_per_epoch=-1)


# -------------------------------------------------------------- transforms
def test_transform_config() -> None:
    cfg = TransformConfig(image_size=96, mean=(0.5, 0.5, 0.5), std=[0.2, 0.2, 0.2])
    assert cfg.std == (0.2, 0.2, 0.2)
    over = cfg.with_overrides(image_size=64)
    assert over.image_size == 64 and cfg.image_size == 96
    assert cfg.to_dict()["mean"] == (0.5, 0.5, 0.5)
    assert list_transform_presets() == [
        "default", "autoaugment", "randaugment", "trivialaugment", "light"
    ]
    assert list_transform_presets("albumentations") == ["default", "strong", "light"]
    for bad in ({"backend": "kornia"}, {"image_size": 0}, {"crop_pct": 0.0},
                {"mean": (0.5, 0.5)}, {"preset": "strong"}):
        with pytest.raises(ValueError):
            TransformConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        cfg.with_overrides(size=3)


# ----------------------------------------------------------------- seeding
def test_seed_everything_reproducible() -> None:
    assert seed_everything(7) == 7
    a = (random.random(), torch.rand(3))
    seed_everything(7)
    b = (random.random(), torch.rand(3))
    assert a[0] == b[0] and torch.equal(a[1], b[1])
    with pytest.raises(TypeError, match="seed"):
        seed_everything("7")  # type: ignore[arg-type]


def test_public_names() -> None:
    for name in ("ObjectDetector", "FeatureBackboneConfig", "TransformConfig", "LoggingConfig",
                 "MetricConfig", "MetricManager", "get_loss_registry", "FocalLoss", "GIoULoss",
                 "IoULoss", "CenternessLoss", "FCOSLoss", "FPN", "DetectionHead", "YOLOXHead",
                 "export_to_onnx", "list_transform_presets", "seed_everything"):
        assert getattr(autotimm, name) is not None
    import importlib

    assert importlib.import_module("autotimm.task").ObjectDetector is autotimm.ObjectDetector
    assert importlib.import_module("autotimm.loss").FocalLoss is autotimm.FocalLoss
