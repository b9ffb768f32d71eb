"""Raw image inputs of :meth:`ObjectDetector.predict`, and the data settings a model carries.

``model.predict`` takes, besides a preprocessed float batch ``[B, 3, H, W]``:

* a path (``str`` / ``os.PathLike``) of an image file,
* a PIL image,
* a ``numpy`` array ``[H, W, 3]`` uint8,
* a ``uint8`` tensor ``[3, H, W]`` or ``[B, 3, H, W]`` (0..255),
* a floating tensor ``[3, H, W]`` with values in ``[0, 1]``,
* a list or tuple of any of these.

Raw images are resized and normalised as in validation (longest side to the
model's ``image_size``, padded right/bottom to a square, normalised with its
``mean``/``std``, see :class:`DataInfo`) and the boxes come back in each input's
original pixels, with ``label_names``. The settings are stored in checkpoints
(``checkpoint["autotimm_data"]``), so ``ObjectDetector.load_from_checkpoint``
gives a model that predicts on files with named labels.

A float ``[B, 3, H, W]`` tensor keeps its meaning: an already preprocessed batch
whose boxes are returned in its own pixels.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "IMAGE_SUFFIXES",
    "PREDICT_CHUNK",
    "DataInfo",
    "accepts_image_inputs",
    "boxes_to_original",
    "eval_mode",
    "find_image_files",
    "is_network_batch",
    "load_inputs",
    "preprocess_images",
]

#: File suffixes read as images (lower case).
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".bmp",
    ".tif",
    ".tiff",
    ".gif",
)
#: Input side used when a model knows no data settings (DetectionDataModule's default).
DEFAULT_IMAGE_SIZE = 640
#: Raw images preprocessed and run per forward pass in ``model.predict``.
PREDICT_CHUNK = 16
#: Key of the data settings in a Lightning checkpoint.
CHECKPOINT_KEY = "autotimm_data"


@dataclass(frozen=True)
class DataInfo:
    """What a trained detector needs to read raw images and name its labels.

    Parameters
    ----------
    class_names : tuple of str
        Name of each contiguous label ``0..K-1``.
    image_size : int
        Longest side of the network input (images are padded to a square).
    mean, std : 3-tuples of float
        Normalisation of ``[0, 1]`` RGB values.
    interpolation : str
        ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
    pad_value : float
        Padding value in 0..255.
    category_ids : tuple of int or None
        Annotation-file category id of each label (COCO data), else None.
    """

    class_names: tuple[str, ...] = ()
    image_size: int = DEFAULT_IMAGE_SIZE
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    pad_value: float = 114.0
    category_ids: tuple[int, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        if isinstance(self.image_size, bool) or int(self.image_size) < 1:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std must have 3 values, got {self.mean}, {self.std}")

    def to_dict(self) -> dict[str, Any]:
        """Plain types, for checkpoints and hyperparameters."""
        return {
            "class_names": list(self.class_names),
            "image_size": int(self.image_size),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "interpolation": self.interpolation,
            "pad_value": float(self.pad_value),
            "category_ids": None if self.category_ids is None else list(self.category_ids),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataInfo:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        ids = data.get("category_ids")
        return cls(
            class_names=tuple(str(n) for n in data.get("class_names", ())),
            image_size=int(data.get("image_size", DEFAULT_IMAGE_SIZE)),
            mean=tuple(float(v) for v in data.get("mean", cls.mean)),
            std=tuple(float(v) for v in data.get("std", cls.std)),
            interpolation=str(data.get("interpolation", "bilinear")),
            pad_value=float(data.get("pad_value", 114.0)),
            category_ids=None if ids is None else tuple(int(i) for i in ids),
        )

    @classmethod
    def from_datamodule(cls, datamodule: Any) -> DataInfo | None:
        """The settings of a :class:`autotimm.DetectionDataModule` (None if it has none)."""
        transform = getattr(datamodule, "eval_transforms", None)
        size = getattr(transform, "image_size", None) or getattr(datamodule, "image_size", None)
        if size is None:
            return None
        try:
            names = tuple(str(n) for n in datamodule.class_names)
        except Exception:  # class names unreadable (no annotations yet)
            names = ()
        ids = getattr(datamodule, "category_ids", None)
        defaults = cls()
        return cls(
            class_names=names,
            image_size=int(size),
            mean=tuple(getattr(transform, "mean", defaults.mean)),
            std=tuple(getattr(transform, "std", defaults.std)),
            interpolation=str(getattr(transform, "interpolation", "bilinear")),
            pad_value=float(getattr(transform, "pad_value", 114.0)),
            category_ids=None if ids is None else tuple(int(i) for i in ids),
        )

    def name_of(self, label: int) -> str:
        """The class name of a contiguous label (its number when unnamed)."""
        return self.class_names[label] if 0 <= label < len(self.class_names) else str(label)


# --------------------------------------------------------------------------- #
# Eval mode
# --------------------------------------------------------------------------- #
@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode and restore every submodule's previous mode.

    BatchNorm statistics are never updated inside; a frozen submodule that was
    in eval mode within a training model stays so afterwards.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


# --------------------------------------------------------------------------- #
# Reading inputs
# --------------------------------------------------------------------------- #
def is_network_batch(images: Any) -> bool:
    """A floating tensor ``[B, 3, H, W]``: already preprocessed for the network."""
    return isinstance(images, torch.Tensor) and images.dim() == 4 and images.is_floating_point()


def find_image_files(source: str | os.PathLike[str]) -> list[Path]:
    """Image files of ``source``: a file, a folder (its images, sorted) or a glob pattern.

    Raises
    ------
    FileNotFoundError
        Nothing matches; the message names ``source``.
    """
    text = os.fspath(source)
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(
                f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {text}"
            )
        return files
    if glob.has_magic(text):
        files = sorted(
            Path(p)
            for p in glob.glob(text, recursive=True)
            if Path(p).suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise FileNotFoundError(f"no image files match {text!r}")
        return files
    raise FileNotFoundError(f"image source not found: {text} (expected a file, folder or glob)")


def output_names(files: Sequence[Path]) -> list[Path]:
    """A distinct relative output name (without suffix) per image file.

    The path below the files' common folder, without the suffix
    (``sub/a.jpg`` -> ``sub/a``), so images of equal names in different
    folders of a recursive glob do not overwrite each other's outputs; when
    two files differ only in their suffix (``a.jpg``, ``a.png``) the suffix is
    kept (``a.jpg``).
    """
    if not files:
        return []
    absolute = [Path(os.path.abspath(p)) for p in files]
    root = Path(os.path.commonpath([p.parent for p in absolute]))
    relative = [p.relative_to(root) for p in absolute]
    names = [r.with_suffix("") for r in relative]
    return names if len(set(names)) == len(names) else relative


def _checked_pixels(image: torch.Tensor, where: str) -> torch.Tensor:
    """``image`` [3, H, W] if it is uint8, or float with finite values in [0, 1]."""
    if image.dtype == torch.uint8:
        return image
    if not image.is_floating_point():
        raise TypeError(
            f"{where}: expected uint8 (0..255) or float (0..1) pixels, got {image.dtype}"
        )
    if image.numel() == 0:
        return image
    if not bool(torch.isfinite(image).all()):
        raise ValueError(f"{where}: the image has NaN or Inf values")
    lo, hi = (float(v) for v in image.aminmax())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(
            f"{where}: a float image must have values in [0, 1], got [{lo:.4g}, {hi:.4g}]; "
            "pass uint8 pixels (0..255) or divide by 255 (a preprocessed batch is "
            "[B, 3, H, W] float)"
        )
    return image


def _as_image_tensor(item: Any, where: str) -> torch.Tensor:
    """One input as a tensor [3, H, W]: uint8 0..255 or float 0..1."""
    import numpy as np

    if isinstance(item, (str, os.PathLike)):
        from autotimm.data.detection_dataset import load_image

        return load_image(item).as_subclass(torch.Tensor)
    if hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
        arr = np.asarray(item.convert("RGB"))
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[-1] != 3:
            raise ValueError(f"{where}: an array must be [H, W, 3], got shape {item.shape}")
        return _checked_pixels(torch.from_numpy(np.ascontiguousarray(item)).permute(2, 0, 1),
                               where)  # fmt: skip
    if isinstance(item, torch.Tensor):
        if item.dim() != 3 or item.shape[0] != 3:
            raise ValueError(f"{where}: a tensor image must be [3, H, W], got {tuple(item.shape)}")
        return _checked_pixels(item.detach().cpu(), where)
    raise TypeError(
        f"{where}: expected a path, PIL image, ndarray [H, W, 3] or tensor [3, H, W], "
        f"got {type(item).__name__}"
    )


def load_inputs(images: Any) -> list[torch.Tensor]:
    """The inputs accepted by ``model.predict`` as a list of ``[3, H, W]`` tensors.

    Parameters
    ----------
    images : path, PIL image, ndarray, tensor [3, H, W] / uint8 [B, 3, H, W], or a list

    Returns
    -------
    list of Tensor [3, H_i, W_i]
        uint8 (0..255) or float (0..1), on the CPU.
    """
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        items: list[Any] = list(images)
    elif isinstance(images, (list, tuple)):
        items = list(images)
    else:
        items = [images]
    if not items:
        raise ValueError("images is empty: expected at least one image")
    return [_as_image_tensor(item, f"images[{i}]") for i, item in enumerate(items)]


def preprocess_images(
    images: Sequence[torch.Tensor], info: DataInfo
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize (longest side), pad and normalise images as the validation transform does.

    Parameters
    ----------
    images : list of Tensor [3, H_i, W_i]
        uint8 0..255 or float 0..1.
    info : DataInfo

    Returns
    -------
    batch : Tensor [B, 3, S, S] float32, S = ``info.image_size``
    resized : Tensor [B, 2] int64
        ``(h, w)`` of each image inside the padded canvas.
    """
    from autotimm.data.transforms import DetectionTransform

    transform = DetectionTransform(
        image_size=info.image_size,
        train=False,
        mean=info.mean,
        std=info.std,
        preset="none",
        pad_value=info.pad_value,
        interpolation=info.interpolation,
    )
    empty_boxes = torch.zeros(0, 4)
    empty_labels = torch.zeros(0, dtype=torch.int64)
    out = [transform({"image": im, "boxes": empty_boxes, "labels": empty_labels}) for im in images]
    batch = torch.stack([o["image"] for o in out])
    resized = torch.stack([o["resized_size"] for o in out])
    return batch, resized


