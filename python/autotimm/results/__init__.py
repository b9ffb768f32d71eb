"""Result files of detections: COCO-style JSON records, one CSV, one TXT per image."""

from autotimm.results.writers import (
    CSV_COLUMNS,
    coco_records,
    write_csv,
    write_json,
    write_txt,
)

__all__ = ["CSV_COLUMNS", "coco_records", "write_csv", "write_json", "write_txt"]
