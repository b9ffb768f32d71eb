"""ObjectDetector: timm backbone -> FPN -> FCOS / YOLOX head -> NMS, as a LightningModule."""

from __future__ import annotations

import datetime as _dt
import importlib
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn as nn

from autotimm.constants import DEFAULT_PRE_NMS_TOP_K, DEFAULT_REGRESS_RANGES, DEFAULT_STRIDES
from autotimm.core.backbone import FeatureBackboneConfig, get_feature_channels, get_feature_strides
from autotimm.core.compilation import is_compilation_error
from autotimm.core.logging_config import LoggingConfig
from autotimm.core.metrics import MetricConfig, MetricManager, build_metric
from autotimm.core.utils import seed_everything
from autotimm.data.label_checks import assert_labels_in_range_async, check_labels
from autotimm.data.transform_config import TransformConfig
from autotimm.losses import FocalLoss, GIoULoss, IoULoss, get_loss_registry, ltrb_as_boxes
from autotimm.losses.fcos import detection_losses, flatten_levels
from autotimm.losses.yolox import YOLOX_REG_WEIGHT, yolox_losses
from autotimm.models.backbone import build_detection_backbone
from autotimm.models.batchnorm import use_precise_batch_norm
from autotimm.models.fpn import FPN
from autotimm.models.heads import DetectionHead, YOLOXHead
from autotimm.models.layout import conv_memory_format, set_conv_layout
from autotimm.models.postprocess import postprocess_detections, split_detections
from autotimm.ops.boxes import level_points
from autotimm.ops.simota import pad_boxes
from autotimm.tasks.inputs import accepts_image_inputs
from autotimm.tasks.preprocessing import PreprocessingMixin

#: Levels the FPN adds on top of the backbone's coarsest feature (P6, P7).
NUM_EXTRA_LEVELS = 2

_ARCHS = ("fcos", "yolox")
_TORCH_OPTIMIZERS = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}
_TIMM_OPTIMIZERS = {"adamp": "AdamP", "sgdp": "SGDP", "lamb": "Lamb"}
_SCHEDULERS = ("cosine", "step", "multistep", "onecycle")
_COMPILED_CHILDREN = ("backbone", "fpn", "head")
_ORIG = "_orig_mod."


def _import_class(class_path: str) -> Any:
    if not isinstance(class_path, str) or "." not in class_path:
        raise ValueError(f"Class path must be fully qualified, got: {class_path}")
    module_path, class_name = class_path.rsplit(".", 1)
    module = importlib.import_module(module_path)
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ValueError(f"Module '{module_path}' has no class '{class_name}'") from None


def _backbone_config(backbone: Any) -> FeatureBackboneConfig:
    if isinstance(backbone, FeatureBackboneConfig):
        return backbone
    if isinstance(backbone, str):
        return FeatureBackboneConfig(model_name=backbone)
    if isinstance(backbone, dict):
        return FeatureBackboneConfig(**backbone)
    raise TypeError(
        "backbone must be a timm model name (str), a FeatureBackboneConfig or its dict, "
        f"got {type(backbone).__name__}"
    )


def _is_compiled(module: nn.Module) -> bool:
    return hasattr(module, "_orig_mod") and type(module).__name__ == "OptimizedModule"


