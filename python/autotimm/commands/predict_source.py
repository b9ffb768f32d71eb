"""``autotimm predict --source PATH --ckpt_path CKPT``: detect objects in image files.

``PATH`` is an image file, a folder (its images) or a glob (``"imgs/**/*.jpg"``);
jpg, png, webp, bmp, tif and gif are read. The checkpoint carries the class
names, input size and normalisation, so no data option is needed. Writes under
``--output_dir``:

* ``results.json`` — COCO-style records in original pixels (``image_id`` is the
  file's index from 1, ``file_name`` its path), with ``category_name``;
* ``images/<stem>.png`` — the drawn predictions (``--max_images``, ``--draw_thresh``);
* with ``--save_csv``: ``predictions.csv`` (a row per box);
* with ``--save_txt``: ``labels/<stem>.txt`` (a file per image).

Unreadable files of a folder or glob are skipped, each named on stderr and
counted in the summary (their ``image_id`` stays unused); a source with no
readable image is an error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from autotimm.commands.callbacks import DEFAULT_DRAW_THRESH
from autotimm.commands.defaults import RUNS_DIR
from autotimm.commands.errors import UserError

__all__ = ["build_parser", "load_detector", "main", "predict_files"]

#: Default output folder of ``predict --source``.
DEFAULT_OUTPUT_DIR = f"{RUNS_DIR}/predict"


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as one line (a :class:`UserError`), not the usage block."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UserError(f"{message} (see autotimm predict --help)")


def build_parser() -> argparse.ArgumentParser:
    """The command's parser."""
    parser = _Parser(
        prog="autotimm predict",
        description="Detect objects in image files with a trained checkpoint.",
    )
    parser.add_argument("--source", required=True, help="image file, folder or glob pattern")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint of `autotimm fit`")
    parser.add_argument(
        "--output_dir",
        default=DEFAULT_OUTPUT_DIR,
        help=f"output folder (default {DEFAULT_OUTPUT_DIR})",
    )
    parser.add_argument(
        "--draw_thresh",
        type=float,
        default=DEFAULT_DRAW_THRESH,
        help="smallest score of a drawn box (all boxes go to the JSON)",
    )
    parser.add_argument(
        "--score_thresh",
        type=float,
        default=None,
        help="smallest score of a kept detection (default: the model's)",
    )
    parser.add_argument("--max_images", type=int, default=100, help="drawn PNGs to write (0: none)")
    parser.add_argument("--save_csv", action="store_true", help="also write predictions.csv")
    parser.add_argument(
        "--save_txt", action="store_true",
        help="also write labels/<image>.txt (the source's subfolders kept)",
    )
    parser.add_argument("--batch_size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--device", default="auto", help="'cpu', 'cuda', 'cuda:1' or 'auto'")
    return parser


def load_detector(ckpt_path: str | Path, device: str = "cpu") -> Any:
    """An :class:`autotimm.ObjectDetector` from a checkpoint, without downloading weights."""
    import torch

    from autotimm import ObjectDetector

    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"--ckpt_path {ckpt_path}: file not found; give the path of a .ckpt file")
    hparams = torch.load(path, map_location="cpu", weights_only=False).get("hyper_parameters", {})
    backbone = hparams.get("backbone")
    overrides: dict[str, Any] = {"compile_model": False}
    if isinstance(backbone, str):
        overrides["backbone"] = {"model_name": backbone, "pretrained": False}
    elif isinstance(backbone, dict):
        overrides["backbone"] = {**backbone, "pretrained": False}
    model = ObjectDetector.load_from_checkpoint(path, map_location=device, **overrides)
    return model.eval()


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available; use --device cpu")
    return name


def _read_images(
    indices: Sequence[int], files: Sequence[Path], skipped: list[str]
) -> list[tuple[int, Any]]:
    """``(index, uint8 [3, H, W])`` of each readable file of ``files[indices]``; each
    unreadable one is reported on stderr and its reason appended to ``skipped``."""
    from autotimm.data.detection_dataset import DetectionDataError
    from autotimm.tasks.inputs import load_inputs

    batch = []
    for index in indices:
        try:
            [image] = load_inputs(str(files[index]))
        except (DetectionDataError, OSError) as err:
            skipped.append(str(err))
            tqdm.write(f"skipped: {err}", file=sys.stderr)
            continue
        batch.append((index, image))
    return batch


