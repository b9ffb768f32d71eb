"""Lightning tasks."""

from autotimm.tasks.object_detection import ObjectDetector

__all__ = ["ObjectDetector"]
