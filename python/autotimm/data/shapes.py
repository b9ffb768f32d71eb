"""Embedded synthetic detection data: coloured shapes on textured backgrounds.

A deterministic, download-free dataset for the ``autotimm`` main job, tests and
benchmarks. Each image holds a few non-overlapping shapes of four classes
(rectangle, ellipse, triangle, diamond) in several sizes on a textured
background (smooth colour noise, stripes and pixel noise). Boxes are the tight
pixel extent of each painted shape, so they are exact.

Two ways to use it:

* :class:`ShapesDataset` — in memory, items generated on demand from
  ``(seed, split, index)``; items follow the detection dataset contract
  (``image``, ``boxes``, ``labels``, ``image_id``, ``orig_size``).
* :func:`write_shapes_coco` — writes a real COCO folder (PNG images and
  ``annotations/instances_{split}2017.json``) so the COCO code path is used.

Everything is vectorised with numpy/torch (no per-pixel Python loops): an image
of 128x128 with four shapes takes well under a millisecond to a few ms.
"""

from __future__ import annotations

import colorsys
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "SHAPES_CLASS_NAMES",
    "SHAPES_BUILTIN",
    "ShapesConfig",
    "ShapesDataset",
    "generate_shapes_image",
    "shapes_cache_dir",
    "write_shapes_coco",
]

#: Class names of the embedded dataset, index = contiguous label.
SHAPES_CLASS_NAMES: tuple[str, ...] = ("rectangle", "ellipse", "triangle", "diamond")

#: The ``data_dir`` value that selects the embedded dataset in ``DetectionDataModule``.
SHAPES_BUILTIN = "builtin:shapes"

#: Bump when the generator changes, so cached folders are rewritten.
_GENERATOR_VERSION = 1

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class ShapesConfig:
    """Parameters of the synthetic shapes generator.

    Parameters
    ----------
    image_size:
        Side of the square images, in pixels.
    min_objects, max_objects:
        Number of shapes per image, drawn uniformly in ``[min_objects, max_objects]``.
    min_size, max_size:
        Side range of a shape's box in pixels (``max_size=None`` → ``image_size // 2``).
    seed:
        Base seed; an image depends only on ``(seed, split, index)``.
    """

    image_size: int = 128
    min_objects: int = 1
    max_objects: int = 4
    min_size: int = 12
    max_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError(
                f"need 0 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}"
            )
        hi = self.resolved_max_size
        if not 4 <= self.min_size <= hi <= self.image_size:
            raise ValueError(
                f"need 4 <= min_size <= max_size <= image_size, got min_size={self.min_size}, "
                f"max_size={hi}, image_size={self.image_size}"
            )

    @property
    def resolved_max_size(self) -> int:
        return self.max_size if self.max_size is not None else self.image_size // 2


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(_SPLIT_CODES)}, got {split!r}")
    return np.random.default_rng([seed, _SPLIT_CODES[split], index, _GENERATOR_VERSION])


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Textured background, float32 [3, H, W] in [0, 1]."""
    # smooth, low-saturation colour field: a coarse random grid upsampled
    base_hsv = (rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.25, 0.85))
    base = np.array(colorsys.hsv_to_rgb(*base_hsv), dtype=np.float32)
    grid = rng.normal(0.0, 0.12, size=(1, 3, 5, 5)).astype(np.float32)
    smooth = F.interpolate(
        torch.from_numpy(grid), size=(size, size), mode="bicubic", align_corners=False
    )[0].numpy()
    # stripes of random orientation / frequency
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    freq = rng.uniform(0.08, 0.5)
    stripes = 0.06 * np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)))
    noise = rng.normal(0.0, 0.03, size=(3, size, size)).astype(np.float32)
    img = base[:, None, None] + smooth + stripes[None] + noise
    return np.clip(img, 0.0, 1.0)


def _shape_mask(kind: int, w: int, h: int) -> np.ndarray:
    """Boolean mask [h, w] of a shape filling a w x h box (pixel centres at +0.5)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xx + 0.5) / w * 2.0 - 1.0  # [-1, 1] across the box
    v = (yy + 0.5) / h * 2.0 - 1.0
    if kind == 0:  # rectangle
        return np.ones((h, w), dtype=bool)
    if kind == 1:  # ellipse
        return u * u + v * v <= 1.0
    if kind == 2:  # triangle, apex at the top centre, base at the bottom
        t = (v + 1.0) / 2.0  # 0 at top, 1 at bottom
        return np.abs(u) <= t
    if kind == 3:  # diamond
        return np.abs(u) + np.abs(v) <= 1.0
    raise ValueError(f"unknown shape kind {kind}")


