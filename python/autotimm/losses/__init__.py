"""Detection losses and the loss registry."""

from autotimm.losses.centerness import CenternessLoss, centerness_target
from autotimm.losses.fcos import FCOSLoss, detection_losses
from autotimm.losses.focal import FocalLoss, sigmoid_focal_loss
from autotimm.losses.iou import CIoULoss, DIoULoss, GIoULoss, IoULoss, ltrb_as_boxes, paired_iou
from autotimm.losses.registry import (
    LossRegistry,
    get_loss_registry,
    list_available_losses,
    register_custom_loss,
)

__all__ = [
    "CIoULoss",
    "CenternessLoss",
    "DIoULoss",
    "FCOSLoss",
    "FocalLoss",
    "GIoULoss",
    "IoULoss",
    "LossRegistry",
    "centerness_target",
    "detection_losses",
    "get_loss_registry",
    "list_available_losses",
    "ltrb_as_boxes",
    "paired_iou",
    "register_custom_loss",
    "sigmoid_focal_loss",
]
