"""Metric configuration and construction (torchmetrics or custom classes)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

_BACKENDS = ("torchmetrics", "custom")
_STAGES = ("train", "val", "test")


@dataclass
class MetricConfig:
    """One metric of a task.

    Parameters
    ----------
    name : str
        Key of the metric in the task's ``val_metrics`` / ``test_metrics``.
    backend : str
        ``"torchmetrics"`` (``metric_class`` is a class name) or ``"custom"``
        (``metric_class`` is a dotted import path).
    metric_class : str
        Class name or path. ``"MeanAveragePrecision"`` resolves to
        :class:`autotimm.metrics.MeanAveragePrecision`, which needs no pycocotools.
    params : dict
        Keyword arguments of the metric's constructor.
    stages : list of str
        Subset of ``train``, ``val``, ``test``.
    log_on_step, log_on_epoch, prog_bar : bool
        How the metric is logged.
    """

    name: str
    backend: str
    metric_class: str
    params: dict[str, Any]
    stages: list[str]
    log_on_step: bool = False
    log_on_epoch: bool = True
    prog_bar: bool = False

    def __post_init__(self) -> None:
        for attr in ("name", "backend", "metric_class"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr):
                raise ValueError(f"MetricConfig.{attr} must be a non-empty str, got "
                                 f"{getattr(self, attr)!r}")
        self.backend = self.backend.lower()
        if self.backend not in _BACKENDS:
            raise ValueError(f"MetricConfig.backend must be one of {_BACKENDS}, got "
                             f"{self.backend!r}")
        if not self.stages:
            raise ValueError("MetricConfig.stages must name at least one stage")
        self.stages = [str(s).lower() for s in self.stages]
        bad = [s for s in self.stages if s not in _STAGES]
        if bad:
            raise ValueError(f"MetricConfig.stages has unknown stages {bad}; expected a "
                             f"subset of {list(_STAGES)}")
        if self.params is None:
            self.params = {}


def _import_path(path: str) -> Any:
    if "." not in path:
        raise ValueError(f"Class path must be fully qualified, got: {path}")
    module_path, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module_path), name)


def resolve_metric_class(config: MetricConfig) -> type:
    """The class a config names.

    ``torchmetrics`` names resolve from ``autotimm.metrics`` for
    ``MeanAveragePrecision``, then ``torchmetrics.detection``, top-level
    ``torchmetrics`` and ``torchmetrics.classification``.

    Raises
    ------
    ValueError
        ``Unknown metric: <name>`` when no module defines the class.
    """
    if config.backend == "custom":
        try:
            return _import_path(config.metric_class)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"Unknown metric: {config.metric_class} ({exc})") from exc
    name = config.metric_class
    if name == "MeanAveragePrecision":
        try:
            from autotimm.metrics.mean_ap import MeanAveragePrecision
        except ModuleNotFoundError as exc:  # metrics package not built yet
            if exc.name != "autotimm.metrics.mean_ap":
                raise
        else:
            return MeanAveragePrecision
    for module_name in ("torchmetrics.detection", "torchmetrics", "torchmetrics.classification"):
        module = importlib.import_module(module_name)
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            return cls
    raise ValueError(f"Unknown metric: {name}")


def _accepts(cls: type, arg: str) -> bool:
    for fn in (cls.__init__, getattr(cls, "__new__", None)):
        if fn is None or fn is object.__new__ or fn is object.__init__:
            continue
        try:
            if arg in inspect.signature(fn).parameters:
                return True
        except (TypeError, ValueError):
            continue
    return False


def build_metric(config: MetricConfig, num_classes: int | None = None) -> nn.Module:
    """Instantiate a config's metric; ``num_classes`` is injected where accepted."""
    cls = resolve_metric_class(config)
    params = dict(config.params)
    if num_classes is not None:
        for arg in ("num_classes", "num_labels"):
            if arg not in params and _accepts(cls, arg):
                params[arg] = num_classes
    return cls(**params)


class MetricManager:
    """Builds the metrics of each stage from a list of :class:`MetricConfig`.

    Parameters
    ----------
    configs : list of MetricConfig
        At least one.
    num_classes : int
        Injected as ``num_classes`` / ``num_labels`` into metrics that take it.
    """

    def __init__(self, configs: list[MetricConfig], num_classes: int) -> None:
        if not configs:
            raise ValueError("MetricManager needs at least one MetricConfig, got none")
        if not isinstance(num_classes, int) or num_classes <= 0:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise ValueError(f"MetricConfig names must be unique, got {names}")
        self._configs = list(configs)
        self._num_classes = num_classes
        self._metrics: dict[str, nn.ModuleDict] = {s: nn.ModuleDict() for s in _STAGES}
        for config in self._configs:
            for stage in config.stages:
                self._metrics[stage][config.name] = build_metric(config, num_classes)

    @property
    def configs(self) -> list[MetricConfig]:
        return self._configs

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def get_train_metrics(self) -> nn.ModuleDict:
        return self._metrics["train"]

    def get_val_metrics(self) -> nn.ModuleDict:
        return self._metrics["val"]

    def get_test_metrics(self) -> nn.ModuleDict:
        return self._metrics["test"]

    def get_metric_config(self, stage: str, name: str) -> MetricConfig | None:
        """The config of metric ``name`` if it runs in ``stage``."""
        config = self.get_config_by_name(name)
        return config if config is not None and stage in config.stages else None

    def get_metric_by_name(self, name: str, stage: str | None = None) -> nn.Module | None:
        """The metric ``name`` of ``stage``; with no stage, the first found in
        val, train, test (AutoTimm's order). None when there is none."""
        if stage is not None and stage not in _STAGES:
            raise ValueError(f"stage must be one of {list(_STAGES)}, got {stage!r}")
        for each in (stage,) if stage is not None else ("val", "train", "test"):
            if name in self._metrics[each]:
                return self._metrics[each][name]
        return None

    def get_config_by_name(self, name: str) -> MetricConfig | None:
        return next((c for c in self._configs if c.name == name), None)

    def __len__(self) -> int:
        return len(self._configs)

    def __iter__(self) -> Iterator[MetricConfig]:
        return iter(self._configs)

    def __getitem__(self, index: int) -> MetricConfig:
        return self._configs[index]
