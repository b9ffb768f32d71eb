"""``DetectionDataModule``: COCO or CSV detection data (or the embedded shapes) for Lightning."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from autotimm.data.collate import FCOSTargetCollate, detection_collate_fn
from autotimm.data.detection_dataset import (
    COCODetectionDataset,
    CSVDetectionDataset,
    coco_categories,
    csv_class_names,
)
from autotimm.data.resumable import resumable_loader
from autotimm.data.shapes import SHAPES_BUILTIN, SHAPES_CLASS_NAMES, shapes_cache_dir
from autotimm.data.transforms import build_detection_transforms

try:  # written beside this module; typed for the CLI when present
    from autotimm.data.transform_config import TransformConfig
except ImportError:  # pragma: no cover - during development only
    TransformConfig = Any  # type: ignore[misc,assignment]

__all__ = ["DetectionDataModule", "SHAPES_BUILTIN"]

#: Image counts of the embedded shapes dataset (``data_dir="builtin:shapes"``).
SHAPES_SPLITS: dict[str, int] = {"train": 1024, "val": 128, "test": 0}
#: Side of the embedded shapes images.
SHAPES_IMAGE_SIZE = 128

_Transform = Callable[[dict[str, Any]], dict[str, Any]]


#: Constructor arguments naming files or folders: kept in checkpoints as absolute paths.
PATH_ARGS = (
    "data_dir", "train_images_dir", "val_images_dir", "train_ann_file", "val_ann_file",
    "test_images_dir", "test_ann_file", "train_csv", "val_csv", "test_csv", "image_dir",
)  # fmt: skip
#: Constructor arguments with plain values, kept in checkpoints (see ``settings``).
SETTING_ARGS = PATH_ARGS + (
    "image_column", "bbox_columns", "label_column", "image_size", "batch_size",
    "num_workers", "augmentation_preset", "backbone", "pin_memory", "persistent_workers",
    "prefetch_factor", "min_bbox_area", "class_ids", "invalid_boxes",
)  # fmt: skip


def _default_num_workers() -> int:
    return min(os.cpu_count() or 0, 4)


def checkpoint_settings(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The :meth:`DetectionDataModule.settings` a checkpoint carries (Lightning stores a
    data module's ``state_dict`` under its class name), or None."""
    for value in checkpoint.values():
        if isinstance(value, dict) and isinstance(value.get("settings"), dict):
            settings = value["settings"]
            if set(settings) <= set(SETTING_ARGS) and "data_dir" in settings:
                return dict(settings)
    return None


