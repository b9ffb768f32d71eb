"""Signature parity with AutoTimm 0.7.34 for every exported detection-side name.

The AutoTimm signatures below were read from the 0.7.34 sources and are kept here as
data, so the test needs no download. For each callable, AutoTimm's parameters must
come first, in order, with the same names, kinds and defaults; ours may add
parameters after them when they are optional (a default, keyword-only or ``**``).
The few deliberate differences are listed in ``DIFFERENCES`` with their reason, and
the test fails if one of them disappears (so the list stays true).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
from typing import Any

import pytest
import torch

import autotimm

REQUIRED = inspect.Parameter.empty


class Factory:
    """A dataclass field with ``default_factory`` producing ``value``."""

    def __init__(self, value: Any) -> None:
        self.value = value


P = tuple[str, Any]  # (name, default); "*name" / "**name" mark var-positional / var-keyword

#: AutoTimm 0.7.34's signatures, ``self`` left out. Key: "Name" or "Name.method".
AUTOTIMM: dict[str, list[P]] = {
    # ------------------------------------------------------------- task
    "ObjectDetector": [
        ("backbone", REQUIRED),
        ("num_classes", REQUIRED),
        ("detection_arch", "fcos"),
        ("cls_loss_fn", None),
        ("reg_loss_fn", None),
        ("metrics", None),
        ("logging_config", None),
        ("transform_config", None),
        ("lr", 1e-4),
        ("weight_decay", 1e-4),
        ("optimizer", "adamw"),
        ("optimizer_kwargs", None),
        ("scheduler", "cosine"),
        ("scheduler_kwargs", None),
        ("fpn_channels", 256),
        ("head_num_convs", 4),
        ("focal_alpha", 0.25),
        ("focal_gamma", 2.0),
        ("cls_loss_weight", 1.0),
        ("reg_loss_weight", 1.0),
        ("centerness_loss_weight", 1.0),
        ("score_thresh", 0.05),
        ("nms_thresh", 0.5),
        ("max_detections_per_image", 100),
        ("freeze_backbone", False),
        ("strides", (8, 16, 32, 64, 128)),
        ("regress_ranges", None),
        ("compile_model", True),
        ("compile_kwargs", None),
        ("seed", None),
        ("deterministic", True),
    ],
    "ObjectDetector.forward": [("images", REQUIRED)],
    "ObjectDetector.training_step": [("batch", REQUIRED), ("batch_idx", REQUIRED)],
    "ObjectDetector.validation_step": [("batch", REQUIRED), ("batch_idx", REQUIRED)],
    "ObjectDetector.test_step": [("batch", REQUIRED), ("batch_idx", REQUIRED)],
    "ObjectDetector.predict": [("images", REQUIRED)],
    "ObjectDetector.predict_step": [("batch", REQUIRED), ("batch_idx", REQUIRED)],
    "ObjectDetector.to_onnx": [
        ("save_path", None),
        ("example_input", None),
        ("opset_version", 17),
        ("dynamic_axes", None),
        ("**kwargs", REQUIRED),
    ],
    "ObjectDetector.configure_optimizers": [],
    "ObjectDetector.on_before_optimizer_step": [("optimizer", REQUIRED)],
    "ObjectDetector.on_fit_start": [],
    "ObjectDetector.on_validation_epoch_end": [],
    "ObjectDetector.on_test_epoch_end": [],
    # ------------------------------------------------------------- heads
    "FPN": [
        ("in_channels_list", REQUIRED),
        ("out_channels", 256),
        ("num_extra_levels", 2),
        ("use_depthwise", False),
    ],
    "FPN.forward": [("features", REQUIRED)],
    "ScaleModule": [("init_value", 1.0)],
    "ScaleModule.forward": [("x", REQUIRED)],
    "DetectionHead": [
        ("in_channels", 256),
        ("num_classes", 80),
        ("num_convs", 4),
        ("prior_prob", 0.01),
        ("use_group_norm", True),
        ("num_groups", 32),
    ],
    "DetectionHead.forward": [("features", REQUIRED)],
    "DetectionHead.forward_single": [("feat", REQUIRED), ("scale_idx", 0)],
    "YOLOXHead": [
        ("in_channels", 256),
        ("num_classes", 80),
        ("num_convs", 2),
        ("prior_prob", 0.01),
        ("use_group_norm", True),
        ("num_groups", 32),
        ("use_depthwise", False),
        ("activation", "silu"),
    ],
    "YOLOXHead.forward": [("features", REQUIRED)],
    # ------------------------------------------------------------- losses
    "FocalLoss": [("alpha", 0.25), ("gamma", 2.0), ("reduction", "mean")],
    "FocalLoss.forward": [("inputs", REQUIRED), ("targets", REQUIRED)],
    "GIoULoss": [("reduction", "mean"), ("eps", 1e-7)],
    "GIoULoss.forward": [("pred_boxes", REQUIRED), ("target_boxes", REQUIRED), ("weights", None)],
    "CenternessLoss": [("reduction", "mean")],
    "CenternessLoss.forward": [("pred", REQUIRED), ("target", REQUIRED), ("weights", None)],
    "FCOSLoss": [
        ("num_classes", REQUIRED),
        ("focal_alpha", 0.25),
        ("focal_gamma", 2.0),
        ("cls_weight", 1.0),
        ("reg_weight", 1.0),
        ("centerness_weight", 1.0),
    ],
    "FCOSLoss.forward": [
        ("cls_preds", REQUIRED),
        ("reg_preds", REQUIRED),
        ("centerness_preds", REQUIRED),
        ("cls_targets", REQUIRED),
        ("reg_targets", REQUIRED),
        ("centerness_targets", REQUIRED),
    ],
    "LossRegistry": [],
    "LossRegistry.register_loss": [("name", REQUIRED), ("loss_class", REQUIRED), ("alias", None)],
    "LossRegistry.get_loss": [("name", REQUIRED), ("**kwargs", REQUIRED)],
    "LossRegistry.list_losses": [("task", None)],
    "LossRegistry.has_loss": [("name", REQUIRED)],
    "LossRegistry.get_loss_info": [],
    "get_loss_registry": [],
    "register_custom_loss": [("name", REQUIRED), ("loss_class", REQUIRED), ("alias", None)],
    "list_available_losses": [("task", None)],
    # ------------------------------------------------------------- metrics and configs
    "MetricConfig": [
        ("name", REQUIRED),
        ("backend", REQUIRED),
        ("metric_class", REQUIRED),
        ("params", REQUIRED),
        ("stages", REQUIRED),
        ("log_on_step", False),
        ("log_on_epoch", True),
        ("prog_bar", False),
    ],
    "LoggingConfig": [
        ("log_learning_rate", REQUIRED),
        ("log_gradient_norm", REQUIRED),
        ("log_weight_norm", False),
        ("log_confusion_matrix", False),
        ("log_predictions", False),
        ("predictions_per_epoch", 8),
        ("verbosity", 1),
    ],
    "MetricManager": [("configs", REQUIRED), ("num_classes", REQUIRED)],
    "MetricManager.get_train_metrics": [],
    "MetricManager.get_val_metrics": [],
    "MetricManager.get_test_metrics": [],
    "MetricManager.get_metric_config": [("stage", REQUIRED), ("name", REQUIRED)],
    "MetricManager.get_metric_by_name": [("name", REQUIRED), ("stage", None)],
    "MetricManager.get_config_by_name": [("name", REQUIRED)],
    "TransformConfig": [
        ("preset", "default"),
        ("backend", "torchvision"),
        ("image_size", 224),
        ("use_timm_config", True),
        ("mean", None),
        ("std", None),
        ("interpolation", "bicubic"),
        ("crop_pct", 0.875),
        ("min_bbox_area", 0.0),
        ("min_visibility", 0.0),
        ("bbox_format", "coco"),
        ("ignore_index", 255),
        ("randaugment_num_ops", 2),
        ("randaugment_magnitude", 9),
    ],
    "TransformConfig.with_overrides": [("**kwargs", REQUIRED)],
    "TransformConfig.to_dict": [],
    "list_transform_presets": [("backend", "torchvision"), ("verbose", False)],
    "seed_everything": [("seed", 42), ("deterministic", False)],
    # ------------------------------------------------------------- training
    "TunerConfig": [
        ("auto_lr", True),
        ("auto_batch_size", True),
        ("lr_find_kwargs", None),
        ("batch_size_kwargs", None),
    ],
    "AutoTrainer": [
        ("max_epochs", 10),
        ("accelerator", "auto"),
        ("devices", "auto"),
        ("precision", 32),
        ("logger", False),
        ("tuner_config", None),
        ("checkpoint_monitor", "val/loss"),
        ("checkpoint_mode", "min"),
        ("callbacks", None),
        ("default_root_dir", "."),
        ("gradient_clip_val", None),
        ("accumulate_grad_batches", 1),
        ("val_check_interval", 1.0),
        ("enable_checkpointing", True),
        ("fast_dev_run", False),
        ("seed", None),
        ("deterministic", False),
        ("use_autotimm_seeding", False),
        ("json_progress", False),
        ("json_progress_every_n_steps", 10),
        ("json_progress_log_file", None),
        ("**trainer_kwargs", REQUIRED),
    ],
    "AutoTrainer.fit": [
        ("model", REQUIRED),
        ("train_dataloaders", None),
        ("val_dataloaders", None),
        ("datamodule", None),
        ("ckpt_path", None),
    ],
    "AutoTrainer.test": [
        ("model", None),
        ("dataloaders", None),
        ("datamodule", None),
        ("ckpt_path", "best"),
        ("verbose", True),
    ],
    # ------------------------------------------------------------- data
    "DetectionDataModule": [
        ("data_dir", "./coco"),
        ("train_images_dir", None),
        ("val_images_dir", None),
        ("train_ann_file", None),
        ("val_ann_file", None),
        ("test_images_dir", None),
        ("test_ann_file", None),
        ("train_csv", None),
        ("val_csv", None),
        ("test_csv", None),
        ("image_dir", None),
        ("image_column", "image_path"),
        ("bbox_columns", None),
        ("label_column", "label"),
        ("image_size", 640),
        ("batch_size", 16),
        ("num_workers", min(os.cpu_count() or 4, 4)),
        ("train_transforms", None),
        ("eval_transforms", None),
        ("augmentation_preset", "default"),
        ("transform_config", None),
        ("backbone", None),
        ("pin_memory", True),
        ("persistent_workers", False),
        ("prefetch_factor", None),
        ("min_bbox_area", 0.0),
        ("class_ids", None),
    ],
    "DetectionDataModule.setup": [("stage", None)],
    "DetectionDataModule.train_dataloader": [],
    "DetectionDataModule.val_dataloader": [],
    "DetectionDataModule.test_dataloader": [],
    "COCODetectionDataset": [
        ("images_dir", REQUIRED),
        ("annotations_file", REQUIRED),
        ("transform", None),
        ("min_bbox_area", 0.0),
        ("class_ids", None),
    ],
    "CSVDetectionDataset": [
        ("csv_path", REQUIRED),
        ("image_dir", "."),
        ("image_column", "image_path"),
        ("bbox_columns", None),
        ("label_column", "label"),
        ("transform", None),
        ("min_bbox_area", 0.0),
    ],
    "detection_collate_fn": [("batch", REQUIRED)],
    # ------------------------------------------------------------- backbone helpers
    "FeatureBackboneConfig": [
        ("model_name", "resnet50"),
        ("pretrained", True),
        ("out_indices", (1, 2, 3, 4)),
        ("drop_rate", 0.0),
        ("drop_path_rate", 0.0),
        ("extra_kwargs", Factory({})),
    ],
    "create_feature_backbone": [("cfg", REQUIRED)],
    "get_feature_info": [("backbone", REQUIRED)],
    "get_feature_channels": [("backbone", REQUIRED)],
    "get_feature_strides": [("backbone", REQUIRED)],
    "get_model_source": [("model_name", REQUIRED)],
    "list_backbones": [("pattern", ""), ("pretrained_only", False), ("with_source", False)],
    "BackboneConfig": [
        ("model_name", "resnet50"),
        ("pretrained", True),
        ("num_classes", 0),
        ("drop_rate", 0.0),
        ("drop_path_rate", 0.0),
        ("extra_kwargs", Factory({})),
    ],
    "create_backbone": [("cfg", REQUIRED)],
    "get_backbone_out_features": [("backbone", REQUIRED)],
    "list_hf_hub_backbones": [
        ("author", "timm"),
        ("model_name", None),
        ("limit", 50),
        ("with_source", False),
    ],
}

#: AutoTimm's properties on the classes above.
AUTOTIMM_PROPERTIES: dict[str, tuple[str, ...]] = {
    "MetricManager": ("configs", "num_classes"),
    "AutoTrainer": ("tuner_config",),
}

#: Deliberate differences: (key, parameter) -> why.
DIFFERENCES: dict[tuple[str, str], str] = {
    ("FeatureBackboneConfig", "out_indices"): (
        "default None: create_feature_backbone still returns AutoTimm's (1, 2, 3, 4), but the "
        "detector then picks the levels at strides 8/16/32 of any timm model; AutoTimm's "
        "(1, 2, 3, 4) default cannot be told from an explicit choice"
    ),
}

#: Names of AutoTimm's module aliases and what each must hold.
MODULE_ALIASES: dict[str, tuple[str, ...]] = {
    "loss": (
        "FocalLoss",
        "GIoULoss",
        "CenternessLoss",
        "FCOSLoss",
        "LossRegistry",
        "get_loss_registry",
        "register_custom_loss",
        "list_available_losses",
    ),
    "metric": ("MetricConfig", "MetricManager", "LoggingConfig"),
    "head": ("FPN", "DetectionHead", "YOLOXHead", "ScaleModule"),
    "task": ("ObjectDetector",),
}


def _resolve(key: str) -> Any:
    name, _, method = key.partition(".")
    obj = getattr(autotimm, name)
    return getattr(obj, method) if method else obj


def _ours(key: str) -> list[inspect.Parameter]:
    obj = _resolve(key)
    params = list(inspect.signature(obj).parameters.values())
    if "." in key and params and params[0].name == "self":
        params = params[1:]
    return params


def _their_kind(name: str) -> tuple[str, inspect._ParameterKind]:
    if name.startswith("**"):
        return name[2:], inspect.Parameter.VAR_KEYWORD
    if name.startswith("*"):
        return name[1:], inspect.Parameter.VAR_POSITIONAL
    return name, inspect.Parameter.POSITIONAL_OR_KEYWORD


def _default_matches(key: str, ours: inspect.Parameter, expected: Any) -> bool:
    if isinstance(expected, Factory):
        cls = _resolve(key)
        field = {f.name: f for f in dataclasses.fields(cls)}[ours.name]
        return field.default_factory is not dataclasses.MISSING and (
            field.default_factory() == expected.value
        )
    if expected is REQUIRED:
        return ours.default is REQUIRED
    return type(ours.default) is type(expected) and ours.default == expected


def _mismatches(key: str) -> list[str]:
    ours = _ours(key)
    problems = []
    for i, (raw_name, default) in enumerate(AUTOTIMM[key]):
        name, kind = _their_kind(raw_name)
        if i >= len(ours):
            problems.append(f"{key}: missing parameter {raw_name!r}")
            continue
        mine = ours[i]
        if mine.name != name:
            problems.append(f"{key}: parameter {i} is {mine.name!r}, AutoTimm has {name!r}")
        elif mine.kind != kind:
            problems.append(f"{key}: {name} is {mine.kind.description}, not {kind.description}")
        elif kind == inspect.Parameter.POSITIONAL_OR_KEYWORD and not _default_matches(
            key, mine, default
        ):
            if (key, name) not in DIFFERENCES:
                shown = "required" if default is REQUIRED else repr(default)
                problems.append(f"{key}: {name} defaults to {mine.default!r}, AutoTimm {shown}")
    for extra in ours[len(AUTOTIMM[key]) :]:
        optional = extra.default is not REQUIRED or extra.kind in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        )
        if not optional or (
            extra.kind == inspect.Parameter.KEYWORD_ONLY and extra.default is REQUIRED
        ):
            problems.append(f"{key}: added parameter {extra.name!r} is required")
    return problems


@pytest.mark.parametrize("key", sorted(AUTOTIMM))
def test_autotimm_parameters_come_first_with_equal_defaults(key: str) -> None:
    assert _mismatches(key) == []


def test_recorded_differences_are_real() -> None:
    for (key, name), reason in DIFFERENCES.items():
        expected = dict(AUTOTIMM[key])[name]
        mine = {p.name: p for p in _ours(key)}[name]
        assert not _default_matches(key, mine, expected), f"{key}.{name} now matches: {reason}"


def test_properties() -> None:
    config = autotimm.MetricConfig(
        name="mAP",
        backend="torchmetrics",
        metric_class="MeanAveragePrecision",
        params={},
        stages=["val"],
    )
    objects = {
        "MetricManager": autotimm.MetricManager(configs=[config], num_classes=2),
        "AutoTrainer": autotimm.AutoTrainer(
            max_epochs=1, tuner_config=False, enable_checkpointing=False
        ),
    }
    for name, props in AUTOTIMM_PROPERTIES.items():
        for prop in props:
            assert hasattr(objects[name], prop), f"{name}.{prop}"
    assert objects["MetricManager"].configs == [config]
    assert objects["MetricManager"].num_classes == 2
    assert objects["AutoTrainer"].tuner_config is None


@pytest.mark.parametrize("alias", sorted(MODULE_ALIASES))
def test_module_aliases(alias: str) -> None:
    module = importlib.import_module(f"autotimm.{alias}")
    assert getattr(autotimm, alias) is module
    for name in MODULE_ALIASES[alias]:
        assert getattr(module, name) is getattr(autotimm, name), f"autotimm.{alias}.{name}"


# --------------------------------------------------------- inputs and return types
def test_heads_take_any_number_of_levels_and_return_lists() -> None:
    feats = [torch.randn(1, 32, s, s) for s in (16, 8, 4)]  # AutoTimm's example: P3-P5
    cls, reg = autotimm.YOLOXHead(in_channels=32, num_classes=3)(feats)
    assert isinstance(cls, list) and [tuple(c.shape) for c in cls][0] == (1, 3, 16, 16)
    assert tuple(reg[0].shape) == (1, 4, 16, 16)
    six = [torch.randn(1, 32, 2, 2) for _ in range(6)]  # more levels than scales
    outs = autotimm.DetectionHead(in_channels=32, num_classes=3)(six)
    assert isinstance(outs, tuple) and len(outs) == 3 and all(len(o) == 6 for o in outs)
    single = autotimm.DetectionHead(in_channels=32, num_classes=3).forward_single(feats[0], 7)
    assert [tuple(t.shape[1:2]) for t in single] == [(3,), (4,), (1,)]
    assert isinstance(
        autotimm.FPN([32, 64])([torch.randn(1, 32, 8, 8), torch.randn(1, 64, 4, 4)]), list
    )


def test_losses_accept_autotimm_inputs() -> None:
    focal = autotimm.FocalLoss()
    dense = focal(torch.randn(2, 3, 4, 4), torch.randint(-1, 3, (2, 4, 4)))  # [N, C, H, W]
    assert dense.dim() == 0
    # -1 is background, a negative for every class (AutoTimm ignored it: no negatives)
    assert focal(torch.randn(3, 2), torch.tensor([-1, -1, -1])).item() > 0.0
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 3.0, 5.0]])
    assert autotimm.GIoULoss()(boxes, boxes, torch.ones(2)).abs().item() < 1e-6
    assert autotimm.CenternessLoss()(torch.zeros(4, 1), torch.full((4,), 0.5)).dim() == 0


def test_registry_behaves_as_autotimm() -> None:
    registry = autotimm.LossRegistry()  # a fresh registry holds the built-ins
    assert isinstance(registry.get_loss("focal", alpha=0.5), autotimm.FocalLoss)
    info = registry.get_loss_info()
    assert set(info) == {"classification", "detection", "segmentation"}
    assert {"focal", "giou", "centerness", "fcos"} <= set(info["detection"])
    assert registry.list_losses("Detection") == info["detection"]
    assert isinstance(autotimm.get_loss_registry(), autotimm.LossRegistry)


def test_config_helpers_return_autotimm_types() -> None:
    names = autotimm.list_transform_presets()
    described = autotimm.list_transform_presets(verbose=True)
    assert [n for n, _ in described] == names
    assert all(isinstance(d, str) and d for _, d in described)
    with pytest.raises(TypeError):
        autotimm.LoggingConfig()  # both switches are required, as in AutoTimm
    assert autotimm.seed_everything(7) == 7
    assert autotimm.list_backbones("resnet18", with_source=True) == [
        ("resnet18", autotimm.ModelSource.TIMM)
    ]
    assert autotimm.get_model_source("hf-hub:timm/resnet18.a1_in1k") is autotimm.ModelSource.HF_HUB
