"""Labels outside [0, num_classes) fail with the image named: in the datasets (COCO and
CSV), in the collates, and in the model (before the batch leaves the CPU, and in the
loss of a batch without precomputed targets)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from autotimm import FeatureBackboneConfig, ObjectDetector
from autotimm.data.collate import FCOSTargetCollate, detection_collate_fn
from autotimm.data.detection_dataset import COCODetectionDataset, CSVDetectionDataset
from autotimm.data.label_checks import (
    LabelRangeError,
    assert_labels_in_range_async,
    check_labels,
)
from autotimm.data.shapes import write_shapes_coco


def _shift_labels(item: dict[str, Any]) -> dict[str, Any]:
    """A transform that breaks the labels (as a buggy user transform would)."""
    return {**item, "labels": item["labels"] + 10}


def _item(image_id: int, labels: list[int]) -> dict[str, Any]:
    return {
        "image": torch.zeros(3, 32, 32),
        # nested boxes, the last one smallest: it wins the points inside it
        "boxes": torch.tensor(
            [[2.0, 2.0, 20.0 - 4 * j, 20.0 - 4 * j] for j in range(len(labels))]
        ).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "image_id": image_id,
    }


def test_check_labels() -> None:
    check_labels([torch.tensor([0, 1]), torch.zeros(0, dtype=torch.int64)], 2)
    with pytest.raises(LabelRangeError, match=r"ds: image b.png has class label\(s\) \[2, 5\]"):
        check_labels([torch.tensor([0]), torch.tensor([2, 1, 5])], 2, ["a.png", "b.png"], "ds")
    with pytest.raises(LabelRangeError, match=r"image 0 has class label\(s\) \[-1\] outside"):
        check_labels([torch.tensor([-1])], 3)
    with pytest.raises(ValueError, match="num_classes must be an int >= 1, got 0"):
        check_labels([torch.tensor([0])], 0)
    assert issubclass(LabelRangeError, ValueError)
    assert_labels_in_range_async(torch.tensor([7]), 2)  # CPU: left to check_labels


def test_coco_dataset_names_the_image(tmp_path) -> None:
    root = write_shapes_coco(tmp_path, num_train=2, num_val=0, image_size=32, min_size=8)
    ann = root / "annotations" / "instances_train2017.json"
    ds = COCODetectionDataset(root / "train2017", ann)
    assert int(ds[0]["labels"].max()) < ds.num_classes
    broken = COCODetectionDataset(root / "train2017", ann, transform=_shift_labels)
    with pytest.raises(LabelRangeError, match=r"COCODetectionDataset: image .*train2017.*\.png"):
        broken[0]


def test_csv_dataset_names_the_image(tmp_path) -> None:
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    csv = tmp_path / "t.csv"
    csv.write_text("image_path,x_min,y_min,x_max,y_max,label\na.png,1,1,9,9,cat\n")
    assert CSVDetectionDataset(csv, image_dir=tmp_path)[0]["labels"].tolist() == [0]
    broken = CSVDetectionDataset(csv, image_dir=tmp_path, transform=_shift_labels)
    with pytest.raises(LabelRangeError, match=r"image .*a\.png \(.*t\.csv line 2\).*\[10\]"):
        broken[0]


def test_collates_name_the_image_id() -> None:
    items = [_item(11, [0, 1]), _item(17, [1, 4])]
    assert detection_collate_fn(items)["labels"][1].tolist() == [1, 4]  # unchecked
    with pytest.raises(LabelRangeError, match=r"batch: image 17 has class label\(s\) \[4\]"):
        detection_collate_fn(items, num_classes=2)
    collate = FCOSTargetCollate(strides=(8, 16), regress_ranges=((-1, 16), (16, 1e8)))
    assert collate(items)["targets"][0].max() == 4
    collate = FCOSTargetCollate(
        strides=(8, 16), regress_ranges=((-1, 16), (16, 1e8)), num_classes=2
    )
    with pytest.raises(LabelRangeError, match="image 17"):
        collate(items)
    assert collate([_item(3, [1])])["targets"][0].max() == 1


@pytest.fixture(scope="module")
def detector() -> ObjectDetector:
    return ObjectDetector(
        FeatureBackboneConfig("test_byobnet", pretrained=False),
        num_classes=2,
        fpn_channels=8,
        head_num_convs=1,
        compile_model=False,
        deterministic=False,
    )


def test_model_checks_before_the_transfer_and_in_the_loss(detector) -> None:
    batch = detection_collate_fn([_item(5, [0]), _item(9, [2])])
    batch["images"] = torch.zeros(2, 3, 64, 64)
    with pytest.raises(LabelRangeError, match=r"batch: image 9 has class label\(s\) \[2\]"):
        detector.on_before_batch_transfer(batch, 0)
    with pytest.raises(LabelRangeError, match="image 9"):  # the on-device targets path
        detector.compute_losses(batch)
    batch["labels"][1] = torch.tensor([1])
    assert detector.on_before_batch_transfer(batch, 0) is batch
    assert torch.isfinite(detector.compute_losses(batch)["loss"])


def test_yolox_loss_checks_labels() -> None:
    model = ObjectDetector(
        FeatureBackboneConfig("test_byobnet", pretrained=False),
        num_classes=3,
        detection_arch="yolox",
        fpn_channels=8,
        head_num_convs=1,
        compile_model=False,
        deterministic=False,
    )
    batch = detection_collate_fn([_item(1, [3])])
    batch["images"] = torch.zeros(1, 3, 64, 64)
    with pytest.raises(
        LabelRangeError, match=r"image 1 has class label\(s\) \[3\] outside \[0, 3\)"
    ):
        model.compute_losses(batch)


def test_data_module_collate_gets_the_model_num_classes(tmp_path) -> None:
    from autotimm import DetectionDataModule

    root = write_shapes_coco(tmp_path, num_train=2, num_val=0, image_size=32, min_size=8)
    dm = DetectionDataModule(data_dir=str(root), image_size=32, num_workers=0)

    class _Trainer:
        lightning_module = ObjectDetector(
            FeatureBackboneConfig("test_byobnet", pretrained=False),
            num_classes=2,
            fpn_channels=8,
            head_num_convs=1,
            compile_model=False,
            deterministic=False,
        )

    dm.trainer = _Trainer()  # type: ignore[assignment]
    collate = dm.train_collate()
    assert isinstance(collate, FCOSTargetCollate) and collate.num_classes == 2
