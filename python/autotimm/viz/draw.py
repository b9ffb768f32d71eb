"""Legible drawings of detections: scaled-up images, boxes in class colours, labels on a
filled background with contrasting text, always inside the image.

Images are enlarged (never shrunk) so that their longest side is at least
``min_side`` pixels; line width and font size follow the drawn size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["PALETTE", "draw_detections", "label_text_color", "save_image", "side_by_side"]

#: Class colours (label k uses ``PALETTE[k % len(PALETTE)]``).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (67, 99, 216),
    (245, 130, 49),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (188, 246, 12),
    (250, 190, 190),
    (0, 128, 128),
    (154, 99, 36),
    (128, 0, 0),
    (0, 0, 128),
    (128, 128, 0),
    (170, 255, 195),
)
#: Default smallest drawn side, in pixels.
MIN_SIDE = 512
_TITLE_BG = (32, 32, 32)
_HALO = (0, 0, 0)


def label_text_color(background: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``background`` (RGB 0..255)."""
    r, g, b = (float(v) for v in background[:3])
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    return (0, 0, 0) if luminance > 120 else (255, 255, 255)


def _to_pil(image: Any) -> Any:
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.is_floating_point():
            t = (t.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"image must be [3, H, W], got {tuple(t.shape)}")
        return Image.fromarray(t.permute(1, 2, 0).contiguous().numpy())
    raise TypeError(f"image must be a PIL image or a tensor [3, H, W], got {type(image).__name__}")


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def draw_detections(
    image: Any,
    boxes: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    scores: torch.Tensor | Sequence[float] | None = None,
    class_names: Sequence[str] = (),
    *,
    min_side: int = MIN_SIDE,
    title: str | None = None,
) -> Any:
    """Draw boxes with ``"name score"`` labels.

    Parameters
    ----------
    image : PIL image or Tensor [3, H, W] (uint8, or float in [0, 1])
    boxes : Tensor [K, 4] float, xyxy pixels of ``image``
    labels : Tensor [K] int or sequence of int
        Contiguous labels (colour and name).
    scores : Tensor [K] or sequence of float, optional
        Appended to the labels with two decimals.
    class_names : sequence of str
        Name of each label (its number when missing).
    min_side : int
        The image is enlarged so that its longest side is at least this.
    title : str, optional
        Written in a band above the image.

    Returns
    -------
    PIL.Image.Image
        RGB, ``ceil(scale * W)`` wide.
    """
    from PIL import Image, ImageDraw

    img = _to_pil(image)
    w, h = img.size
    scale = max(1.0, float(min_side) / max(w, h, 1))
    if scale > 1.0:
        img = img.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
    width, height = img.size
    long_side = max(width, height)
    line = max(2, round(long_side / 256))
    font = _font(max(14, round(long_side / 32)))
    pad = max(2, line)
    draw = ImageDraw.Draw(img)

    box_list = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4).mul(scale).tolist()
    label_list = [int(v) for v in torch.as_tensor(labels).reshape(-1).tolist()]
    score_list = (
        None if scores is None else [float(v) for v in torch.as_tensor(scores).reshape(-1).tolist()]
    )
    for k, (box, label) in enumerate(zip(box_list, label_list, strict=True)):
        color = PALETTE[label % len(PALETTE)]
        x0, y0 = min(max(box[0], 0.0), width - 1), min(max(box[1], 0.0), height - 1)
        x1, y1 = min(max(box[2], x0), width - 1), min(max(box[3], y0), height - 1)
        # a dark halo keeps a box visible on an object of its own colour
        draw.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), outline=_HALO, width=line + 2)
        draw.rectangle((x0, y0, x1, y1), outline=color, width=line)
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        text = name if score_list is None else f"{name} {score_list[k]:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2 * pad, bottom - top + 2 * pad
        tx = min(max(x0, 0.0), max(width - tw, 0.0))
        ty = y0 - th if y0 - th >= 0 else min(y0, max(height - th, 0.0))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=color, outline=_HALO, width=1)
        draw.text((tx + pad - left, ty + pad - top), text, fill=label_text_color(color), font=font)
    if title:
        img = _with_title(img, title, font, pad)
    return img


def _with_title(img: Any, title: str, font: Any, pad: int) -> Any:
    from PIL import Image, ImageDraw

    probe = ImageDraw.Draw(img)
    left, top, right, bottom = probe.textbbox((0, 0), title, font=font)
    band = bottom - top + 4 * pad
    out = Image.new("RGB", (img.width, img.height + band), _TITLE_BG)
    out.paste(img, (0, band))
    ImageDraw.Draw(out).text(
        (2 * pad - left, 2 * pad - top), title, fill=(255, 255, 255), font=font
    )
    return out


def side_by_side(*images: Any, gap: int = 8) -> Any:
    """Images next to each other (top-aligned) on a dark background."""
    from PIL import Image

    if not images:
        raise ValueError("side_by_side needs at least one image")
    width = sum(im.width for im in images) + gap * (len(images) - 1)
    height = max(im.height for im in images)
    out = Image.new("RGB", (width, height), _TITLE_BG)
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width + gap
    return out


def save_image(image: Any, path: str | os.PathLike[str]) -> Path:
    """Save a PIL image (format from the suffix), creating the folder; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out
