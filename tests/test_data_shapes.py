"""The embedded synthetic shapes dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from autotimm.data.shapes import (
    SHAPES_CLASS_NAMES,
    ShapesConfig,
    ShapesDataset,
    generate_shapes_image,
    write_shapes_coco,
)


def test_deterministic_and_split_dependent() -> None:
    a = generate_shapes_image(3, "train")
    b = generate_shapes_image(3, "train")
    c = generate_shapes_image(3, "val")
    assert np.array_equal(a["image"], b["image"])
    assert np.array_equal(a["boxes"], b["boxes"])
    assert not np.array_equal(a["image"], c["image"])
    d = generate_shapes_image(3, "train", ShapesConfig(seed=1))
    assert not np.array_equal(a["image"], d["image"])


def test_boxes_are_tight_and_inside() -> None:
    cfg = ShapesConfig(image_size=96, min_objects=2, max_objects=5, min_size=8, max_size=40)
    seen = set()
    for i in range(40):
        raw = generate_shapes_image(i, "train", cfg)
        img, boxes, labels = raw["image"], raw["boxes"], raw["labels"]
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8
        assert boxes.dtype == np.float32 and labels.dtype == np.int64
        assert 1 <= len(boxes) <= 5  # placement may give up on a crowded image
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 96).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        w = boxes[:, 2] - boxes[:, 0]
        assert (w >= 4).all() and (w <= 40).all()
        assert (raw["areas"] <= w * (boxes[:, 3] - boxes[:, 1])).all()
        seen.update(labels.tolist())
    assert seen == set(range(len(SHAPES_CLASS_NAMES)))


def test_dataset_items() -> None:
    ds = ShapesDataset(num_images=5, split="val", image_size=64, min_size=8, max_size=24)
    assert len(ds) == 5 and ds.num_classes == 4
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.uint8
    assert item["boxes"].dtype == torch.float32 and item["boxes"].shape[1] == 4
    assert item["labels"].dtype == torch.int64
    assert item["image_id"] == 1
    assert item["orig_size"].tolist() == [64, 64]
    assert item["crowd_boxes"].shape == (0, 4)
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(ValueError, match="split"):
        ShapesDataset(2, split="holdout")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="min_objects"):
        ShapesConfig(min_objects=3, max_objects=1)
    with pytest.raises(ValueError, match="max_size"):
        ShapesConfig(image_size=32, min_size=20, max_size=10)


def test_write_coco_folder(tmp_path) -> None:
    root = write_shapes_coco(
        tmp_path / "shapes",
        num_train=6,
        num_val=3,
        image_size=64,
        min_size=8,
        max_size=24,
        category_ids=[3, 7, 11, 20],
    )
    ann = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    assert len(ann["images"]) == 6 and len(list((root / "train2017").glob("*.png"))) == 6
    assert len(list((root / "val2017").glob("*.png"))) == 3
    assert not (root / "test2017").exists()
    assert [c["id"] for c in ann["categories"]] == [3, 7, 11, 20]
    assert [c["name"] for c in ann["categories"]] == list(SHAPES_CLASS_NAMES)
    raw = generate_shapes_image(0, "train", ShapesConfig(64, min_size=8, max_size=24))
    first = [a for a in ann["annotations"] if a["image_id"] == 1]
    assert len(first) == len(raw["boxes"])
    for a, box, label in zip(first, raw["boxes"], raw["labels"], strict=True):
        x0, y0, x1, y1 = box.tolist()
        assert a["bbox"] == [x0, y0, x1 - x0, y1 - y0]
        assert a["category_id"] == [3, 7, 11, 20][label]
        assert a["iscrowd"] == 0
    # PNG round trip is lossless
    from PIL import Image

    png = np.asarray(Image.open(root / "train2017" / "000000000001.png"))
    assert np.array_equal(png, raw["image"])
    # same parameters: not rewritten; different: rewritten
    stamp = (root / "annotations" / "instances_train2017.json").stat().st_mtime_ns
    write_shapes_coco(
        root,
        num_train=6,
        num_val=3,
        image_size=64,
        min_size=8,
        max_size=24,
        category_ids=[3, 7, 11, 20],
    )
    assert (root / "annotations" / "instances_train2017.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="category_ids"):
        write_shapes_coco(tmp_path / "x", num_train=1, num_val=0, category_ids=[1, 1, 2, 3])