class ObjectDetector(PreprocessingMixin, pl.LightningModule):
    """Anchor-free object detector: timm backbone -> FPN (P3-P7) -> FCOS or YOLOX head -> NMS.

    Parameters
    ----------
    backbone : str or FeatureBackboneConfig
        timm model name (pretrained weights, as AutoTimm) or a config whose
        fields (``pretrained``, ``out_indices``, ``drop_rate``,
        ``drop_path_rate``, ``extra_kwargs``) are all honoured; ``out_indices``
        None means the levels at strides 8, 16, 32 (a simple pyramid for a plain
        ViT; transformers run at any input size, see ``autotimm.models.backbone``).
        Without network, a pretrained request fails with a message naming
        ``pretrained=False``.
    num_classes : int
        Object classes (no background class), >= 1.
    detection_arch : {"fcos", "yolox"}
        FCOS: shared-conv head with centerness. YOLOX: decoupled SiLU head, no
        centerness, LTRB decoded as ``softplus(x) * stride``.
    cls_loss_fn : str, nn.Module or None
        Registry name (built with ``reduction="sum"``; ``"focal"`` also gets
        ``focal_alpha`` / ``focal_gamma``), a module ``(logits [N, C], labels
        [N]) -> sum`` with -1 = background, or None for ``FocalLoss``.
    reg_loss_fn : str, nn.Module or None
        Registry name (``reduction="sum"``) or module on xyxy boxes ``(pred
        [N, 4], target [N, 4][, weights [N]]) -> sum``; None = ``GIoULoss``.
    metrics : MetricManager, list of MetricConfig, or None
        None = ``MeanAveragePrecision`` (autotimm's, no pycocotools) on val/test.
    logging_config : LoggingConfig or None
        Learning-rate, gradient-norm and weight-norm logging (default: none).
    transform_config : TransformConfig or None
        Enables ``preprocess`` / ``get_data_config`` / ``get_transform``.
    lr, weight_decay : float
        Optimizer learning rate and weight decay.
    optimizer : str or dict
        ``adamw``, ``adam``, ``sgd``, ``rmsprop``, ``adamp``, ``sgdp``, ``lamb``,
        or ``{"class": "pkg.Optim", "params": {...}}``.
    optimizer_kwargs : dict or None
        Extra optimizer arguments.
    scheduler : str, dict or None
        ``cosine``, ``step``, ``multistep``, ``onecycle``, ``{"class", "params"}``,
        ``None`` / ``"none"``.
    scheduler_kwargs : dict or None
        Scheduler arguments; ``interval`` (default "step") and ``frequency`` (1)
        go to Lightning.
    fpn_channels : int
        Channels of the FPN and the head.
    head_num_convs : int
        Convs per head branch (YOLOX uses at most 2).
    focal_alpha, focal_gamma : float
        Of the default focal loss.
    cls_loss_weight, reg_loss_weight, centerness_loss_weight : float
        Weights of the loss terms (centerness: FCOS only).
    score_thresh : float
        Detections must score strictly above it.
    nms_thresh : float
        IoU threshold of the per-class NMS.
    max_detections_per_image : int
        Detections kept per image after NMS.
    freeze_backbone : bool
        ``requires_grad=False`` on the backbone.
    strides : tuple of int
        Stride of each FPN level; must match the backbone (default P3-P7).
    regress_ranges : tuple of (lo, hi) or None
        Per level, ``max(l, t, r, b)`` range ``[lo, hi)`` of its targets.
    compile_model : bool
        ``torch.compile`` backbone, FPN and head when CUDA is available (on a
        CPU-only machine the model runs eagerly: compiling costs more than it
        saves there); if compilation is unavailable or fails (also at the
        first forward), warn and run eagerly.
    compile_kwargs : dict or None
        Arguments of ``torch.compile``.
    seed : int or None
        Seed everything at construction.
    deterministic : bool
        With a seed, use deterministic algorithms. Warns when seed is None.
    center_sampling_radius : float or None
        FCOS centre sampling (torchvision, mmdetection): a point is a positive
        of a box only within this many strides of the box centre; None = any
        point inside the box. Used identically by the on-device targets and by
        ``FCOSTargetCollate`` (the data module reads it from the model).
    yolox_l1_epochs : int
        YOLOX: add the L1 loss on stride-normalised distances during the last
        this many epochs of ``fit`` (the paper's last 15 epochs); 0 = never.
    channels_last : bool or None
        Memory layout of the convolution weights, which the convolutions follow
        (``autotimm.models.layout``): None (default) = channels-last (NHWC)
        while the model is on the CPU, NCHW once moved elsewhere and then left
        to the user there, True =
        channels-last everywhere, False = PyTorch's NCHW, left alone
        (``model.to(memory_format=...)`` works as usual). On the CPU, oneDNN's
        NHWC kernels make a training step faster (BCCD, resnet18-FPN: see the
        README); the backbone's BatchNorm then sums its statistics and
        gradients in float64 (``autotimm.models.batchnorm``), which keeps
        channels-last training as precise as NCHW. Kept through
        ``.to(device)``; the state dict's values do not depend on it.

    Notes
    -----
    FCOS predicts distances normalised by the level's stride (``relu(scale ·
    conv) · stride``, as torchvision and mmdetection) and weights the
    positives' GIoU losses equally, as torchvision does (the centerness
    weighting of the FCOS authors and mmdetection lost mAP on BCCD's tiny
    platelets; see ``box_weighting`` in ``autotimm.losses.detection_losses``).
    YOLOX assigns points with SimOTA (``autotimm.ops.simota``), trains the
    classifier on IoU-aware targets (quality focal loss when ``cls_loss_fn`` is
    None) and weights the box loss by 5 (the paper's weight) times
    ``reg_loss_weight``; it has no objectness branch (the paper's showed no
    clear effect over two seeds on BCCD, so the head keeps AutoTimm's
    ``(cls, reg)``). The BatchNorm
    statistics of a pretrained or frozen backbone stay fixed in training (as
    torchvision's FrozenBatchNorm2d and mmdetection's ``norm_eval``); a
    from-scratch backbone trains them, and its residual branches start with
    unit gain as torchvision's (timm's ``zero_init_last`` undone; see
    ``autotimm.models.backbone``). Measured effects: the README's BCCD tables.
    """

    def __init__(
        self,
        backbone: str | FeatureBackboneConfig,
        num_classes: int,
        detection_arch: str = "fcos",
        cls_loss_fn: str | nn.Module | None = None,
        reg_loss_fn: str | nn.Module | None = None,
        metrics: MetricManager | list[MetricConfig] | None = None,
        logging_config: LoggingConfig | None = None,
        transform_config: TransformConfig | None = None,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        optimizer: str | dict[str, Any] = "adamw",
        optimizer_kwargs: dict[str, Any] | None = None,
        scheduler: str | dict[str, Any] | None = "cosine",
        scheduler_kwargs: dict[str, Any] | None = None,
        fpn_channels: int = 256,
        head_num_convs: int = 4,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        cls_loss_weight: float = 1.0,
        reg_loss_weight: float = 1.0,
        centerness_loss_weight: float = 1.0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        max_detections_per_image: int = 100,
        freeze_backbone: bool = False,
        strides: tuple[int, ...] = DEFAULT_STRIDES,
        regress_ranges: tuple[tuple[int, int], ...] | None = None,
        compile_model: bool = True,
        compile_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        deterministic: bool = True,
        center_sampling_radius: float | None = 1.5,
        yolox_l1_epochs: int = 0,
        channels_last: bool | None = None,
    ) -> None:
        if seed is not None:
            seed_everything(seed, deterministic=deterministic)
        elif deterministic:
            warnings.warn(
                "deterministic=True has no effect when seed=None. "
                "Set a seed value to enable deterministic behavior.",
                stacklevel=2,
            )
        backbone_cfg = _backbone_config(backbone)
        # Hyperparameters hold plain types: a name stays a name (AutoTimm), a
        # config becomes its dict so that load_from_checkpoint rebuilds it exactly.
        backbone = backbone if isinstance(backbone, str) else backbone_cfg.to_dict()
        super().__init__()
        self.save_hyperparameters(
            ignore=["metrics", "logging_config", "transform_config", "cls_loss_fn", "reg_loss_fn"]
        )
        self.hparams.update(
            {
                "backbone_name": backbone_cfg.model_name,
                "username": "",  # AutoTimm's key, kept empty: no OS user name in files
                "timestamp": _dt.datetime.now().isoformat(timespec="seconds"),
            }
        )
        if detection_arch not in _ARCHS:
            raise ValueError(f"detection_arch must be 'fcos' or 'yolox', got '{detection_arch}'")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        self._check_settings(
            fpn_channels, head_num_convs, score_thresh, nms_thresh, max_detections_per_image,
            {"cls_loss_weight": cls_loss_weight, "reg_loss_weight": reg_loss_weight,
             "centerness_loss_weight": centerness_loss_weight},
        )
        self.strides = tuple(int(s) for s in strides)
        self.regress_ranges = self._check_ranges(regress_ranges, self.strides)
        self._check_optimizer(optimizer)
        self._check_scheduler(scheduler)

        self.detection_arch = detection_arch
        self.num_classes = num_classes
        self._lr = lr
        self._weight_decay = weight_decay
        self._optimizer = optimizer
        self._optimizer_kwargs = dict(optimizer_kwargs or {})
        self._scheduler = scheduler
        self._scheduler_kwargs = dict(scheduler_kwargs or {})
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.pre_nms_top_k = DEFAULT_PRE_NMS_TOP_K
        self.cls_loss_weight = cls_loss_weight
        self.reg_loss_weight = reg_loss_weight
        self.centerness_loss_weight = centerness_loss_weight
        if center_sampling_radius is not None and not (
            isinstance(center_sampling_radius, (int, float)) and 0 < center_sampling_radius
            and center_sampling_radius != float("inf")
        ):
            raise ValueError(
                "center_sampling_radius must be a positive finite number or None, "
                f"got {center_sampling_radius!r}"
            )
        if isinstance(yolox_l1_epochs, bool) or not isinstance(yolox_l1_epochs, int) or (
            yolox_l1_epochs < 0
        ):
            raise ValueError(f"yolox_l1_epochs must be an int >= 0, got {yolox_l1_epochs!r}")
        self.center_sampling_radius = (
            None if center_sampling_radius is None else float(center_sampling_radius)
        )
        self.yolox_l1_epochs = yolox_l1_epochs
        if channels_last is not None and not isinstance(channels_last, bool):
            raise TypeError(
                f"channels_last must be True, False or None, got {channels_last!r}"
            )
        self._channels_last = channels_last
        self._conv_layout_on_cpu = False
        self.use_l1_loss = False
        self._default_cls_loss = cls_loss_fn is None
        self._freeze_bn_stats = bool(backbone_cfg.pretrained or freeze_backbone)
        self._points_cache: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = {}

        # Model
        self.backbone = build_detection_backbone(backbone_cfg).module
        use_precise_batch_norm(self.backbone)
        self._check_backbone_strides()
        self.fpn = FPN(
            in_channels_list=get_feature_channels(self.backbone),
            out_channels=fpn_channels,
            num_extra_levels=NUM_EXTRA_LEVELS,
        )
        if detection_arch == "fcos":
            self.head: nn.Module = DetectionHead(
                in_channels=fpn_channels,
                num_classes=num_classes,
                num_convs=head_num_convs,
                prior_prob=0.01,
                num_levels=len(self.strides),
                strides=self.strides,
            )
        else:
            self.head = YOLOXHead(
                in_channels=fpn_channels,
                num_classes=num_classes,
                num_convs=min(head_num_convs, 2),
                prior_prob=0.01,
                activation="silu",
                strides=self.strides,
            )

        # Losses
        self.focal_loss = self._build_loss(
            "cls_loss_fn", cls_loss_fn, FocalLoss(focal_alpha, focal_gamma, reduction="sum"),
            {"alpha": focal_alpha, "gamma": focal_gamma},
        )
        self.giou_loss = self._build_loss("reg_loss_fn", reg_loss_fn, GIoULoss(reduction="sum"))

        # Metrics
        if metrics is None:
            metrics = [
                MetricConfig(
                    name="mAP",
                    backend="torchmetrics",
                    metric_class="MeanAveragePrecision",
                    params={"box_format": "xyxy", "iou_type": "bbox", "class_metrics": True},
                    stages=["val", "test"],
                    prog_bar=True,
                ),
            ]
        if isinstance(metrics, MetricManager):
            self._metric_manager: MetricManager | None = metrics
            self._metric_configs: list[MetricConfig] = list(metrics.configs)
            self._use_metric_manager = True
        elif isinstance(metrics, (list, tuple)):
            self._metric_manager = None
            self._metric_configs = list(metrics)
            self._use_metric_manager = False
        else:
            raise TypeError(
                "metrics must be a MetricManager, a list of MetricConfig or None, "
                f"got {type(metrics).__name__}"
            )
        self._register_detection_metrics()

        self._logging_config = logging_config or LoggingConfig(
            log_learning_rate=False, log_gradient_norm=False
        )
        if freeze_backbone:
            for param in self.backbone.parameters():
                param.requires_grad = False
        self._setup_transforms(transform_config, task="detection")
        self._set_conv_layout()

        # Checkpoints never carry torch.compile's "_orig_mod." prefix, and load
        # into compiled and eager models alike.
        self.register_state_dict_post_hook(ObjectDetector._strip_compile_prefix)
        self.register_load_state_dict_pre_hook(ObjectDetector._adapt_compile_prefix)
        self._compile(compile_model, compile_kwargs)

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _check_settings(
        fpn_channels: int,
        head_num_convs: int,
        score_thresh: float,
        nms_thresh: float,
        max_detections_per_image: int,
        weights: dict[str, float],
    ) -> None:
        if fpn_channels < 1:
            raise ValueError(f"fpn_channels must be >= 1, got {fpn_channels!r}")
        if head_num_convs < 0:
            raise ValueError(f"head_num_convs must be >= 0, got {head_num_convs!r}")
        if not 0.0 <= score_thresh <= 1.0:
            raise ValueError(f"score_thresh must be in [0, 1], got {score_thresh!r}")
        if not 0.0 <= nms_thresh <= 1.0:
            raise ValueError(f"nms_thresh must be in [0, 1], got {nms_thresh!r}")
        if max_detections_per_image < 1:
            raise ValueError(
                f"max_detections_per_image must be >= 1, got {max_detections_per_image!r}"
            )
        for name, value in weights.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")

    @staticmethod
    def _check_ranges(
        regress_ranges: Sequence[Sequence[float]] | None, strides: tuple[int, ...]
    ) -> tuple[tuple[float, float], ...]:
        if not strides or any(s <= 0 for s in strides):
            raise ValueError(f"strides must be positive ints, got {strides!r}")
        if regress_ranges is None:
            if len(strides) != len(DEFAULT_REGRESS_RANGES):
                raise ValueError(
                    f"strides has {len(strides)} levels but the default regress_ranges cover "
                    f"{len(DEFAULT_REGRESS_RANGES)}; pass regress_ranges with one (lo, hi) "
                    "per level"
                )
            return DEFAULT_REGRESS_RANGES
        ranges = tuple((float(lo), float(hi)) for lo, hi in regress_ranges)
        if len(ranges) != len(strides):
            raise ValueError(
                f"regress_ranges has {len(ranges)} levels but strides has {len(strides)} "
                f"({strides}); expected one (lo, hi) per stride"
            )
        for i, (lo, hi) in enumerate(ranges):
            if not lo < hi:
                raise ValueError(f"regress_ranges[{i}] = ({lo}, {hi}): expected lo < hi")
        return ranges

    @staticmethod
    def _check_optimizer(optimizer: Any) -> None:
        if isinstance(optimizer, dict):
            if "class" not in optimizer:
                raise ValueError(f"optimizer dict needs a 'class' key, got {sorted(optimizer)}")
            _import_class(optimizer["class"])
        elif not isinstance(optimizer, str) or (
            optimizer.lower() not in _TORCH_OPTIMIZERS and optimizer.lower() not in _TIMM_OPTIMIZERS
        ):
            raise ValueError(
                f"Unknown optimizer: {optimizer}. Expected one of "
                f"{sorted([*_TORCH_OPTIMIZERS, *_TIMM_OPTIMIZERS])} or a dict with 'class'"
            )

    @staticmethod
    def _check_scheduler(scheduler: Any) -> None:
        if scheduler is None:
            return
        if isinstance(scheduler, dict):
            if "class" not in scheduler:
                raise ValueError(f"scheduler dict needs a 'class' key, got {sorted(scheduler)}")
            _import_class(scheduler["class"])
        elif not isinstance(scheduler, str) or scheduler.lower() not in (*_SCHEDULERS, "none"):
            raise ValueError(
                f"Unknown scheduler: {scheduler}. Expected one of {[*_SCHEDULERS, None]} "
                "or a dict with 'class'"
            )

    def _check_backbone_strides(self) -> None:
        reductions = [int(r) for r in get_feature_strides(self.backbone)]
        expected = tuple(reductions) + tuple(
            reductions[-1] * 2 ** (k + 1) for k in range(NUM_EXTRA_LEVELS)
        )
        if self.strides != expected:
            raise ValueError(
                f"strides {self.strides} do not match the model: the backbone returns "
                f"strides {tuple(reductions)} and the FPN adds {NUM_EXTRA_LEVELS} levels, so "
                f"expected strides={expected}"
            )

    @staticmethod
    def _build_loss(
        arg: str, value: Any, default: nn.Module, focal_kwargs: dict[str, float] | None = None
    ) -> nn.Module:
        if value is None:
            return default
        if isinstance(value, str):
            kwargs: dict[str, Any] = {"reduction": "sum"}
            if value == "focal" and focal_kwargs:
                kwargs.update(focal_kwargs)
            return get_loss_registry().get_loss(value, **kwargs)
        if isinstance(value, nn.Module):
            return value
        raise TypeError(f"{arg} must be a string or nn.Module instance, got {type(value)}")

    # ----------------------------------------------------------------- compile
    def _compile(self, compile_model: bool, compile_kwargs: dict[str, Any] | None) -> None:
        if not compile_model:
            if compile_kwargs is not None:
                warnings.warn("compile_kwargs is ignored when compile_model=False.", stacklevel=3)
            return
        mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
        reason = None
        if not hasattr(torch, "compile"):
            reason = "torch.compile is not available in this PyTorch"
        elif mps or sys.platform == "win32":
            reason = "the inductor backend is not supported on MPS / Windows"
        elif not torch.cuda.is_available():  # compiling for CPU costs more than it saves
            return
        else:
            try:
                from torch._dynamo import is_dynamo_supported

                if not is_dynamo_supported():
                    reason = "TorchDynamo does not support this Python version"
            except Exception as exc:  # pragma: no cover - broken installs
                reason = f"TorchDynamo is unavailable ({exc})"
        if reason is not None:
            warnings.warn(f"compile_model=True: {reason}; running eagerly.", stacklevel=3)
            return
        try:
            opts = dict(compile_kwargs or {})
            for name in _COMPILED_CHILDREN:
                setattr(self, name, torch.compile(getattr(self, name), **opts))
        except Exception as exc:
            self._uncompile()
            warnings.warn(
                f"torch.compile failed: {exc}. Continuing without compilation.", stacklevel=3
            )

    def _uncompile(self) -> None:
        for name in _COMPILED_CHILDREN:
            module = getattr(self, name)
            if _is_compiled(module):
                setattr(self, name, module._orig_mod)

    @property
    def is_compiled(self) -> bool:
        """Whether backbone, FPN and head currently run through torch.compile."""
        return any(_is_compiled(getattr(self, n)) for n in _COMPILED_CHILDREN)

    @staticmethod
    def _strip_compile_prefix(
        module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any
    ) -> None:
        for key in [k for k in state_dict if _ORIG in k]:
            state_dict[key.replace(_ORIG, "")] = state_dict.pop(key)

    @staticmethod
    def _adapt_compile_prefix(
        module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any
    ) -> None:
        for name in _COMPILED_CHILDREN:
            compiled = _is_compiled(getattr(module, name))
            plain, orig = f"{prefix}{name}.", f"{prefix}{name}.{_ORIG}"
            for key in [k for k in state_dict if k.startswith(plain)]:
                has_orig = key.startswith(orig)
                if compiled and not has_orig:
                    state_dict[orig + key[len(plain):]] = state_dict.pop(key)
                elif not compiled and has_orig:
                    state_dict[plain + key[len(orig):]] = state_dict.pop(key)

    # ----------------------------------------------------------------- metrics
    def _register_detection_metrics(self) -> None:
        """Fill ``val_metrics`` / ``test_metrics`` (``nn.ModuleDict``) from the metric configs."""
        if self._use_metric_manager:
            assert self._metric_manager is not None
            self.val_metrics = self._metric_manager.get_val_metrics()
            self.test_metrics = self._metric_manager.get_test_metrics()
            return
        self.val_metrics = nn.ModuleDict()
        self.test_metrics = nn.ModuleDict()
        for config in self._metric_configs:
            if not isinstance(config, MetricConfig):
                raise TypeError(f"metrics must hold MetricConfig objects, got {type(config)}")
            if "val" in config.stages:
                self.val_metrics[config.name] = build_metric(config)
            if "test" in config.stages:
                self.test_metrics[config.name] = build_metric(config)

    # ----------------------------------------------------------------- forward
    def _run_model(
        self, images: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor] | None]:
        outputs = self.head(self.fpn(self.backbone(images)))
        if self.detection_arch == "fcos":
            return list(outputs[0]), list(outputs[1]), list(outputs[2])
        return list(outputs[0]), list(outputs[1]), None

    def forward(
        self, images: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor] | None]:
        """Head outputs per FPN level.

        Parameters
        ----------
        images : Tensor [B, 3, H, W] float

        Returns
        -------
        cls : list of Tensor [B, num_classes, h_l, w_l]
            Classification logits.
        reg : list of Tensor [B, 4, h_l, w_l]
            LTRB distances in pixels from the cell centres ``(x + 0.5) * stride``, >= 0.
        ctr : list of Tensor [B, 1, h_l, w_l], or None for YOLOX
            Centerness logits.
        """
        if not self.is_compiled:
            return self._run_model(images)
        try:
            return self._run_model(images)
        except Exception as exc:
            if not is_compilation_error(exc):  # OOM, the input's shape, ...: not ours to hide
                raise
            compiled = {n: getattr(self, n) for n in _COMPILED_CHILDREN}
            self._uncompile()
            try:
                outputs = self._run_model(images)
            except Exception:  # not a compilation problem: keep compiled, raise
                for name, module in compiled.items():
                    setattr(self, name, module)
                raise
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            warnings.warn(
                f"torch.compile failed at the first forward ({type(exc).__name__}: "
                f"{first_line}). Continuing without compilation.",
                stacklevel=2,
            )
            return outputs

    def _points(
        self, sizes: list[tuple[int, int]], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell centres [P, 2] of every level and each point's stride [P] (cached)."""
        key = (tuple(sizes), str(device))
        cached = self._points_cache.get(key)
        if cached is None:
            points = level_points(sizes, self.strides, device=device)
            strides = torch.cat([
                torch.full((h * w,), float(s), device=device)
                for (h, w), s in zip(sizes, self.strides, strict=True)
            ])
            cached = self._points_cache[key] = (points, strides)
        return cached

    def _set_conv_layout(self) -> None:
        """Store the convolution weights in the layout ``channels_last`` asks for on
        the device they are on. False leaves the layout to PyTorch (and to the
        user's own ``model.to(memory_format=...)``); so does None off the CPU,
        once the weights it made channels-last on the CPU are NCHW again."""
        weight = next((p for p in self.parameters() if p.dim() == 4), None)
        if self._channels_last is False or weight is None:
            return
        on_cpu = weight.device.type == "cpu"
        if self._channels_last is None and not on_cpu:
            if self._conv_layout_on_cpu:  # just moved off the CPU: undo our choice
                set_conv_layout(self, torch.contiguous_format)
            self._conv_layout_on_cpu = False
            return
        set_conv_layout(self, conv_memory_format(weight.device, self._channels_last))
        self._conv_layout_on_cpu = on_cpu

    def _apply(self, fn: Any, recurse: bool = True) -> ObjectDetector:
        """``to`` / ``cuda`` / ``cpu`` / ``half`` ...: then re-lay the convolution
        weights out for the device they are now on."""
        super()._apply(fn, recurse)
        if hasattr(self, "_channels_last"):  # not during __init__'s first moves
            self._set_conv_layout()
        return self

    def train(self, mode: bool = True) -> ObjectDetector:
        """Set the training mode; the backbone's BatchNorm layers stay in eval mode
        when the backbone is pretrained or frozen (fixed statistics)."""
        super().train(mode)
        if mode and getattr(self, "_freeze_bn_stats", False):
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    # ---------------------------------------------------------------- training
    @staticmethod
    def _images(batch: Any) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):
            return batch
        if isinstance(batch, dict):
            for key in ("images", "image"):
                if key in batch:
                    return batch[key]
            raise KeyError(f"batch has no 'images' (or 'image') key; keys: {sorted(batch)}")
        raise TypeError(f"batch must be a dict or a tensor, got {type(batch).__name__}")

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Check the labels of a batch dict against ``num_classes`` while they are
        still on the CPU (no device synchronisation; the error names the image id)."""
        self._check_labels(batch)
        return batch

    def _check_labels(self, batch: Any) -> None:
        """Labels in ``[0, num_classes)``: checked on the CPU (error naming the image),
        a device-side assertion on an accelerator (no host synchronisation)."""
        labels = batch.get("labels") if isinstance(batch, dict) else None
        if not labels:
            return
        if all(lab.device.type == "cpu" for lab in labels):
            check_labels(labels, self.num_classes, batch.get("image_ids"), "batch")
        else:
            assert_labels_in_range_async(torch.cat([lab.reshape(-1) for lab in labels]),
                                         self.num_classes)

    def _targets(
        self, batch: dict[str, Any], images: torch.Tensor, sizes: list[tuple[int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-point targets [B, P], [B, P, 4], [B, P]: precomputed ones if they fit."""
        num_points = sum(h * w for h, w in sizes)
        device = images.device
        pre = batch.get("targets")
        if pre is not None and tuple(pre[0].shape) == (images.shape[0], num_points):
            return (
                pre[0].to(device, non_blocking=True),
                pre[1].to(device, torch.float32, non_blocking=True),
                pre[2].to(device, torch.float32, non_blocking=True),
            )
        from autotimm.ops import fcos_targets

        boxes = [b.to(device=device, dtype=torch.float32) for b in batch["boxes"]]
        labels = [lab.to(device=device, dtype=torch.int64) for lab in batch["labels"]]
        return fcos_targets(
            boxes,
            labels,
            image_size=tuple(images.shape[-2:]),
            strides=self.strides,
            regress_ranges=self.regress_ranges,
            feature_sizes=sizes,
            center_sampling_radius=self.center_sampling_radius,
            validate=False,
        )

    def compute_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Weighted losses of a batch: ``loss``, ``cls_loss``, ``reg_loss``,
        ``centerness_loss`` (FCOS; 0 for YOLOX), ``l1_loss`` (YOLOX; 0 for FCOS),
        ``num_pos`` (0-dim tensors, no host synchronisation)."""
        images = self._images(batch)
        return self._losses(batch, images, self(images))

    def _losses(
        self,
        batch: dict[str, Any],
        images: torch.Tensor,
        outputs: tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor] | None],
    ) -> dict[str, torch.Tensor]:
        """Weighted losses of the head ``outputs`` of ``images`` (see :meth:`compute_losses`)."""
        self._check_labels(batch)
        cls_out, reg_out, ctr_out = outputs
        sizes = [(int(c.shape[-2]), int(c.shape[-1])) for c in cls_out]
        points, point_strides = self._points(sizes, images.device)
        if self.detection_arch == "yolox":
            return self._yolox_losses(batch, images, cls_out, reg_out, points, point_strides)
        cls_t, reg_t, ctr_t = self._targets(batch, images, sizes)
        raw = detection_losses(
            flatten_levels(cls_out),
            flatten_levels(reg_out),
            flatten_levels(ctr_out)[..., 0] if ctr_out is not None else None,
            cls_t,
            reg_t,
            ctr_t if ctr_out is not None else None,
            points,
            self.focal_loss,
            self.giou_loss,
        )
        cls_loss = self.cls_loss_weight * raw["cls_loss"]
        reg_loss = self.reg_loss_weight * raw["reg_loss"]
        ctr_loss = self.centerness_loss_weight * raw["centerness_loss"]
        return {
            "loss": cls_loss + reg_loss + ctr_loss,
            "cls_loss": cls_loss,
            "reg_loss": reg_loss,
            "centerness_loss": ctr_loss,
            "l1_loss": torch.zeros_like(cls_loss),
            "num_pos": raw["num_pos"],
        }

    def _yolox_losses(
        self,
        batch: dict[str, Any],
        images: torch.Tensor,
        cls_out: list[torch.Tensor],
        reg_out: list[torch.Tensor],
        points: torch.Tensor,
        point_strides: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        gt_boxes, gt_labels = pad_boxes(batch["boxes"], batch["labels"], images.device)
        raw = yolox_losses(
            flatten_levels(cls_out),
            flatten_levels(reg_out),
            points,
            point_strides,
            gt_boxes,
            gt_labels,
            self.giou_loss,
            None if self._default_cls_loss else self.focal_loss,
            use_l1=self.use_l1_loss,
        )
        cls_loss = self.cls_loss_weight * raw["cls_loss"]
        reg_loss = self.reg_loss_weight * YOLOX_REG_WEIGHT * raw["reg_loss"]
        l1_loss = raw["l1_loss"]
        return {
            "loss": cls_loss + reg_loss + l1_loss,
            "cls_loss": cls_loss,
            "reg_loss": reg_loss,
            "centerness_loss": torch.zeros_like(cls_loss),
            "l1_loss": l1_loss,
            "num_pos": raw["num_pos"],
        }

    def on_train_epoch_start(self) -> None:
        """YOLOX: switch the L1 term on for the last ``yolox_l1_epochs`` epochs."""
        max_epochs = getattr(self.trainer, "max_epochs", None)
        if self.yolox_l1_epochs > 0 and max_epochs is not None and max_epochs > 0:
            self.use_l1_loss = self.current_epoch >= max_epochs - self.yolox_l1_epochs

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Loss of a batch ``{"images" | "image", "boxes", "labels"[, "targets"]}``.

        ``boxes``: list of [N_i, 4] xyxy pixels; ``labels``: list of [N_i];
        ``targets`` (optional): precomputed ``(cls [B, P], reg [B, P, 4], ctr
        [B, P])`` in the layout of ``autotimm.ops.fcos_targets``, used when P
        matches the feature maps. Logs ``train/loss``, ``train/cls_loss``,
        ``train/reg_loss``, ``train/centerness_loss`` (FCOS), ``train/num_pos``
        and ``train/lr`` (with ``LoggingConfig.log_learning_rate``).
        """
        losses = self.compute_losses(batch)
        bs = int(self._images(batch).shape[0])
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=bs)
        self.log("train/cls_loss", losses["cls_loss"], batch_size=bs)
        self.log("train/reg_loss", losses["reg_loss"], batch_size=bs)
        if self.detection_arch == "fcos":
            self.log("train/centerness_loss", losses["centerness_loss"], batch_size=bs)
        if self.use_l1_loss:
            self.log("train/l1_loss", losses["l1_loss"], batch_size=bs)
        self.log("train/num_pos", losses["num_pos"], batch_size=bs)
        if self._logging_config.log_learning_rate and self._trainer is not None:
            opt = self.optimizers()
            if opt is not None and hasattr(opt, "param_groups"):
                self.log("train/lr", opt.param_groups[0]["lr"], on_step=True, on_epoch=False,
                         batch_size=bs)
        return losses["loss"]

    # -------------------------------------------------------------- inference
    @accepts_image_inputs
    @torch.no_grad()
    def predict(
        self, images: Any, image_sizes: torch.Tensor | None = None
    ) -> list[dict[str, Any]]:
        """Detections per image, by :func:`autotimm.models.postprocess.postprocess_detections`.

        Scores per (point, class): ``sqrt(sigmoid(cls) · sigmoid(centerness))``
        for FCOS (torchvision's ranking), ``sigmoid(cls)`` for YOLOX (trained
        on IoU-aware targets); per level the ``pre_nms_top_k`` (1000) best
        above ``score_thresh``; boxes decoded around the cell centres and
        clipped to each image's size; one batched NMS (per image and class);
        the first ``max_detections_per_image``.

        Runs in eval mode (every submodule's mode is restored afterwards).

        Parameters
        ----------
        images : Tensor [B, 3, H, W] float (preprocessed), or raw images
            A path, PIL image, ndarray [H, W, 3] uint8, tensor [3, H, W] (uint8,
            or float in [0, 1]), uint8 [B, 3, H, W], or a list of these: resized
            and normalised per :attr:`data_info` (see ``autotimm.tasks.inputs``).
            NaN / Inf pixels or float values outside [0, 1] raise ``ValueError``.
        image_sizes : Tensor [B, 2] int, optional
            (H, W) of each image before padding (a batch's ``image_sizes``);
            default: the batch's full size for every image.

        Returns
        -------
        list of dict
            Per image ``boxes`` [K, 4] float32 xyxy pixels (of the input batch;
            of each original image for raw images), ``scores`` [K] float32
            (descending), ``labels`` [K] int64; raw images also get
            ``label_names`` (list of K str).
        """
        return self._detect(self(images), images, image_sizes)

    def _detect(
        self,
        outputs: tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor] | None],
        images: torch.Tensor,
        image_sizes: torch.Tensor | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        cls_out, reg_out, ctr_out = outputs
        batch = int(images.shape[0])
        if image_sizes is None:
            image_sizes = torch.tensor([tuple(images.shape[-2:])], device=images.device)
            image_sizes = image_sizes.expand(batch, 2)
        detections = postprocess_detections(
            cls_out,
            reg_out,
            ctr_out,
            self.strides,
            image_sizes.to(images.device),
            score_thresh=self.score_thresh,
            nms_thresh=self.nms_thresh,
            top_k=self.pre_nms_top_k,
            max_detections=self.max_detections_per_image,
            quality_mode="sqrt",
        )
        return split_detections(detections, batch)

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict[str, torch.Tensor]]:
        image_sizes = batch.get("image_sizes") if isinstance(batch, dict) else None
        return self.predict(self._images(batch), image_sizes)

    def _evaluate_batch(
        self, metrics: nn.ModuleDict, batch: dict[str, Any], stage: str
    ) -> list[dict[str, torch.Tensor]]:
        """One forward pass: ``{stage}/loss`` and its terms (as in training) are
        logged per epoch, and its detections update the metrics."""
        images = self._images(batch)
        outputs = self(images)
        if isinstance(batch, dict) and "boxes" in batch and "labels" in batch:
            losses = self._losses(batch, images, outputs)
            bs = int(images.shape[0])
            names = ["loss", "cls_loss", "reg_loss"]
            names += ["centerness_loss"] if self.detection_arch == "fcos" else []
            for name in names:
                self.log(f"{stage}/{name}", losses[name], on_step=False, on_epoch=True,
                         prog_bar=(name == "loss"), batch_size=bs, sync_dist=True)
        image_sizes = batch.get("image_sizes") if isinstance(batch, dict) else None
        detections = self._detect(outputs, images, image_sizes)
        self._update_metrics(metrics, batch, detections)
        return detections

    def _update_metrics(
        self,
        metrics: nn.ModuleDict,
        batch: dict[str, Any],
        detections: list[dict[str, torch.Tensor]],
    ) -> None:
        if len(metrics) == 0:
            return
        targets = [
            {"boxes": b.float(), "labels": lab.long()}
            for b, lab in zip(batch["boxes"], batch["labels"], strict=True)
        ]
        if "crowd_boxes" in batch:  # crowd regions: ignored by the metric, as in COCOeval
            for target, crowd, crowd_labels in zip(
                targets, batch["crowd_boxes"], batch["crowd_labels"], strict=True
            ):
                crowd = crowd.to(target["boxes"])
                is_crowd = torch.cat(
                    [torch.zeros_like(target["labels"]), torch.ones_like(crowd_labels.long())]
                )
                target["boxes"] = torch.cat([target["boxes"], crowd])
                target["labels"] = torch.cat([target["labels"], crowd_labels.to(target["labels"])])
                target["iscrowd"] = is_crowd.to(target["labels"].device)
        for metric in metrics.values():
            metric.update(detections, targets)

    def _log_metrics(self, metrics: nn.ModuleDict, prefix: str) -> None:
        for name, metric in metrics.items():
            result = metric.compute()
            if isinstance(result, dict):
                for key, value in result.items():
                    if key.endswith("_per_class") and isinstance(value, torch.Tensor):
                        self._log_per_class(f"{prefix}/{key}", value, result.get("classes"))
                    elif isinstance(value, torch.Tensor) and value.numel() == 1:
                        self.log(f"{prefix}/{key}", value.float(), prog_bar=(key == "map"))
            else:
                self.log(f"{prefix}/{name}", result)
            metric.reset()

    def _log_per_class(self, name: str, values: torch.Tensor, classes: Any) -> None:
        """``<name>/<class name>`` per class (nothing when the metric has no class values)."""
        if classes is None or values.numel() != len(classes) or values.numel() == 0:
            return
        if values.numel() == 1 and float(values) < 0:
            return  # class_metrics=False: torchmetrics' -1 placeholder
        for label, value in zip(classes.tolist(), values.float(), strict=True):
            self.log(f"{name}/{self.data_info.name_of(int(label))}", value)

    def validation_step(
        self, batch: dict[str, Any], batch_idx: int
    ) -> list[dict[str, torch.Tensor]] | None:
        """Logs the val losses, updates the metrics; returns the detections (for
        callbacks' reports)."""
        return self._evaluate_batch(self.val_metrics, batch, "val")

    def on_validation_epoch_end(self) -> None:
        sanity = self._trainer is not None and self.trainer.sanity_checking
        self._log_metrics(self.val_metrics, "sanity_val" if sanity else "val")

    def test_step(
        self, batch: dict[str, Any], batch_idx: int
    ) -> list[dict[str, torch.Tensor]] | None:
        """Logs the test losses, updates the metrics; returns the detections (for
        callbacks' reports)."""
        return self._evaluate_batch(self.test_metrics, batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")

    # ------------------------------------------------------- seed's helpers
    def _compute_targets_per_level(
        self,
        points: torch.Tensor,
        boxes: torch.Tensor,
        labels: torch.Tensor,
        stride: int,
        level_idx: int,
        img_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Targets of one image on one level: cls [H, W] (-1 = background),
        reg [H, W, 4], centerness [H, W]."""
        from autotimm.ops import fcos_targets

        h, w = int(points.shape[0]), int(points.shape[1])
        cls, reg, ctr = fcos_targets(
            [boxes.to(points.device, torch.float32)],
            [labels.to(points.device, torch.int64)],
            image_size=tuple(int(v) for v in img_size),
            strides=(int(stride),),
            regress_ranges=(self.regress_ranges[level_idx],),
            feature_sizes=[(h, w)],
        )
        return cls[0].reshape(h, w), reg[0].reshape(h, w, 4), ctr[0].reshape(h, w)

    def _compute_iou_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """-log(IoU) of LTRB distances [N, 4], summed (the seed's box loss)."""
        loss = IoULoss(reduction="sum", mode="log")
        return loss(ltrb_as_boxes(pred), ltrb_as_boxes(target))

    # ------------------------------------------------------------- optimizers
    def configure_optimizers(self) -> dict[str, Any]:
        """Optimizer over trainable parameters, plus the scheduler config if any."""
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self._create_optimizer(params)
        if self._scheduler is None or self._scheduler == "none":
            return {"optimizer": optimizer}
        return {"optimizer": optimizer, "lr_scheduler": self._create_scheduler(optimizer)}

    def _create_optimizer(self, params: Any) -> torch.optim.Optimizer:
        opt_kwargs: dict[str, Any] = {"lr": self._lr, "weight_decay": self._weight_decay}
        opt_kwargs.update(self._optimizer_kwargs)
        if isinstance(self._optimizer, dict):
            opt_kwargs.update(self._optimizer.get("params", {}))
            return self._import_class(self._optimizer["class"])(params, **opt_kwargs)
        name = self._optimizer.lower()
        if name in _TORCH_OPTIMIZERS:
            return _TORCH_OPTIMIZERS[name](params, **opt_kwargs)
        if name in _TIMM_OPTIMIZERS:
            import timm.optim

            return getattr(timm.optim, _TIMM_OPTIMIZERS[name])(params, **opt_kwargs)
        raise ValueError(f"Unknown optimizer: {self._optimizer}")

    def _create_scheduler(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        kwargs = dict(self._scheduler_kwargs)
        interval = kwargs.pop("interval", "step")
        frequency = kwargs.pop("frequency", 1)
        if isinstance(self._scheduler, dict):
            kwargs.update(self._scheduler.get("params", {}))
            scheduler = self._import_class(self._scheduler["class"])(optimizer, **kwargs)
            return {"scheduler": scheduler, "interval": interval, "frequency": frequency}
        name = str(self._scheduler).lower()
        sched = torch.optim.lr_scheduler
        if name == "cosine":
            t_max = kwargs.pop("T_max", None) or self.trainer.estimated_stepping_batches
            scheduler = sched.CosineAnnealingLR(optimizer, T_max=t_max, **kwargs)
        elif name == "step":
            scheduler = sched.StepLR(
                optimizer, step_size=kwargs.pop("step_size", 8), gamma=kwargs.pop("gamma", 0.1),
                **kwargs,
            )
        elif name == "multistep":
            scheduler = sched.MultiStepLR(
                optimizer, milestones=kwargs.pop("milestones", [8, 11]),
                gamma=kwargs.pop("gamma", 0.1), **kwargs,
            )
        elif name == "onecycle":
            scheduler = sched.OneCycleLR(
                optimizer,
                max_lr=kwargs.pop("max_lr", self._lr * 10),
                total_steps=kwargs.pop("total_steps", None)
                or self.trainer.estimated_stepping_batches,
                **kwargs,
            )
        else:
            raise ValueError(f"Unknown scheduler: {self._scheduler}")
        return {"scheduler": scheduler, "interval": interval, "frequency": frequency}

    def _import_class(self, class_path: str) -> Any:
        """Import a class from a fully qualified path."""
        return _import_class(class_path)

    # ---------------------------------------------------------------- logging
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Log ``train/grad_norm`` / ``train/weight_norm`` per the LoggingConfig."""
        if self._logging_config.log_gradient_norm:
            self.log("train/grad_norm", self._compute_gradient_norm(), on_step=True,
                     on_epoch=False)
        if self._logging_config.log_weight_norm:
            self.log("train/weight_norm", self._compute_weight_norm(), on_step=True,
                     on_epoch=False)

    def _compute_gradient_norm(self) -> torch.Tensor:
        norms = [p.grad.detach().float().norm(2) for p in self.parameters() if p.grad is not None]
        if not norms:
            return torch.zeros((), device=self.device)
        return torch.linalg.vector_norm(torch.stack(norms), 2)

    def _compute_weight_norm(self) -> torch.Tensor:
        norms = [p.detach().float().norm(2) for p in self.parameters()]
        return torch.linalg.vector_norm(torch.stack(norms), 2)

    def on_fit_start(self) -> None:
        """Record the data module's batch size in the hyperparameters."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "batch_size"):
            self.hparams["batch_size"] = datamodule.batch_size

    # ----------------------------------------------------------------- export
    def to_onnx(  # type: ignore[override]
        self,
        save_path: str | None = None,
        example_input: torch.Tensor | None = None,
        opset_version: int = 17,
        dynamic_axes: dict[str, dict[int, str]] | None = None,
        **kwargs: Any,
    ) -> str:
        """Export to ONNX with outputs ``cls_l0..``, ``reg_l0..`` (and ``ctr_l0..`` for FCOS).

        Parameters
        ----------
        save_path : str, optional
            Output file; a temporary file if None.
        example_input : Tensor, optional
            Default ``randn(1, 3, 224, 224)``.
        opset_version : int
        dynamic_axes : dict, optional
            Default: the batch dimension of every input and output is dynamic.
        **kwargs
            Passed to :func:`autotimm.export.export_to_onnx`, e.g.
            ``postprocess=True`` (decoding and NMS in the graph: outputs ``boxes``,
            ``scores``, ``labels``, ``num_detections``) and ``dynamic_image_size=True``.

        Returns
        -------
        str
            The path written.
        """
        from autotimm.export import export_to_onnx

        if example_input is None:
            example_input = torch.randn(1, 3, 224, 224)
        if save_path is None:
            import tempfile

            with tempfile.NamedTemporaryFile(suffix=".onnx", delete=False) as f:
                save_path = f.name
        return export_to_onnx(
            self, save_path, example_input, opset_version=opset_version,
            dynamic_axes=dynamic_axes, **kwargs,
        )
