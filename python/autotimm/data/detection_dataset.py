"""Detection datasets: COCO JSON and CSV (one row per box).

Items are dicts::

    image        tv_tensors.Image uint8 [3, H, W] (before the transform)
    boxes        float32 [N, 4] xyxy, pixels
    labels       int64 [N], contiguous 0..K-1
    image_id     int (the COCO image id; the row-group index for CSV)
    orig_size    int64 tensor [H, W] of the file on disk
    crowd_boxes  float32 [M, 4] xyxy: COCO ``iscrowd=1`` regions, kept for
                 evaluation as ignore regions and never used as training targets
    crowd_labels int64 [M]

Bad data raises :class:`DetectionDataError` (a ``ValueError``) naming the file
and the entry. Boxes with a non-positive size or outside the image are handled by
``invalid_boxes``: ``"drop"`` (default) drops them and warns once per dataset
with the count and the first offending entry; ``"raise"`` raises on the first.
Boxes that overhang the image by at most ``BOX_TOLERANCE`` pixels (float
rounding in real annotation files) are clipped, not dropped.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autotimm.data.label_checks import check_labels

__all__ = [
    "BOX_TOLERANCE",
    "COCODetectionDataset",
    "CSVDetectionDataset",
    "DetectionDataError",
    "DEFAULT_BBOX_COLUMNS",
    "load_image",
]

#: Pixels a box may overhang the image and still be clipped rather than dropped.
BOX_TOLERANCE: float = 1.0

#: Default CSV box columns (xyxy, pixels).
DEFAULT_BBOX_COLUMNS: tuple[str, str, str, str] = ("x_min", "y_min", "x_max", "y_max")

_INVALID_BOX_MODES = ("drop", "raise")


class DetectionDataError(ValueError):
    """Bad detection data: the message names the file and the entry."""


def load_image(path: str | os.PathLike[str], entry: str = "") -> Any:
    """Read an image file as an RGB ``tv_tensors.Image`` (uint8 [3, H, W]) with PIL.

    Parameters
    ----------
    path:
        Image file.
    entry:
        Description of the annotation entry that refers to the file, used in errors.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError
    from torchvision import tv_tensors

    where = f" ({entry})" if entry else ""
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}{where}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DetectionDataError(f"cannot read image file {path}{where}: {exc}") from exc
    return tv_tensors.Image(torch.from_numpy(arr.copy()).permute(2, 0, 1))


def _check_invalid_mode(invalid_boxes: str) -> str:
    if invalid_boxes not in _INVALID_BOX_MODES:
        raise ValueError(
            f"invalid_boxes must be one of {_INVALID_BOX_MODES}, got {invalid_boxes!r}"
        )
    return invalid_boxes


@dataclass
class _BoxReport:
    """Counts of dropped boxes, warned once per dataset."""

    source: str
    mode: str
    total: int = 0
    non_positive: int = 0
    outside: int = 0
    small: int = 0
    first: str = ""

    def check(
        self, box: Sequence[float], width: float, height: float, entry: str
    ) -> list[float] | None:
        """Return the (clipped) xyxy box, or ``None`` when it is dropped."""
        self.total += 1
        x0, y0, x1, y1 = (float(v) for v in box)
        problem = ""
        if not all(map(_finite, (x0, y0, x1, y1))):
            problem = "non-finite coordinates"
            self.non_positive += 1
        elif x1 <= x0 or y1 <= y0:
            problem = f"non-positive size ({x1 - x0:g} x {y1 - y0:g})"
            self.non_positive += 1
        elif (
            x0 < -BOX_TOLERANCE
            or y0 < -BOX_TOLERANCE
            or x1 > width + BOX_TOLERANCE
            or y1 > height + BOX_TOLERANCE
        ):
            problem = f"outside the {width:g}x{height:g} image"
            self.outside += 1
        if problem:
            msg = f"{entry}: box {[x0, y0, x1, y1]} (xyxy) has {problem}"
            if self.mode == "raise":
                raise DetectionDataError(
                    f"{self.source}: {msg}; pass invalid_boxes='drop' to drop such boxes"
                )
            if not self.first:
                self.first = msg
            return None
        x0, y0 = max(x0, 0.0), max(y0, 0.0)
        x1, y1 = min(x1, float(width)), min(y1, float(height))
        return [x0, y0, x1, y1]

    def warn(self) -> None:
        dropped = self.non_positive + self.outside
        if dropped:
            warnings.warn(
                f"{self.source}: dropped {dropped} of {self.total} boxes "
                f"({self.non_positive} with non-positive size, {self.outside} outside the image); "
                f"first: {self.first}. Pass invalid_boxes='raise' to stop on such boxes.",
                UserWarning,
                stacklevel=3,
            )


