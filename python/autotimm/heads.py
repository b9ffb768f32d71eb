"""AutoTimm's ``autotimm.heads`` module: FPN and detection heads."""

from autotimm.models.fpn import FPN
from autotimm.models.heads import DetectionHead, ScaleModule, YOLOXHead

__all__ = ["FPN", "DetectionHead", "ScaleModule", "YOLOXHead"]