def boxes_to_original(
    boxes: torch.Tensor, resized_hw: Sequence[int], original_hw: Sequence[int]
) -> torch.Tensor:
    """Map xyxy boxes from the network input back to the original image.

    Parameters
    ----------
    boxes : Tensor [K, 4] float, xyxy pixels of the padded network input
    resized_hw : (h, w) of the image region inside the padded input
    original_hw : (H, W) of the original image

    Returns
    -------
    Tensor [K, 4] float32, xyxy original pixels, clamped to the image.
    """
    rh, rw = (float(v) for v in resized_hw)
    oh, ow = (float(v) for v in original_hw)
    scale = boxes.new_tensor([ow / rw, oh / rh, ow / rw, oh / rh], dtype=torch.float32)
    limit = boxes.new_tensor([ow, oh, ow, oh], dtype=torch.float32)
    return torch.minimum((boxes.float() * scale).clamp_min(0), limit)


# --------------------------------------------------------------------------- #
# model.predict
# --------------------------------------------------------------------------- #
def _predict_raw(
    model: Any, images: Any, run: Callable[[torch.Tensor], list[dict[str, torch.Tensor]]]
) -> list[dict[str, Any]]:
    info: DataInfo = model.data_info
    tensors = load_inputs(images)
    device = next(model.parameters()).device
    results: list[dict[str, Any]] = []
    for start in range(0, len(tensors), PREDICT_CHUNK):
        chunk = tensors[start : start + PREDICT_CHUNK]
        batch, resized = preprocess_images(chunk, info)
        detections = run(batch.to(device))
        for image, rs, det in zip(chunk, resized.tolist(), detections, strict=True):
            labels = det["labels"]
            results.append(
                {
                    "boxes": boxes_to_original(det["boxes"], rs, image.shape[-2:]),
                    "scores": det["scores"],
                    "labels": labels,
                    "label_names": [info.name_of(int(k)) for k in labels.tolist()],
                }
            )
    return results


def accepts_image_inputs(predict: Callable[..., Any]) -> Callable[..., Any]:
    """Decorates a detector's ``predict(images)``: eval mode, and raw image inputs.

    A float ``[B, 3, H, W]`` batch goes to ``predict`` unchanged (boxes in its own
    pixels); any other input (see the module docstring) is read, preprocessed per
    ``model.data_info``, and its boxes mapped back to the original pixels, with
    ``label_names`` added. Either way the model runs in eval mode without
    gradients, and every submodule's mode is restored afterwards.
    """

    @functools.wraps(predict)
    def wrapper(self: Any, images: Any, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad(), eval_mode(self):
            if is_network_batch(images):
                return predict(self, images, *args, **kwargs)
            return _predict_raw(self, images, lambda b: predict(self, b, *args, **kwargs))

    return wrapper