def _finite(v: float) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))


class _DetectionDatasetBase(torch.utils.data.Dataset):
    """Shared storage and ``__getitem__`` of the file-backed datasets."""

    def __init__(self, transform: Callable[[dict[str, Any]], dict[str, Any]] | None) -> None:
        self.transform = transform
        self._paths: list[Path] = []
        self._entries: list[str] = []
        self._ids: list[int] = []
        self._sizes: list[tuple[int, int]] = []  # (H, W) declared / read at construction
        self._boxes: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._crowd_boxes: list[torch.Tensor] = []
        self._crowd_labels: list[torch.Tensor] = []
        self.class_names: list[str] = []

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_ids(self) -> list[int]:
        return list(self._ids)

    def image_path(self, index: int) -> Path:
        """Path of the image file of item ``index``."""
        return self._paths[index]

    def __len__(self) -> int:
        return len(self._paths)

    def _append(
        self,
        path: Path,
        entry: str,
        image_id: int,
        size: tuple[int, int],
        boxes: list[list[float]],
        labels: list[int],
        crowd_boxes: list[list[float]],
        crowd_labels: list[int],
    ) -> None:
        self._paths.append(path)
        self._entries.append(entry)
        self._ids.append(image_id)
        self._sizes.append(size)
        self._boxes.append(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        self._labels.append(torch.tensor(labels, dtype=torch.int64))
        self._crowd_boxes.append(torch.tensor(crowd_boxes, dtype=torch.float32).reshape(-1, 4))
        self._crowd_labels.append(torch.tensor(crowd_labels, dtype=torch.int64))

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self._paths[index]
        image = load_image(path, self._entries[index])
        h, w = int(image.shape[-2]), int(image.shape[-1])
        if (h, w) != self._sizes[index]:
            eh, ew = self._sizes[index]
            raise DetectionDataError(
                f"{path} ({self._entries[index]}): image is {w}x{h} but the annotations "
                f"say {ew}x{eh}"
            )
        item: dict[str, Any] = {
            "image": image,
            "boxes": self._boxes[index].clone(),
            "labels": self._labels[index].clone(),
            "image_id": self._ids[index],
            "orig_size": torch.tensor([h, w], dtype=torch.int64),
            "crowd_boxes": self._crowd_boxes[index].clone(),
            "crowd_labels": self._crowd_labels[index].clone(),
        }
        if self.transform is not None:
            item = self.transform(item)
        check_labels(
            [torch.as_tensor(item["labels"])],
            self.num_classes,
            [f"{path} ({self._entries[index]})"],
            type(self).__name__,
        )
        return item


def _existing_files(directory: Path) -> set[str] | None:
    try:
        return set(os.listdir(directory))
    except OSError:
        return None


class COCODetectionDataset(_DetectionDatasetBase):
    """COCO-format detection dataset (``instances_*.json``).

    Parameters
    ----------
    images_dir:
        Folder with the images named by ``file_name`` in the JSON.
    annotations_file:
        COCO instances JSON.
    transform:
        Callable applied to each item dict.
    min_bbox_area:
        Boxes with ``w * h`` below this (pixels²) are skipped (a filter, not an error).
    class_ids:
        Keep only these COCO category ids (annotations of other categories are
        skipped). ``None`` keeps all.
    invalid_boxes:
        ``"drop"`` (warn with the count) or ``"raise"``, for boxes with a
        non-positive size or outside the image.
    category_ids:
        COCO category ids in contiguous-label order, to reuse the training set's
        mapping for validation/test files. ``None`` → the file's (filtered)
        categories sorted by id.

    Attributes
    ----------
    class_names:
        Category names in label order.
    category_ids:
        ``category_ids[label]`` is the file's category id of a contiguous label.
    cat_id_to_label:
        The inverse mapping.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        annotations_file: str | os.PathLike[str],
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        min_bbox_area: float = 0.0,
        class_ids: Sequence[int] | None = None,
        invalid_boxes: str = "drop",
        category_ids: Sequence[int] | None = None,
    ) -> None:
        super().__init__(transform)
        self.images_dir = Path(images_dir)
        self.annotations_file = Path(annotations_file)
        self.min_bbox_area = float(min_bbox_area)
        self.invalid_boxes = _check_invalid_mode(invalid_boxes)
        data = read_coco_json(self.annotations_file)
        src = str(self.annotations_file)

        categories = _coco_categories(data, src)
        if class_ids is not None:
            unknown = [c for c in class_ids if c not in categories]
            if unknown:
                raise DetectionDataError(
                    f"{src}: class_ids {unknown} are not categories of the file "
                    f"(categories: {sorted(categories)})"
                )
            keep = sorted(set(int(c) for c in class_ids))
        else:
            keep = sorted(categories)
        if category_ids is not None:
            missing = [c for c in keep if c not in set(category_ids)]
            if missing:
                raise DetectionDataError(
                    f"{src}: categories {missing} are not in the training categories "
                    f"{list(category_ids)}"
                )
            keep = [int(c) for c in category_ids]
        self.category_ids: list[int] = keep
        self.cat_id_to_label: dict[int, int] = {c: i for i, c in enumerate(keep)}
        self.class_names = [categories.get(c, str(c)) for c in keep]

        images = data.get("images")
        if not isinstance(images, list):
            raise DetectionDataError(f"{src}: 'images' must be a list of image entries")
        image_index: dict[int, int] = {}
        infos: list[dict[str, Any]] = []
        for i, img in enumerate(images):
            entry = f"images[{i}]"
            if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
                raise DetectionDataError(f"{src}: {entry} needs 'id' and 'file_name', got {img!r}")
            if img["id"] in image_index:
                raise DetectionDataError(f"{src}: {entry} repeats image id {img['id']}")
            image_index[img["id"]] = i
            infos.append(img)

        listing = _existing_files(self.images_dir)
        if listing is None:
            raise FileNotFoundError(
                f"images_dir not found: {self.images_dir} (images of {self.annotations_file})"
            )
        missing_files = []
        for i, img in enumerate(infos):
            name = str(img["file_name"])
            if name not in listing and not (self.images_dir / name).is_file():
                missing_files.append(f"{self.images_dir / name} (images[{i}], id {img['id']})")
        if missing_files:
            more = f"; and {len(missing_files) - 1} more" if len(missing_files) > 1 else ""
            raise FileNotFoundError(f"{src}: image file not found: {missing_files[0]}{more}")

        per_image: list[list[tuple[list[float], int, bool]]] = [[] for _ in infos]
        report = _BoxReport(src, self.invalid_boxes)
        self.num_skipped_small = 0
        self.num_skipped_class = 0
        annotations = data.get("annotations", [])
        if not isinstance(annotations, list):
            raise DetectionDataError(f"{src}: 'annotations' must be a list")
        for j, ann in enumerate(annotations):
            entry = f"annotations[{j}]" + (
                f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann else ""
            )
            if not isinstance(ann, dict):
                raise DetectionDataError(f"{src}: {entry} is not an object")
            for key in ("image_id", "category_id", "bbox"):
                if key not in ann:
                    raise DetectionDataError(f"{src}: {entry} has no '{key}'")
            cat = ann["category_id"]
            if cat not in categories:
                raise DetectionDataError(
                    f"{src}: {entry} has unknown category_id {cat!r} "
                    f"(categories: {sorted(categories)})"
                )
            if ann["image_id"] not in image_index:
                raise DetectionDataError(
                    f"{src}: {entry} refers to image_id {ann['image_id']!r}, "
                    "which is not in 'images'"
                )
            if cat not in self.cat_id_to_label:
                self.num_skipped_class += 1
                continue
            bbox = ann["bbox"]
            if (
                not isinstance(bbox, (list, tuple))
                or len(bbox) != 4
                or not all(isinstance(v, (int, float)) for v in bbox)
            ):
                raise DetectionDataError(f"{src}: {entry} bbox must be [x, y, w, h], got {bbox!r}")
            idx = image_index[ann["image_id"]]
            info = infos[idx]
            x, y, w, h = (float(v) for v in bbox)
            crowd = bool(ann.get("iscrowd", 0))
            width, height = _image_wh(info, src, idx)
            where = f"{entry}, image {info['file_name']}"
            box = report.check([x, y, x + w, y + h], width, height, where)
            if box is None:
                continue
            if not crowd and (box[2] - box[0]) * (box[3] - box[1]) < self.min_bbox_area:
                self.num_skipped_small += 1
                continue
            per_image[idx].append((box, self.cat_id_to_label[cat], crowd))
        report.warn()
        self.box_report = report

        for idx, info in enumerate(infos):
            anns = per_image[idx]
            width, height = _image_wh(info, src, idx)
            self._append(
                self.images_dir / str(info["file_name"]),
                f"{src} images[{idx}], id {info['id']}",
                int(info["id"]),
                (height, width),
                [a[0] for a in anns if not a[2]],
                [a[1] for a in anns if not a[2]],
                [a[0] for a in anns if a[2]],
                [a[1] for a in anns if a[2]],
            )


def read_coco_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a COCO JSON file with errors that name the file and the position."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file not found: {path}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DetectionDataError(
            f"{path}: annotation JSON does not parse: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise DetectionDataError(
            f"{path}: expected a JSON object with 'images', 'annotations', "
            f"'categories', got {type(data).__name__}"
        )
    return data


def _coco_categories(data: dict[str, Any], src: str) -> dict[int, str]:
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise DetectionDataError(f"{src}: 'categories' must be a non-empty list")
    out: dict[int, str] = {}
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or "id" not in c:
            raise DetectionDataError(f"{src}: categories[{i}] needs an 'id', got {c!r}")
        out[c["id"]] = str(c.get("name", c["id"]))
    return out


def _image_wh(info: dict[str, Any], src: str, idx: int) -> tuple[int, int]:
    try:
        return int(info["width"]), int(info["height"])
    except (KeyError, TypeError, ValueError):
        raise DetectionDataError(
            f"{src}: images[{idx}] (id {info.get('id')}) needs integer 'width' and 'height'"
        ) from None


def coco_categories(path: str | os.PathLike[str]) -> dict[int, str]:
    """Category id → name of a COCO JSON file (used before ``setup``)."""
    return _coco_categories(read_coco_json(path), str(path))


class CSVDetectionDataset(_DetectionDatasetBase):
    """Detection dataset from a CSV file with one row per box.

    Columns: ``image_column`` (path relative to ``image_dir``), four box columns
    (xyxy in pixels; default ``x_min, y_min, x_max, y_max``) and ``label_column``
    (class name). A row with empty box cells lists an image without objects.

    Parameters
    ----------
    csv_path:
        The CSV file.
    image_dir:
        Folder the image paths are relative to.
    image_column, bbox_columns, label_column:
        Column names.
    transform:
        Callable applied to each item dict.
    min_bbox_area:
        Boxes with an area below this (pixels²) are skipped.
    invalid_boxes:
        ``"drop"`` (warn with the count) or ``"raise"``.
    class_names:
        Class list to map labels with (e.g. the training set's, for a validation
        CSV); a label outside it is an error. ``None`` → sorted unique labels.
    """

    def __init__(
        self,
        csv_path: str | os.PathLike[str],
        image_dir: str | os.PathLike[str] = ".",
        image_column: str = "image_path",
        bbox_columns: Sequence[str] | None = None,
        label_column: str = "label",
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        min_bbox_area: float = 0.0,
        invalid_boxes: str = "drop",
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(transform)
        self.csv_path = Path(csv_path)
        self.image_dir = Path(image_dir)
        self.image_column = image_column
        self.bbox_columns = (
            list(bbox_columns) if bbox_columns is not None else list(DEFAULT_BBOX_COLUMNS)
        )
        if len(self.bbox_columns) != 4:
            raise ValueError(f"bbox_columns must name 4 columns (xyxy), got {self.bbox_columns}")
        self.label_column = label_column
        self.min_bbox_area = float(min_bbox_area)
        self.invalid_boxes = _check_invalid_mode(invalid_boxes)
        src = str(self.csv_path)
        rows = read_csv_rows(self.csv_path, [image_column, *self.bbox_columns, label_column])
        if not rows:
            raise DetectionDataError(f"{src}: no rows")

        if class_names is None:
            labels_seen = {r[label_column].strip() for _, r in rows if r[label_column].strip()}
            self.class_names = sorted(labels_seen)
        else:
            self.class_names = list(class_names)
        label_index = {n: i for i, n in enumerate(self.class_names)}

        from PIL import Image

        groups: dict[str, list[tuple[int, dict[str, str]]]] = {}
        for line, row in rows:
            groups.setdefault(row[image_column].strip(), []).append((line, row))
        report = _BoxReport(src, self.invalid_boxes)
        self.num_skipped_small = 0
        for image_id, (rel, group) in enumerate(groups.items()):
            first_line = group[0][0]
            if not rel:
                raise DetectionDataError(f"{src}: line {first_line}: empty '{image_column}'")
            path = self.image_dir / rel
            try:
                with Image.open(path) as img:
                    width, height = img.size
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"{src}: line {first_line}: image file not found: {path}"
                ) from None
            except OSError as exc:
                raise DetectionDataError(
                    f"{src}: line {first_line}: cannot read image file {path}: {exc}"
                ) from exc
            boxes, labels = [], []
            for line, row in group:
                cells = [row[c].strip() for c in self.bbox_columns]
                name = row[label_column].strip()
                if not any(cells) and not name:
                    continue  # an image without objects
                entry = f"line {line} ({rel})"
                try:
                    coords = [float(c) for c in cells]
                except ValueError:
                    raise DetectionDataError(
                        f"{src}: {entry}: box columns {self.bbox_columns} must be numbers, "
                        f"got {cells}"
                    ) from None
                if name not in label_index:
                    raise DetectionDataError(
                        f"{src}: {entry}: unknown label {name!r} (classes: {self.class_names})"
                    )
                box = report.check(coords, width, height, entry)
                if box is None:
                    continue
                if (box[2] - box[0]) * (box[3] - box[1]) < self.min_bbox_area:
                    self.num_skipped_small += 1
                    continue
                boxes.append(box)
                labels.append(label_index[name])
            self._append(
                path, f"{src} line {first_line}", image_id, (height, width), boxes, labels, [], []
            )
        report.warn()
        self.box_report = report


def read_csv_rows(
    path: str | os.PathLike[str], required: Sequence[str]
) -> list[tuple[int, dict[str, str]]]:
    """Read CSV rows as ``(line number, row dict)``, checking the required columns."""
    path = Path(path)
    try:
        fh = open(path, newline="", encoding="utf-8")  # noqa: SIM115
    except FileNotFoundError:
        raise FileNotFoundError(f"CSV file not found: {path}") from None
    with fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = columns
        for col in required:
            if col not in columns:
                raise ValueError(f"Column '{col}' not found in CSV {path}; columns: {columns}")
        rows = []
        for row in reader:
            if None in row:
                raise DetectionDataError(
                    f"{path}: line {reader.line_num} has more cells than the header"
                )
            if any(row.get(c) is None for c in required):
                raise DetectionDataError(
                    f"{path}: line {reader.line_num} has fewer cells than the header"
                )
            rows.append((reader.line_num, row))
    return rows


def csv_class_names(path: str | os.PathLike[str], label_column: str = "label") -> list[str]:
    """Sorted unique labels of a detection CSV (used before ``setup``)."""
    rows = read_csv_rows(path, [label_column])
    return sorted({r[label_column].strip() for _, r in rows if r[label_column].strip()})