def _class_colour(rng: np.random.Generator, label: int) -> np.ndarray:
    """Saturated colour whose hue band depends on the class (makes it learnable fast)."""
    k = len(SHAPES_CLASS_NAMES)
    hue = (label / k + rng.uniform(-0.06, 0.06)) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))
    return np.array(rgb, dtype=np.float32)


def generate_shapes_image(
    index: int, split: str = "train", config: ShapesConfig | None = None
) -> dict[str, Any]:
    """Generate one image and its annotations.

    Parameters
    ----------
    index:
        Image index within the split.
    split:
        ``"train"``, ``"val"`` or ``"test"``; splits use disjoint random streams.
    config:
        Generator parameters (default :class:`ShapesConfig`).

    Returns
    -------
    dict
        ``image`` uint8 numpy array [H, W, 3], ``boxes`` float32 [N, 4] xyxy (tight
        pixel extents), ``labels`` int64 [N], ``areas`` float32 [N] (painted pixels).
    """
    cfg = config or ShapesConfig()
    rng = _rng(cfg.seed, split, index)
    size = cfg.image_size
    img = _background(rng, size)
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    lo, hi = cfg.min_size, cfg.resolved_max_size
    boxes: list[list[float]] = []
    labels: list[int] = []
    areas: list[float] = []
    taken = np.zeros((size, size), dtype=bool)
    for _ in range(n):
        for _attempt in range(30):
            w = int(rng.integers(lo, hi + 1))
            h = int(np.clip(round(w * rng.uniform(0.6, 1.6)), lo, hi))
            x0 = int(rng.integers(0, size - w + 1))
            y0 = int(rng.integers(0, size - h + 1))
            # keep a 2-pixel gap to every placed shape
            if taken[max(y0 - 2, 0) : y0 + h + 2, max(x0 - 2, 0) : x0 + w + 2].any():
                continue
            label = int(rng.integers(0, len(SHAPES_CLASS_NAMES)))
            mask = _shape_mask(label, w, h)
            colour = _class_colour(rng, label)
            shade = 1.0 + rng.normal(0.0, 0.04, size=(h, w)).astype(np.float32)
            region = img[:, y0 : y0 + h, x0 : x0 + w]
            fill = np.clip(colour[:, None, None] * shade[None], 0.0, 1.0)
            img[:, y0 : y0 + h, x0 : x0 + w] = np.where(mask[None], fill, region)
            taken[y0 : y0 + h, x0 : x0 + w] = True
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            boxes.append([x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1.0, y0 + rows[-1] + 1.0])
            labels.append(label)
            areas.append(float(mask.sum()))
            break
    image = (img.transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)
    return {
        "image": image,
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, dtype=np.int64),
        "areas": np.asarray(areas, dtype=np.float32),
    }


class ShapesDataset(torch.utils.data.Dataset):
    """In-memory synthetic shapes dataset.

    Parameters
    ----------
    num_images:
        Number of images in the split.
    split:
        ``"train"``, ``"val"`` or ``"test"``.
    image_size, min_objects, max_objects, min_size, max_size, seed:
        Generator parameters, see :class:`ShapesConfig`.
    transform:
        Optional callable applied to each item dict (e.g. a
        :class:`autotimm.data.transforms.DetectionTransform`).

    Items are dicts ``image`` (``tv_tensors.Image`` uint8 [3, H, W]), ``boxes``
    float32 [N, 4] xyxy, ``labels`` int64 [N], ``image_id`` (``index + 1``),
    ``orig_size`` int64 tensor ``[H, W]``, and empty ``crowd_boxes`` /
    ``crowd_labels``.
    """

    class_names: tuple[str, ...] = SHAPES_CLASS_NAMES

    def __init__(
        self,
        num_images: int = 512,
        split: str = "train",
        image_size: int = 128,
        min_objects: int = 1,
        max_objects: int = 4,
        min_size: int = 12,
        max_size: int | None = None,
        seed: int = 0,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        _rng(seed, split, 0)  # validates split
        self.num_images = num_images
        self.split = split
        self.config = ShapesConfig(image_size, min_objects, max_objects, min_size, max_size, seed)
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(SHAPES_CLASS_NAMES)

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        from torchvision import tv_tensors

        raw = generate_shapes_image(index, self.split, self.config)
        size = self.config.image_size
        item: dict[str, Any] = {
            "image": tv_tensors.Image(torch.from_numpy(raw["image"]).permute(2, 0, 1).contiguous()),
            "boxes": torch.from_numpy(raw["boxes"]),
            "labels": torch.from_numpy(raw["labels"]),
            "image_id": index + 1,
            "orig_size": torch.tensor([size, size], dtype=torch.int64),
            "crowd_boxes": torch.zeros((0, 4), dtype=torch.float32),
            "crowd_labels": torch.zeros((0,), dtype=torch.int64),
        }
        if self.transform is not None:
            item = self.transform(item)
        return item


def _coco_split(
    root: Path, split: str, num_images: int, cfg: ShapesConfig, category_ids: Sequence[int]
) -> None:
    from PIL import Image

    img_dir = root / f"{split}2017"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    ann_id = 1
    for i in range(num_images):
        raw = generate_shapes_image(i, split, cfg)
        image_id = i + 1
        file_name = f"{image_id:012d}.png"
        Image.fromarray(raw["image"]).save(img_dir / file_name, compress_level=1)
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "height": cfg.image_size,
                "width": cfg.image_size,
            }
        )
        for box, label, area in zip(raw["boxes"], raw["labels"], raw["areas"], strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": int(category_ids[int(label)]),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": float(area),
                    "iscrowd": 0,
                }
            )
            ann_id += 1
    categories = [
        {"id": int(cid), "name": name, "supercategory": "shape"}
        for cid, name in zip(category_ids, SHAPES_CLASS_NAMES, strict=True)
    ]
    ann_dir = root / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "info": {"description": "autotimm synthetic shapes", "version": str(_GENERATOR_VERSION)},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    tmp = ann_dir / f".instances_{split}2017.json.tmp"
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, ann_dir / f"instances_{split}2017.json")


