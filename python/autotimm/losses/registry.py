"""Name -> loss class registry (AutoTimm's ``get_loss_registry``)."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

TASKS = ("classification", "detection", "segmentation")


class LossRegistry:
    """Loss classes by name and task, with aliases; a new registry holds the
    built-in losses (as AutoTimm's)."""

    def __init__(self) -> None:
        self._losses: dict[str, type[nn.Module]] = {}
        self._tasks: dict[str, str] = {}
        self._aliases: dict[str, str] = {}
        _register_builtins(self)

    def register_loss(
        self,
        name: str,
        loss_class: type[nn.Module],
        alias: str | None = None,
        task: str = "custom",
    ) -> None:
        """Register ``loss_class`` (an ``nn.Module`` subclass) under ``name``."""
        if not (isinstance(loss_class, type) and issubclass(loss_class, nn.Module)):
            raise ValueError(
                f"Loss class for '{name}' must be a torch.nn.Module subclass, got {loss_class!r}"
            )
        self._losses[name] = loss_class
        self._tasks[name] = task
        if alias is not None:
            self._aliases[alias] = name

    def _resolve(self, name: str) -> str:
        name = self._aliases.get(name, name)
        if name not in self._losses:
            raise ValueError(
                f"Loss '{name}' not found in registry. Available losses: {self.list_losses()}"
            )
        return name

    def get_loss(self, name: str, **kwargs: Any) -> nn.Module:
        """Instantiate the loss registered as ``name`` (or an alias) with ``kwargs``."""
        return self._losses[self._resolve(name)](**kwargs)

    def has_loss(self, name: str) -> bool:
        return self._aliases.get(name, name) in self._losses

    def list_losses(self, task: str | None = None) -> list[str]:
        """Registered names, all or those of ``task``."""
        if task is None:
            return sorted(self._losses)
        task = task.lower()
        if task not in TASKS and task not in self._tasks.values():
            raise ValueError(f"Unknown task '{task}'; expected one of {list(TASKS)}")
        return sorted(n for n, t in self._tasks.items() if t == task)

    def get_loss_info(self) -> dict[str, list[str]]:
        """Loss names per task: ``{"classification": [...], "detection": [...],
        "segmentation": [...]}`` (AutoTimm's layout)."""
        return {task: self.list_losses(task) for task in TASKS}


def _register_builtins(registry: LossRegistry) -> None:
    from autotimm.losses.centerness import CenternessLoss
    from autotimm.losses.fcos import FCOSLoss
    from autotimm.losses.focal import FocalLoss
    from autotimm.losses.iou import CIoULoss, DIoULoss, GIoULoss, IoULoss

    for name, cls, alias in (
        ("cross_entropy", nn.CrossEntropyLoss, "ce"),
        ("bce_with_logits", nn.BCEWithLogitsLoss, "bce"),
        ("nll", nn.NLLLoss, None),
        ("mse", nn.MSELoss, None),
    ):
        registry.register_loss(name, cls, alias=alias, task="classification")
    for name, cls in (
        ("focal", FocalLoss),
        ("giou", GIoULoss),
        ("iou", IoULoss),
        ("diou", DIoULoss),
        ("ciou", CIoULoss),
        ("centerness", CenternessLoss),
        ("fcos", FCOSLoss),
    ):
        registry.register_loss(name, cls, task="detection")


_REGISTRY: LossRegistry | None = None


def get_loss_registry() -> LossRegistry:
    """The process-wide registry (built-ins registered on first use)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = LossRegistry()
    return _REGISTRY


def list_available_losses(task: str | None = None) -> list[str]:
    """Names in the global registry, all or those of ``task``."""
    return get_loss_registry().list_losses(task)


def register_custom_loss(
    name: str, loss_class: type[nn.Module], alias: str | None = None
) -> None:
    """Register a user loss in the global registry."""
    get_loss_registry().register_loss(name, loss_class, alias=alias, task="custom")
