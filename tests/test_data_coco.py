"""COCO dataset and DetectionDataModule in COCO mode, including bad data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autotimm.data.detection_datamodule import DetectionDataModule
from autotimm.data.detection_dataset import COCODetectionDataset, DetectionDataError


def _png(path: Path, w: int, h: int, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, dtype=np.uint8)).save(path)


def _coco(
    root: Path,
    split: str = "train",
    annotations: list | None = None,
    images: list | None = None,
    categories: list | None = None,
) -> Path:
    """A small COCO folder: two images (40x30, 50x50), categories 5 'cat' and 2 'dog'."""
    images = (
        images
        if images is not None
        else [
            {"id": 10, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 11, "file_name": "b.png", "width": 50, "height": 50},
        ]
    )
    for img in images:
        if not (root / f"{split}2017" / img["file_name"]).exists():
            _png(root / f"{split}2017" / img["file_name"], img["width"], img["height"])
    categories = (
        categories
        if categories is not None
        else [
            {"id": 5, "name": "cat"},
            {"id": 2, "name": "dog"},
        ]
    )
    annotations = (
        annotations
        if annotations is not None
        else [
            {"id": 1, "image_id": 10, "category_id": 5, "bbox": [1, 2, 10, 20], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 2, "bbox": [20, 5, 10, 10], "iscrowd": 0},
            {"id": 3, "image_id": 11, "category_id": 2, "bbox": [0, 0, 50, 50], "iscrowd": 1},
            {"id": 4, "image_id": 11, "category_id": 5, "bbox": [5, 5, 2, 2], "iscrowd": 0},
        ]
    )
    ann = root / "annotations" / f"instances_{split}2017.json"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return ann


def _ds(root: Path, **kw) -> COCODetectionDataset:
    return COCODetectionDataset(
        root / "train2017", root / "annotations" / "instances_train2017.json", **kw
    )


def test_coco_dataset_items_and_mapping(tmp_path) -> None:
    _coco(tmp_path)
    ds = _ds(tmp_path)
    assert len(ds) == 2
    assert ds.category_ids == [2, 5] and ds.class_names == ["dog", "cat"]
    assert ds.cat_id_to_label == {2: 0, 5: 1}
    it = ds[0]
    assert it["image"].shape == (3, 30, 40) and it["image"].dtype == torch.uint8
    assert it["boxes"].tolist() == [[1, 2, 11, 22], [20, 5, 30, 15]]
    assert it["labels"].tolist() == [1, 0]
    assert it["image_id"] == 10 and it["orig_size"].tolist() == [30, 40]
    it = ds[1]
    # crowd kept apart as an ignore region, not a training target
    assert it["boxes"].tolist() == [[5, 5, 7, 7]] and it["labels"].tolist() == [1]
    assert it["crowd_boxes"].tolist() == [[0, 0, 50, 50]] and it["crowd_labels"].tolist() == [0]


def test_class_ids_and_min_area(tmp_path) -> None:
    _coco(tmp_path)
    ds = _ds(tmp_path, class_ids=[5], min_bbox_area=5.0)
    assert ds.class_names == ["cat"] and ds.category_ids == [5]
    assert ds[0]["labels"].tolist() == [0] and ds[0]["boxes"].tolist() == [[1, 2, 11, 22]]
    assert ds[1]["boxes"].shape == (0, 4)  # 2x2 box below min area
    assert ds.num_skipped_small == 1 and ds.num_skipped_class == 2
    with pytest.raises(DetectionDataError, match=r"class_ids \[9\]"):
        _ds(tmp_path, class_ids=[9])


def test_missing_image_file_names_file_and_entry(tmp_path) -> None:
    _coco(tmp_path)
    (tmp_path / "train2017" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"b\.png \(images\[1\], id 11\)"):
        _ds(tmp_path)


def test_annotation_json_that_does_not_parse(tmp_path) -> None:
    ann = _coco(tmp_path)
    ann.write_text('{"images": [ {"id": 1,, } ]}')
    with pytest.raises(
        DetectionDataError, match=r"instances_train2017\.json.*does not parse.*line 1"
    ):
        _ds(tmp_path)
    ann.unlink()
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        _ds(tmp_path)


def test_unknown_category_id(tmp_path) -> None:
    _coco(
        tmp_path,
        annotations=[
            {"id": 7, "image_id": 10, "category_id": 99, "bbox": [1, 1, 5, 5]},
        ],
    )
    with pytest.raises(DetectionDataError, match=r"annotations\[0\] \(id 7\).*category_id 99"):
        _ds(tmp_path)


def test_annotation_for_unknown_image_and_missing_key(tmp_path) -> None:
    _coco(tmp_path, annotations=[{"id": 7, "image_id": 42, "category_id": 5, "bbox": [1, 1, 5, 5]}])
    with pytest.raises(DetectionDataError, match="image_id 42"):
        _ds(tmp_path)
    _coco(tmp_path, annotations=[{"id": 8, "image_id": 10, "category_id": 5}])
    with pytest.raises(DetectionDataError, match=r"annotations\[0\] \(id 8\) has no 'bbox'"):
        _ds(tmp_path)


BAD_BOXES = [
    {"id": 1, "image_id": 10, "category_id": 5, "bbox": [1, 2, 10, 20]},  # fine
    {"id": 2, "image_id": 10, "category_id": 5, "bbox": [5, 5, 0, 4]},  # zero width
    {"id": 3, "image_id": 10, "category_id": 5, "bbox": [5, 5, 4, -1]},  # negative height
    {"id": 4, "image_id": 10, "category_id": 2, "bbox": [35, 5, 20, 5]},  # past the right edge
    {"id": 5, "image_id": 11, "category_id": 2, "bbox": [-0.5, 0, 50.5, 50]},  # within tolerance
]


def test_invalid_boxes_dropped_with_count(tmp_path) -> None:
    _coco(tmp_path, annotations=BAD_BOXES)
    with pytest.warns(
        UserWarning,
        match=r"dropped 3 of 5 boxes \(2 with non-positive size, "
        r"1 outside the image\); first: annotations\[1\] \(id 2\)",
    ):
        ds = _ds(tmp_path)
    assert ds[0]["boxes"].tolist() == [[1, 2, 11, 22]]
    assert ds[1]["boxes"].tolist() == [[0, 0, 50, 50]]  # clipped, not dropped


def test_invalid_boxes_raise(tmp_path) -> None:
    _coco(tmp_path, annotations=BAD_BOXES)
    with pytest.raises(
        DetectionDataError,
        match=r"annotations\[1\] \(id 2\), image a\.png.*"
        r"non-positive size",
    ):
        _ds(tmp_path, invalid_boxes="raise")
    _coco(tmp_path, annotations=[BAD_BOXES[3]])
    with pytest.raises(DetectionDataError, match=r"outside the 40x30 image"):
        _ds(tmp_path, invalid_boxes="raise")
    with pytest.raises(ValueError, match="invalid_boxes"):
        _ds(tmp_path, invalid_boxes="ignore")


def test_image_size_mismatch_named(tmp_path) -> None:
    _coco(tmp_path)
    _png(tmp_path / "train2017" / "a.png", 41, 30)
    ds = _ds(tmp_path)
    with pytest.raises(DetectionDataError, match=r"a\.png.*41x30.*40x30"):
        ds[0]


def test_datamodule_coco(tmp_path) -> None:
    _coco(tmp_path, "train")
    _coco(
        tmp_path,
        "val",
        annotations=[
            {"id": 1, "image_id": 10, "category_id": 2, "bbox": [0, 0, 20, 10]},
        ],
    )
    dm = DetectionDataModule(data_dir=str(tmp_path), image_size=64, batch_size=2, num_workers=0)
    assert dm.num_classes == 2 and dm.class_names == ["dog", "cat"]  # readable before setup
    dm.setup("fit")
    assert dm.category_ids == [2, 5]
    assert dm.test_dataset is None
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (2, 3, 64, 64)
    assert set(batch) >= {"images", "boxes", "labels", "image_ids", "orig_sizes"}
    assert "targets" not in batch  # no model attached
    vb = next(iter(dm.val_dataloader()))
    assert sorted(vb["image_ids"]) == [10, 11]
    i = vb["image_ids"].index(10)
    assert vb["orig_sizes"][i].tolist() == [30, 40]
    assert vb["boxes"][i].tolist() == [[0, 0, 32, 16]]  # scale 64/40 = 1.6
    assert vb["resized_sizes"][i].tolist() == [48, 64]
    with pytest.raises(RuntimeError, match="No test dataset"):
        dm.test_dataloader()


def test_datamodule_explicit_paths_and_val_category_check(tmp_path) -> None:
    train_ann = _coco(tmp_path / "t", "train")
    val_ann = _coco(
        tmp_path / "v",
        "val",
        categories=[{"id": 5, "name": "cat"}, {"id": 8, "name": "cow"}],
        annotations=[],
    )
    dm = DetectionDataModule(
        data_dir=str(tmp_path / "nowhere"),
        train_images_dir=str(tmp_path / "t" / "train2017"),
        train_ann_file=str(train_ann),
        val_images_dir=str(tmp_path / "v" / "val2017"),
        val_ann_file=str(val_ann),
        image_size=32,
        batch_size=2,
        num_workers=0,
    )
    with pytest.raises(DetectionDataError, match=r"categories \[8\] are not in the training"):
        dm.setup("fit")


def test_datamodule_missing_data_dir(tmp_path) -> None:
    dm = DetectionDataModule(data_dir=str(tmp_path / "nope"), num_workers=0)
    with pytest.raises(FileNotFoundError, match="instances_train2017.json"):
        dm.setup("fit")
    with pytest.raises(FileNotFoundError, match="no annotation file"):
        dm.num_classes  # noqa: B018


def test_datamodule_signature_matches_autotimm() -> None:
    import inspect

    params = list(inspect.signature(DetectionDataModule).parameters)
    assert params[:27] == [
        "data_dir",
        "train_images_dir",
        "val_images_dir",
        "train_ann_file",
        "val_ann_file",
        "test_images_dir",
        "test_ann_file",
        "train_csv",
        "val_csv",
        "test_csv",
        "image_dir",
        "image_column",
        "bbox_columns",
        "label_column",
        "image_size",
        "batch_size",
        "num_workers",
        "train_transforms",
        "eval_transforms",
        "augmentation_preset",
        "transform_config",
        "backbone",
        "pin_memory",
        "persistent_workers",
        "prefetch_factor",
        "min_bbox_area",
        "class_ids",
    ]
    dm = DetectionDataModule()
    assert (dm.image_size, dm.batch_size, dm.data_dir) == (640, 16, "./coco")


def test_builtin_shapes(tmp_path, monkeypatch) -> None:
    import autotimm.data.detection_datamodule as mod

    monkeypatch.setenv("AUTOTIMM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(mod, "SHAPES_SPLITS", {"train": 4, "val": 2, "test": 0})
    dm = DetectionDataModule(data_dir="builtin:shapes", image_size=64, batch_size=2, num_workers=0)
    assert dm.num_classes == 4
    dm.setup("fit")
    assert len(dm.train_dataset) == 4 and len(dm.val_dataset) == 2
    assert (tmp_path / "shapes" / "annotations" / "instances_val2017.json").is_file()
    assert dm.category_ids == [1, 2, 3, 4]


def test_train_collate_follows_the_attached_model(tmp_path) -> None:
    from types import SimpleNamespace

    from autotimm.data.collate import FCOSTargetCollate, detection_collate_fn

    _coco(tmp_path)
    dm = DetectionDataModule(data_dir=str(tmp_path), image_size=32, batch_size=2, num_workers=0)
    assert dm.train_collate() is detection_collate_fn
    model = SimpleNamespace(
        detection_arch="fcos",
        strides=(8, 16, 32, 64, 128),
        regress_ranges=((-1, 64), (64, 128), (128, 256), (256, 512), (512, float("inf"))),
    )
    dm.trainer = SimpleNamespace(lightning_module=model, world_size=1)
    collate = dm.train_collate()
    assert isinstance(collate, FCOSTargetCollate) and collate.strides == model.strides
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    cls, reg, ctr = batch["targets"]
    assert cls.shape == (2, 16 + 4 + 1 + 1 + 1) and reg.shape == (2, 23, 4)
    model.detection_arch = "yolox"
    assert dm.train_collate() is detection_collate_fn
    dm.precompute_targets = False
    model.detection_arch = "fcos"
    assert dm.train_collate() is detection_collate_fn
