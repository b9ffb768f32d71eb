"""Drawing, result writers and evaluation reports."""

from __future__ import annotations

import csv
import json

import numpy as np
import torch

from autotimm.reports import DetectionReport, confusion_matrix, per_class_ap, per_class_table
from autotimm.results import coco_records, write_csv, write_json, write_txt
from autotimm.viz import draw_detections, side_by_side
from autotimm.viz.draw import label_text_color


def test_confusion_matrix_counts_matches_and_misses() -> None:
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]])
    gt_labels = torch.tensor([0, 1, 1])
    det = torch.tensor([[0.0, 0, 10, 10], [21, 21, 30, 30], [80, 80, 90, 90]])
    det_labels = torch.tensor([0, 0, 1])
    m = confusion_matrix(det, det_labels, gt, gt_labels, num_classes=2)
    expected = np.array([[1, 0, 0], [1, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(m, expected)
    empty = confusion_matrix(torch.zeros(0, 4), torch.zeros(0), gt, gt_labels, 2)
    np.testing.assert_array_equal(empty[:, 2], [1, 2, 0])


def test_per_class_ap_and_table() -> None:
    precision = -np.ones((10, 101, 2, 4, 3))
    precision[:, :, 0, 0, -1] = 0.5
    precision[0, :, 0, 0, -1] = 1.0
    rows = per_class_ap(precision, np.linspace(0.5, 0.95, 10), ["cat", "dog"], [3, 0])
    assert rows[0].ap50 == 1.0 and abs(rows[0].ap - 0.55) < 1e-9 and rows[1].ap == -1.0
    table = per_class_table(rows)
    assert "cat" in table and "1.000" in table and table.splitlines()[-1].split()[-1] == "-"


def test_report_writes_table_and_pngs(tmp_path) -> None:
    report = DetectionReport(["cat", "dog"], score_threshold=0.3)
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]])
    labels = torch.tensor([0, 1])
    det = {"boxes": boxes, "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 0])}
    report.update([det, det], [boxes, boxes], [labels, labels])
    files = report.write(tmp_path, "validate")
    assert files.table_path.read_text().startswith("class")
    assert files.rows[0].ap50 == 1.0 and files.rows[1].ap50 == 0.0
    assert files.confusion_matrix_path.is_file() and files.pr_curves_path.is_file()
    np.testing.assert_array_equal(report.matrix, [[2, 0, 0], [2, 0, 0], [0, 0, 0]])


def test_writers(tmp_path) -> None:
    records = coco_records(
        7, torch.tensor([[1.0, 2, 11, 22]]), torch.tensor([0.5]), torch.tensor([1]),
        ["cat", "dog"], [3, 9], file_name="a.jpg",
    )  # fmt: skip
    assert records == [
        {"image_id": 7, "category_id": 9, "category_name": "dog", "bbox": [1.0, 2.0, 10.0, 20.0],
         "score": 0.5, "file_name": "a.jpg"}
    ]  # fmt: skip
    assert json.loads(write_json(records, tmp_path / "r.json").read_text()) == records
    rows = list(csv.reader(write_csv(records, tmp_path / "p.csv").open()))
    assert rows[1] == ["a.jpg", "1.0", "2.0", "11.0", "22.0", "dog", "0.5"]
    assert (
        write_txt(records, tmp_path / "a.txt").read_text()
        == "dog 0.50000 1.000 2.000 11.000 22.000\n"
    )


def test_drawing_is_enlarged_with_contrasting_labels() -> None:
    image = torch.full((3, 64, 96), 120, dtype=torch.uint8)
    drawn = draw_detections(
        image, torch.tensor([[0.0, 0, 30, 30], [80, 50, 96, 64]]), torch.tensor([1, 2]),
        torch.tensor([0.9, 0.4]), ["cat", "dog", "bird"], title="predictions",
    )  # fmt: skip
    assert drawn.width == 512 and drawn.height > 341  # longest side 96 -> 512, plus the title
    both = side_by_side(drawn, drawn)
    assert both.width == 2 * 512 + 8
    assert label_text_color((255, 225, 25)) == (0, 0, 0)
    assert label_text_color((0, 0, 128)) == (255, 255, 255)