def write_shapes_coco(
    root: str | os.PathLike[str],
    num_train: int = 512,
    num_val: int = 128,
    num_test: int = 0,
    image_size: int = 128,
    min_objects: int = 1,
    max_objects: int = 4,
    min_size: int = 12,
    max_size: int | None = None,
    seed: int = 0,
    category_ids: Sequence[int] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic shapes as a COCO folder.

    Layout: ``root/{train2017,val2017[,test2017]}/*.png`` and
    ``root/annotations/instances_{train,val[,test]}2017.json`` (boxes ``[x, y, w, h]``,
    ``iscrowd = 0``, ``area`` = painted pixels).

    Parameters
    ----------
    root:
        Output folder (created).
    num_train, num_val, num_test:
        Images per split; a split with 0 images is not written.
    image_size, min_objects, max_objects, min_size, max_size, seed:
        Generator parameters, see :class:`ShapesConfig`.
    category_ids:
        COCO category ids for the classes in :data:`SHAPES_CLASS_NAMES` order
        (default ``1..K``); non-contiguous ids exercise the id mapping.
    overwrite:
        Rewrite even when ``root`` already holds a folder written with the same
        parameters (recorded in ``root/shapes.json``).

    Returns
    -------
    pathlib.Path
        ``root``.
    """
    root = Path(root)
    cfg = ShapesConfig(image_size, min_objects, max_objects, min_size, max_size, seed)
    cats = (
        list(category_ids)
        if category_ids is not None
        else list(range(1, len(SHAPES_CLASS_NAMES) + 1))
    )
    if len(cats) != len(SHAPES_CLASS_NAMES) or len(set(cats)) != len(cats):
        raise ValueError(f"category_ids must be {len(SHAPES_CLASS_NAMES)} distinct ids, got {cats}")
    record = {
        "generator_version": _GENERATOR_VERSION,
        "splits": {"train": num_train, "val": num_val, "test": num_test},
        "config": asdict(cfg),
        "category_ids": cats,
    }
    marker = root / "shapes.json"
    if not overwrite and marker.is_file():
        try:
            if json.loads(marker.read_text()) == record:
                return root
        except (OSError, json.JSONDecodeError):
            pass
    root.mkdir(parents=True, exist_ok=True)
    for split, count in record["splits"].items():
        if count > 0:
            _coco_split(root, split, count, cfg, cats)
    marker.write_text(json.dumps(record, indent=1))
    return root


def shapes_cache_dir() -> Path:
    """Folder where ``DetectionDataModule(data_dir="builtin:shapes")`` writes the dataset.

    ``$AUTOTIMM_DATA_DIR/shapes`` when the variable is set, else
    ``$XDG_CACHE_HOME/autotimm/shapes`` (``~/.cache/autotimm/shapes``).
    """
    base = os.environ.get("AUTOTIMM_DATA_DIR")
    if base:
        return Path(base) / "shapes"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "autotimm" / "shapes"