class DetectionDataModule(pl.LightningDataModule):
    """Object detection data: COCO JSON, CSV (one row per box) or the embedded shapes.

    **COCO mode** (default): ``data_dir`` holds ``train2017/``, ``val2017/`` and
    ``annotations/instances_{train,val}2017.json`` (and optionally ``test2017/`` +
    ``instances_test2017.json``); any of these can be given explicitly with
    ``train_images_dir``/``train_ann_file``/``val_*``/``test_*``. COCO boxes
    ``[x, y, w, h]`` become xyxy; ``iscrowd`` annotations are kept as ignore regions
    for evaluation (``crowd_boxes``) and never used as training targets; category
    ids map to contiguous labels ``0..K-1`` (sorted by id) and the mapping is kept
    (:attr:`category_ids`) so results can be written back in the file's ids.

    ``data_dir="builtin:shapes"`` uses the embedded synthetic shapes dataset,
    written once as a COCO folder under :func:`autotimm.data.shapes.shapes_cache_dir`.

    **CSV mode** (when ``train_csv`` is set): one row per box with columns
    ``image_column``, ``bbox_columns`` (xyxy pixels, default ``x_min, y_min, x_max,
    y_max``) and ``label_column`` (class names, sorted into ``class_names``);
    image paths are relative to ``image_dir`` (default: the CSV's folder).

    Parameters
    ----------
    data_dir, train_images_dir, val_images_dir, train_ann_file, val_ann_file,
    test_images_dir, test_ann_file:
        COCO locations.
    train_csv, val_csv, test_csv, image_dir, image_column, bbox_columns, label_column:
        CSV mode.
    image_size:
        Longest side after resizing; images are padded to a square of this size.
    batch_size:
        Images per batch (per process under DDP).
    num_workers:
        DataLoader worker processes.
    train_transforms, eval_transforms:
        Callables on item dicts replacing the default transforms.
    augmentation_preset:
        ``"default"`` (flip + colour jitter), ``"light"`` (flip), ``"strong"``,
        ``"none"``.
    transform_config:
        A :class:`autotimm.TransformConfig`; its ``image_size``, ``mean``/``std``
        and ``preset`` (when a detection preset) override the arguments above.
    backbone:
        timm model name whose pretrained config gives the normalisation mean/std.
    pin_memory, persistent_workers, prefetch_factor:
        DataLoader options (``pin_memory`` only takes effect with CUDA).
    min_bbox_area:
        Boxes smaller than this (pixels², on the original image) are skipped.
    class_ids:
        COCO category ids to keep (others are skipped).
    invalid_boxes:
        ``"drop"`` (default: drop boxes with non-positive size or outside the
        image, warning with the count and the first entry) or ``"raise"``.

    Checkpoints written while training with this module carry its
    :meth:`settings` (Lightning's ``state_dict``), so that ``autotimm
    validate|test|predict --ckpt_path`` finds the data again without its flags.

    Attributes
    ----------
    num_classes, class_names:
        Filled by :meth:`setup` (readable before it: they are read from the
        training annotations on first access).
    category_ids:
        COCO category id of each contiguous label (``None`` in CSV mode).
    precompute_targets:
        ``True`` (default): when the attached model is an FCOS detector, the
        training loader assigns FCOS targets in its workers (``batch["targets"]``).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] = "./coco",
        train_images_dir: str | os.PathLike[str] | None = None,
        val_images_dir: str | os.PathLike[str] | None = None,
        train_ann_file: str | os.PathLike[str] | None = None,
        val_ann_file: str | os.PathLike[str] | None = None,
        test_images_dir: str | os.PathLike[str] | None = None,
        test_ann_file: str | os.PathLike[str] | None = None,
        train_csv: str | os.PathLike[str] | None = None,
        val_csv: str | os.PathLike[str] | None = None,
        test_csv: str | os.PathLike[str] | None = None,
        image_dir: str | os.PathLike[str] | None = None,
        image_column: str = "image_path",
        bbox_columns: list[str] | None = None,
        label_column: str = "label",
        image_size: int = 640,
        batch_size: int = 16,
        num_workers: int = _default_num_workers(),
        train_transforms: _Transform | None = None,
        eval_transforms: _Transform | None = None,
        augmentation_preset: str = "default",
        transform_config: TransformConfig | None = None,
        backbone: str | None = None,
        pin_memory: bool = True,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        min_bbox_area: float = 0.0,
        class_ids: list[int] | None = None,
        invalid_boxes: str = "drop",
    ) -> None:
        super().__init__()
        if int(batch_size) <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if invalid_boxes not in ("drop", "raise"):
            raise ValueError(f"invalid_boxes must be 'drop' or 'raise', got {invalid_boxes!r}")
        self.data_dir = str(data_dir)
        self.train_images_dir = train_images_dir
        self.val_images_dir = val_images_dir
        self.train_ann_file = train_ann_file
        self.val_ann_file = val_ann_file
        self.test_images_dir = test_images_dir
        self.test_ann_file = test_ann_file
        self.train_csv = train_csv
        self.val_csv = val_csv
        self.test_csv = test_csv
        self.image_dir = image_dir
        self.image_column = image_column
        self.bbox_columns = list(bbox_columns) if bbox_columns is not None else None
        self.label_column = label_column
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.augmentation_preset = augmentation_preset
        self.transform_config = transform_config
        self.backbone = backbone
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.prefetch_factor = prefetch_factor
        self.min_bbox_area = float(min_bbox_area)
        self.class_ids = list(class_ids) if class_ids is not None else None
        self.invalid_boxes = invalid_boxes
        self.precompute_targets = True

        default_train, default_eval = build_detection_transforms(
            self.image_size, augmentation_preset, transform_config, backbone
        )
        self.train_transforms = train_transforms if train_transforms is not None else default_train
        self.eval_transforms = eval_transforms if eval_transforms is not None else default_eval

        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        self._class_names: list[str] | None = None
        self.category_ids: list[int] | None = None

    # --------------------------------------------------------------- settings
    def settings(self) -> dict[str, Any]:
        """The constructor's plain-valued arguments (:data:`SETTING_ARGS`), paths made
        absolute: what rebuilds this module as ``DetectionDataModule(**settings)``
        (transforms and ``transform_config`` are objects and are left out)."""
        out: dict[str, Any] = {}
        for name in SETTING_ARGS:
            value = getattr(self, name)
            if name in PATH_ARGS and value is not None and not str(value).startswith("builtin:"):
                value = os.path.abspath(os.fspath(value))
            out[name] = value
        return out

    def state_dict(self) -> dict[str, Any]:
        """``{"settings": settings()}``: Lightning stores it in every checkpoint."""
        return {"settings": self.settings()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to restore: the settings come from the constructor; they are in the
        checkpoint for the command line (:func:`checkpoint_settings`)."""

    # ------------------------------------------------------------------ paths
    @property
    def is_csv(self) -> bool:
        """CSV mode: any of ``train_csv``/``val_csv``/``test_csv`` is set."""
        return any(p is not None for p in (self.train_csv, self.val_csv, self.test_csv))

    @property
    def is_builtin_shapes(self) -> bool:
        return self.data_dir == SHAPES_BUILTIN and not self.is_csv

    def _coco_root(self) -> Path:
        return shapes_cache_dir() if self.is_builtin_shapes else Path(self.data_dir)

    def _coco_paths(self, split: str) -> tuple[Path, Path, bool]:
        """(images_dir, ann_file, explicit) for ``split``."""
        root = self._coco_root()
        images = getattr(self, f"{split}_images_dir")
        ann = getattr(self, f"{split}_ann_file")
        explicit = images is not None or ann is not None
        return (
            Path(images) if images is not None else root / f"{split}2017",
            Path(ann) if ann is not None else root / "annotations" / f"instances_{split}2017.json",
            explicit,
        )

    def _csv_image_dir(self, csv_path: str | os.PathLike[str]) -> Path:
        return Path(self.image_dir) if self.image_dir is not None else Path(csv_path).parent

    # ------------------------------------------------------------ class info
    @property
    def class_names(self) -> list[str]:
        """Class names in label order (read from the training annotations if needed)."""
        if self._class_names is None:
            self._class_names = self._peek_class_names()
        return list(self._class_names)

    @class_names.setter
    def class_names(self, value: Sequence[str]) -> None:
        self._class_names = list(value)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def _peek_class_names(self) -> list[str]:
        if self.is_csv:
            first = next(p for p in (self.train_csv, self.val_csv, self.test_csv) if p is not None)
            return csv_class_names(first, self.label_column)
        if self.is_builtin_shapes:
            self.category_ids = list(range(1, len(SHAPES_CLASS_NAMES) + 1))
            return list(SHAPES_CLASS_NAMES)
        for split in ("train", "val", "test"):
            _, ann, explicit = self._coco_paths(split)
            if ann.is_file() or explicit:
                cats = coco_categories(ann)
                ids = sorted(self.class_ids) if self.class_ids is not None else sorted(cats)
                self.category_ids = ids
                return [cats.get(c, str(c)) for c in ids]
        raise FileNotFoundError(
            f"no annotation file found under data_dir {self.data_dir!r} "
            "(expected annotations/instances_train2017.json); pass data_dir, train_ann_file "
            "or train_csv"
        )

    # --------------------------------------------------------------- setup
    def prepare_data(self) -> None:
        """Write the embedded shapes COCO folder when ``data_dir="builtin:shapes"``."""
        if self.is_builtin_shapes:
            from autotimm.data.shapes import write_shapes_coco

            write_shapes_coco(
                shapes_cache_dir(),
                num_train=SHAPES_SPLITS["train"],
                num_val=SHAPES_SPLITS["val"],
                num_test=SHAPES_SPLITS["test"],
                image_size=SHAPES_IMAGE_SIZE,
            )

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets needed by ``stage`` and fill ``num_classes``/``class_names``.

        Parameters
        ----------
        stage:
            ``"fit"`` (train + val), ``"validate"`` (val), ``"test"``, ``"predict"``
            (test if given, else val) or ``None`` (all available).
        """
        if self.is_builtin_shapes:
            self.prepare_data()  # idempotent; covers setup() called without a Trainer
        wanted = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("test", "val"),
            None: ("train", "val", "test"),
        }.get(stage, ("train", "val", "test"))
        for split in wanted:
            if getattr(self, f"{split}_dataset") is None:
                ds = self._build(split, required=(split == "train" or stage in ("test",)))
                setattr(self, f"{split}_dataset", ds)
        if stage == "predict" and self.test_dataset is None and self.val_dataset is None:
            raise FileNotFoundError("predict needs a test or validation set; none was found")
        if stage == "validate" and self.val_dataset is None:
            raise FileNotFoundError(self._missing_message("val"))

    def _missing_message(self, split: str) -> str:
        if self.is_csv:
            return f"no {split}_csv given"
        images, ann, _ = self._coco_paths(split)
        return f"no {split} set: {ann} not found"

    def _build(self, split: str, required: bool) -> Dataset | None:
        transform = self.train_transforms if split == "train" else self.eval_transforms
        if self.is_csv:
            path = getattr(self, f"{split}_csv")
            if path is None:
                if required:
                    raise ValueError(
                        f"{split}_csv is required for this stage (CSV data); got None: "
                        f"give {split}_csv (--data.{split}_csv FILE on the command line)"
                    )
                return None
            ds = CSVDetectionDataset(
                path,
                image_dir=self._csv_image_dir(path),
                image_column=self.image_column,
                bbox_columns=self.bbox_columns,
                label_column=self.label_column,
                transform=transform,
                min_bbox_area=self.min_bbox_area,
                invalid_boxes=self.invalid_boxes,
                class_names=None if split == "train" else self.class_names,
            )
            self._class_names = list(ds.class_names)
            return ds
        images, ann, explicit = self._coco_paths(split)
        if not explicit and not ann.is_file():
            if required:
                raise FileNotFoundError(self._missing_message(split))
            return None
        reuse = None
        if split != "train":
            _ = self.class_names  # reads the training categories if not known yet
            reuse = self.category_ids
        ds = COCODetectionDataset(
            images,
            ann,
            transform=transform,
            min_bbox_area=self.min_bbox_area,
            class_ids=self.class_ids,
            invalid_boxes=self.invalid_boxes,
            category_ids=reuse,
        )
        self.category_ids = list(ds.category_ids)
        self._class_names = list(ds.class_names)
        return ds

    # ---------------------------------------------------------- dataloaders
    def _loader(
        self, dataset: Dataset, shuffle: bool, collate: Callable[..., Any], drop_last: bool = False
    ) -> DataLoader:
        kwargs: dict[str, Any] = {
            "batch_size": self.batch_size,
            "shuffle": shuffle,
            "num_workers": self.num_workers,
            "collate_fn": collate,
            "pin_memory": bool(self.pin_memory and torch.cuda.is_available()),
            "drop_last": drop_last,
        }
        if self.num_workers > 0:
            kwargs["persistent_workers"] = bool(self.persistent_workers)
            if self.prefetch_factor is not None:
                kwargs["prefetch_factor"] = int(self.prefetch_factor)
        if shuffle:  # training: resumes mid-epoch exactly (autotimm.data.resumable)
            del kwargs["shuffle"]
            trainer = getattr(self, "trainer", None)
            return resumable_loader(
                dataset,
                num_replicas=int(getattr(trainer, "world_size", 1) or 1),
                rank=int(getattr(trainer, "global_rank", 0) or 0),
                **kwargs,
            )
        sampler = self._eval_sampler(dataset)
        if sampler is not None:
            kwargs["sampler"] = sampler
            kwargs.pop("shuffle")
        return DataLoader(dataset, **kwargs)

    def _eval_sampler(self, dataset: Dataset) -> Any:
        """Under DDP, give each process a disjoint slice with no repeated samples, so
        the synchronised metric sees every image exactly once."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or getattr(trainer, "world_size", 1) <= 1:
            return None
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

        return UnrepeatedDistributedSampler(
            dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
        )

    def train_collate(self) -> Callable[..., Any]:
        """The training collate: with FCOS targets when the attached model is FCOS."""
        model = getattr(getattr(self, "trainer", None), "lightning_module", None)
        if (
            self.precompute_targets
            and model is not None
            and getattr(model, "detection_arch", None) == "fcos"
            and getattr(model, "strides", None) is not None
            and _fcos_targets_available()
        ):
            return FCOSTargetCollate(
                strides=model.strides,
                regress_ranges=getattr(model, "regress_ranges", None),
                center_sampling_radius=getattr(model, "center_sampling_radius", None),
                num_classes=getattr(model, "num_classes", None),
            )
        return detection_collate_fn

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        if self.train_dataset is None:
            raise RuntimeError("no training set")
        return self._loader(self.train_dataset, True, self.train_collate())

    def val_dataloader(self) -> DataLoader | list:
        if self.val_dataset is None:
            return []
        return self._loader(self.val_dataset, False, detection_collate_fn)

    def test_dataloader(self) -> DataLoader:
        if self.test_dataset is None:
            raise RuntimeError(
                "No test dataset available. Pass test_images_dir/test_ann_file (COCO) or "
                f"test_csv (CSV). {self._missing_message('test')}"
            )
        return self._loader(self.test_dataset, False, detection_collate_fn)

    def predict_dataloader(self) -> DataLoader:
        ds = self.test_dataset if self.test_dataset is not None else self.val_dataset
        if ds is None:
            self.setup("predict")
            ds = self.test_dataset if self.test_dataset is not None else self.val_dataset
        assert ds is not None
        return self._loader(ds, False, detection_collate_fn)

    def predict_dataset(self) -> Dataset | None:
        """The dataset :meth:`predict_dataloader` iterates."""
        return self.test_dataset if self.test_dataset is not None else self.val_dataset


def _fcos_targets_available() -> bool:
    """True when ``autotimm.ops.fcos_targets`` is implemented (it may not be yet)."""
    try:
        from autotimm.ops import fcos_targets

        fcos_targets(
            [torch.zeros(0, 4)],
            [torch.zeros(0, dtype=torch.int64)],
            image_size=(8, 8),
            strides=(8,),
            feature_sizes=[(1, 1)],
            regress_ranges=((-1.0, float("inf")),),
        )
    except NotImplementedError:
        return False
    except Exception:
        return False
    return True
