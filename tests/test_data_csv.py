"""CSV detection dataset and DetectionDataModule in CSV mode, including bad data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autotimm.data.detection_datamodule import DetectionDataModule
from autotimm.data.detection_dataset import CSVDetectionDataset, DetectionDataError

HEADER = "image_path,x_min,y_min,x_max,y_max,label\n"


def _png(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), dtype=np.uint8)).save(path)


def _folder(tmp_path: Path) -> Path:
    _png(tmp_path / "img" / "a.png", 40, 30)
    _png(tmp_path / "img" / "b.png", 20, 20)
    _png(tmp_path / "img" / "c.png", 20, 20)
    return tmp_path


def _csv(path: Path, body: str, header: str = HEADER) -> Path:
    path.write_text(header + body)
    return path


GOOD = (
    "img/a.png,1,2,11,22,zebra\nimg/a.png,20,5,30,15,ant\nimg/b.png,0,0,5,5,zebra\nimg/c.png,,,,,\n"
)


def test_csv_dataset(tmp_path) -> None:
    _folder(tmp_path)
    csv = _csv(tmp_path / "train.csv", GOOD)
    ds = CSVDetectionDataset(csv, image_dir=tmp_path)
    assert ds.class_names == ["ant", "zebra"] and ds.num_classes == 2
    assert len(ds) == 3
    it = ds[0]
    assert it["image"].shape == (3, 30, 40)
    assert it["boxes"].tolist() == [[1, 2, 11, 22], [20, 5, 30, 15]]
    assert it["labels"].tolist() == [1, 0]
    assert it["orig_size"].tolist() == [30, 40]
    assert ds[2]["boxes"].shape == (0, 4)  # an image listed without objects
    assert [ds[i]["image_id"] for i in range(3)] == [0, 1, 2]


def test_csv_custom_columns(tmp_path) -> None:
    _folder(tmp_path)
    csv = _csv(tmp_path / "t.csv", "img/a.png,cat,1,2,11,22\n", header="file,cls,l,t,r,b\n")
    ds = CSVDetectionDataset(
        csv,
        image_dir=tmp_path,
        image_column="file",
        bbox_columns=["l", "t", "r", "b"],
        label_column="cls",
    )
    assert ds[0]["boxes"].tolist() == [[1, 2, 11, 22]] and ds.class_names == ["cat"]


def test_csv_missing_columns(tmp_path) -> None:
    _folder(tmp_path)
    csv = _csv(
        tmp_path / "t.csv", "img/a.png,1,2,11,22\n", header="image_path,x_min,y_min,x_max,y_max\n"
    )
    with pytest.raises(ValueError, match=r"Column 'label' not found in CSV .*t\.csv"):
        CSVDetectionDataset(csv, image_dir=tmp_path)
    with pytest.raises(ValueError, match="Column 'xmin' not found"):
        CSVDetectionDataset(
            csv, image_dir=tmp_path, bbox_columns=["xmin", "y_min", "x_max", "y_max"]
        )


def test_csv_bad_rows(tmp_path) -> None:
    _folder(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"line 3: image file not found: .*nope\.png"):
        CSVDetectionDataset(
            _csv(tmp_path / "t.csv", "img/a.png,1,2,3,4,x\nimg/nope.png,1,2,3,4,x\n"),
            image_dir=tmp_path,
        )
    with pytest.raises(DetectionDataError, match=r"line 2 \(img/a\.png\).*must be numbers"):
        CSVDetectionDataset(_csv(tmp_path / "t.csv", "img/a.png,1,two,3,4,x\n"), image_dir=tmp_path)
    with pytest.raises(DetectionDataError, match="no rows"):
        CSVDetectionDataset(_csv(tmp_path / "t.csv", ""), image_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="CSV file not found"):
        CSVDetectionDataset(tmp_path / "missing.csv", image_dir=tmp_path)


def test_csv_invalid_boxes(tmp_path) -> None:
    _folder(tmp_path)
    body = "img/a.png,1,2,11,22,x\nimg/a.png,5,5,5,9,x\nimg/b.png,10,10,30,15,x\n"
    csv = _csv(tmp_path / "t.csv", body)
    with pytest.warns(
        UserWarning,
        match=r"dropped 2 of 3 boxes \(1 with non-positive size, "
        r"1 outside the image\); first: line 3",
    ):
        ds = CSVDetectionDataset(csv, image_dir=tmp_path)
    assert ds[0]["boxes"].tolist() == [[1, 2, 11, 22]] and ds[1]["boxes"].shape == (0, 4)
    with pytest.raises(DetectionDataError, match=r"line 3 \(img/a\.png\).*non-positive size"):
        CSVDetectionDataset(csv, image_dir=tmp_path, invalid_boxes="raise")


def test_csv_datamodule(tmp_path) -> None:
    _folder(tmp_path)
    train = _csv(tmp_path / "train.csv", GOOD)
    val = _csv(tmp_path / "val.csv", "img/b.png,2,2,8,8,zebra\n")
    dm = DetectionDataModule(
        train_csv=str(train), val_csv=str(val), image_size=32, batch_size=2, num_workers=0
    )
    assert dm.is_csv and dm.num_classes == 2 and dm.class_names == ["ant", "zebra"]
    dm.setup("fit")
    assert dm.category_ids is None
    assert dm.val_dataset[0]["labels"].tolist() == [1]  # train's mapping
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (2, 3, 32, 32)
    vb = next(iter(dm.val_dataloader()))
    assert vb["boxes"][0][0].tolist() == pytest.approx([3.2, 3.2, 12.8, 12.8])  # scale 32/20


def test_csv_val_with_unknown_label(tmp_path) -> None:
    _folder(tmp_path)
    train = _csv(tmp_path / "train.csv", GOOD)
    val = _csv(tmp_path / "val.csv", "img/b.png,2,2,8,8,giraffe\n")
    dm = DetectionDataModule(train_csv=str(train), val_csv=str(val), num_workers=0)
    with pytest.raises(DetectionDataError, match=r"val\.csv: line 2.*unknown label 'giraffe'"):
        dm.setup("fit")
