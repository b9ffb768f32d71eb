"""Detection heads."""

from autotimm.models.heads.common import ScaleModule
from autotimm.models.heads.fcos import DetectionHead
from autotimm.models.heads.yolox import YOLOXHead

__all__ = ["DetectionHead", "ScaleModule", "YOLOXHead"]
