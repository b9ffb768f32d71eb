"""Writers of detection results, shared by ``predict`` (files or a labelled split).

All boxes are in the original image's pixels.

* COCO-style JSON: a list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
  "score"}`` records (``evaluate`` reads it), plus ``category_name`` and, for
  image files, ``file_name``.
* CSV (one file, a row per box): ``image_path, x_min, y_min, x_max, y_max, label,
  score`` — the columns of autotimm's CSV training format plus the score.
* TXT (a file per image): ``label score x_min y_min x_max y_max`` per line.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["CSV_COLUMNS", "coco_records", "write_csv", "write_json", "write_txt"]

#: Columns of the predictions CSV.
CSV_COLUMNS: tuple[str, ...] = ("image_path", "x_min", "y_min", "x_max", "y_max", "label", "score")


def coco_records(
    image_id: int,
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str],
    category_ids: Sequence[int] | None = None,
    file_name: str | None = None,
) -> list[dict[str, Any]]:
    """COCO result records of one image.

    Parameters
    ----------
    image_id : int
    boxes : Tensor [K, 4] float, xyxy original pixels
    scores : Tensor [K] float
    labels : Tensor [K] int, contiguous labels
    class_names : sequence of str
        Name per label (``category_name``).
    category_ids : sequence of int, optional
        Annotation-file id per label (``category_id``); default: the label itself.
    file_name : str, optional
        Added to every record.

    Returns
    -------
    list of dict
        ``bbox`` is ``[x, y, w, h]`` rounded to 0.001 px, ``score`` to 1e-5.
    """
    xyxy = boxes.detach().float().cpu().reshape(-1, 4)
    xywh = torch.cat([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], dim=1)
    records = []
    for box, score, label in zip(
        xywh.tolist(),
        scores.detach().float().cpu().tolist(),
        labels.detach().cpu().tolist(),
        strict=True,
    ):
        label = int(label)
        record: dict[str, Any] = {
            "image_id": int(image_id),
            "category_id": int(category_ids[label]) if category_ids is not None else label,
            "category_name": class_names[label] if 0 <= label < len(class_names) else str(label),
            "bbox": [round(v, 3) for v in box],
            "score": round(float(score), 5),
        }
        if file_name is not None:
            record["file_name"] = file_name
        records.append(record)
    return records


def write_json(records: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write records as a JSON list; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(list(records)))
    return out


def write_csv(records: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write COCO-style records (with ``file_name``) as the predictions CSV."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in records:
            x, y, w, h = r["bbox"]
            name = r.get("file_name", r["image_id"])
            label = r.get("category_name", r["category_id"])
            writer.writerow([name, x, y, round(x + w, 3), round(y + h, 3), label, r["score"]])
    return out


def write_txt(records: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write one image's records as ``label score x_min y_min x_max y_max`` lines."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for r in records:
        x, y, w, h = r["bbox"]
        label = str(r.get("category_name", r["category_id"])).replace(" ", "_")
        lines.append(f"{label} {r['score']:.5f} {x:.3f} {y:.3f} {x + w:.3f} {y + h:.3f}")
    out.write_text("\n".join(lines) + ("\n" if lines else ""))
    return out
