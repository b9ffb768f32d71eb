"""Drawing detections on images (PIL), shared by ``fit``, ``validate`` and ``predict``."""

from autotimm.viz.draw import PALETTE, draw_detections, save_image, side_by_side

__all__ = ["PALETTE", "draw_detections", "save_image", "side_by_side"]