def predict_files(args: argparse.Namespace) -> dict[str, Any]:
    """Run the command on parsed arguments; returns the written paths and counts."""
    from autotimm.results import coco_records, write_csv, write_json, write_txt
    from autotimm.tasks.inputs import find_image_files, output_names
    from autotimm.viz import draw_detections, save_image

    if args.batch_size < 1:
        raise UserError(f"--batch_size {args.batch_size}: must be >= 1")
    if not 0.0 <= args.draw_thresh <= 1.0:
        raise UserError(f"--draw_thresh {args.draw_thresh}: must be in [0, 1]")
    try:
        files = find_image_files(args.source)
    except FileNotFoundError as err:
        raise UserError(f"--source: {err}") from None
    names = output_names(files)
    model = load_detector(args.ckpt_path, _device(args.device))
    if args.score_thresh is not None:
        model.score_thresh = float(args.score_thresh)
    info = model.data_info
    out = Path(args.output_dir)
    records: list[dict[str, Any]] = []
    drawn: list[Path] = []
    skipped: list[str] = []
    progress = tqdm(total=len(files), unit="img", desc="predict", disable=None, leave=False)
    for start in range(0, len(files), args.batch_size):
        batch = _read_images(range(start, min(start + args.batch_size, len(files))), files,
                             skipped)  # fmt: skip
        progress.update(min(args.batch_size, len(files) - start))
        if not batch:
            continue
        detections = model.predict([image for _, image in batch])
        for (index, image), det in zip(batch, detections, strict=True):
            path, name = files[index], names[index]
            image_records = coco_records(
                index + 1,
                det["boxes"],
                det["scores"],
                det["labels"],
                info.class_names,
                info.category_ids,
                file_name=str(path),
            )
            records += image_records
            if args.save_txt:
                write_txt(image_records, out / "labels" / f"{name}.txt")
            if len(drawn) < args.max_images:
                keep = det["scores"] >= args.draw_thresh
                picture = draw_detections(
                    image,
                    det["boxes"][keep],
                    det["labels"][keep],
                    det["scores"][keep],
                    info.class_names,
                    title=f"{path.name}: score >= {args.draw_thresh:.2f}",
                )
                drawn.append(save_image(picture, out / "images" / f"{name}.png"))
    progress.close()
    if len(skipped) == len(files):
        raise UserError(f"--source {args.source}: no readable image; " + "; ".join(skipped[:3]))
    result: dict[str, Any] = {
        "images": len(files) - len(skipped),
        "skipped": skipped,
        "boxes": len(records),
        "json": write_json(records, out / "results.json"),
        "drawn": drawn,
    }
    if args.save_csv:
        result["csv"] = write_csv(records, out / "predictions.csv")
    if args.save_txt:
        result["txt"] = out / "labels"
    return result


def main(argv: Sequence[str]) -> int:
    """``autotimm predict --source ...``; returns the exit status."""
    args = build_parser().parse_args(list(argv))
    result = predict_files(args)
    unreadable = len(result["skipped"])
    skipped = f"; {unreadable} unreadable files skipped, listed above" if unreadable else ""
    lines = [
        f"\nPredictions: {result['boxes']} boxes on {result['images']} images "
        f"(boxes in original pixels{skipped})",
        f"  COCO-style JSON: {result['json']}",
    ]
    if result["drawn"]:
        lines.append(
            f"  drawn images:    {result['drawn'][0].parent} ({len(result['drawn'])} PNGs)"
        )
    if "csv" in result:
        lines.append(f"  CSV:             {result['csv']}")
    if "txt" in result:
        lines.append(f"  TXT per image:   {result['txt']}")
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(__import__("sys").argv[1:]))
