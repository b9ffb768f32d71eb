"""Callbacks of the ``autotimm`` command: metrics file, predictions on a labelled split,
validation pictures (ground truth beside predictions) and the evaluation report."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, Callback

from autotimm.reports import DetectionReport
from autotimm.results import coco_records, write_json
from autotimm.tasks.inputs import DataInfo, boxes_to_original, eval_mode
from autotimm.viz import draw_detections, save_image, side_by_side

__all__ = [
    "DEFAULT_DRAW_THRESH",
    "DEFAULT_MAX_IMAGES",
    "CocoResultsWriter",
    "EvaluationReportWriter",
    "MetricsFileWriter",
    "draw_validation_images",
]

#: PNGs with drawn predictions written at the end of ``fit`` / by ``predict``.
DEFAULT_MAX_IMAGES = 8
#: Smallest score of a drawn box (``--draw_thresh``).
DEFAULT_DRAW_THRESH = 0.3


class MetricsFileWriter(Callback):
    """Writes the logged metrics of every validation epoch to ``metrics.json``.

    Parameters
    ----------
    path:
        Output JSON file (a list of per-epoch records), rewritten each epoch.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []
        self._start = time.monotonic()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.monotonic()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        record: dict[str, Any] = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "time_s": round(time.monotonic() - self._start, 1),
        }
        for key, value in sorted(trainer.callback_metrics.items()):
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                record[key] = round(float(value), 6)
        self.records.append(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.records, indent=1))


def _dataset_image(dataset: Any, index: int) -> torch.Tensor | None:
    """The original image of item ``index`` as uint8 [3, H, W], if the dataset has files."""
    if not hasattr(dataset, "image_path"):
        return None
    from autotimm.data.detection_dataset import load_image

    return load_image(dataset.image_path(index)).as_subclass(torch.Tensor)


def _raw_item(dataset: Any, index: int) -> dict[str, Any] | None:
    """Item ``index`` without its transform: original image and boxes (pixels on disk)."""
    transform = getattr(dataset, "transform", None)
    try:
        dataset.transform = None
        return dataset[index]
    except Exception:  # a dataset without a settable transform
        return None
    finally:
        dataset.transform = transform


@torch.no_grad()
def draw_validation_images(
    model: LightningModule,
    datamodule: Any,
    output_dir: str | Path,
    max_images: int = DEFAULT_MAX_IMAGES,
    score_thresh: float = DEFAULT_DRAW_THRESH,
) -> list[Path]:
    """Ground truth beside predictions on the first validation images, as PNGs.

    The model reads each original image file (``model.predict`` on raw images),
    so boxes are drawn in original pixels.

    Returns
    -------
    list of Path
        ``output_dir/val_<image_id>.png``.
    """
    dataset = getattr(datamodule, "val_dataset", None)
    if dataset is None or max_images <= 0 or len(dataset) == 0:
        return []
    info: DataInfo = model.data_info
    out: list[Path] = []
    with eval_mode(model):
        for index in range(min(int(max_images), len(dataset))):
            raw = _raw_item(dataset, index)
            if raw is None:
                break
            image = torch.as_tensor(raw["image"]).as_subclass(torch.Tensor)
            det = model.predict(image)[0]
            keep = det["scores"] >= score_thresh
            names = list(info.class_names)
            truth = draw_detections(
                image,
                torch.as_tensor(raw["boxes"]),
                torch.as_tensor(raw["labels"]),
                None,
                names,
                title="ground truth",
            )
            pred = draw_detections(
                image,
                det["boxes"][keep],
                det["labels"][keep],
                det["scores"][keep],
                names,
                title=f"predictions (score >= {score_thresh:.2f})",
            )
            image_id = int(raw.get("image_id", index))
            out.append(
                save_image(side_by_side(truth, pred), Path(output_dir) / f"val_{image_id:012d}.png")
            )
    return out


class CocoResultsWriter(BasePredictionWriter):
    """``predict`` on a labelled split: COCO results JSON and PNGs with drawn boxes.

    Boxes are mapped back to the original image; labels to the annotation file's
    category ids (``datamodule.category_ids``; in CSV mode the contiguous label),
    with ``category_name`` added.

    Parameters
    ----------
    output_dir:
        Folder for ``results.json`` and ``images/*.png``.
    max_images:
        PNGs to draw (the first images in order); 0: none.
    score_thresh:
        Minimum score of a box drawn on the PNGs (all boxes go to the JSON).
    """

    def __init__(
        self,
        output_dir: str | Path,
        max_images: int = DEFAULT_MAX_IMAGES,
        score_thresh: float = DEFAULT_DRAW_THRESH,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.max_images = int(max_images)
        self.score_thresh = float(score_thresh)
        self.results: list[dict[str, Any]] = []
        self.images_written: list[Path] = []
        self.results_path = self.output_dir / "results.json"

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.results = []
        self.images_written = []

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if not isinstance(batch, dict) or prediction is None:
            return
        dm = trainer.datamodule
        info: DataInfo = pl_module.data_info
        dataset = dm.predict_dataset() if hasattr(dm, "predict_dataset") else None
        canvas = tuple(int(v) for v in batch["images"].shape[-2:])
        resized = batch.get("resized_sizes")
        for i, det in enumerate(prediction):
            image_id = int(batch["image_ids"][i])
            rs = resized[i].tolist() if resized is not None else canvas
            orig = batch["orig_sizes"][i].tolist()
            boxes = boxes_to_original(det["boxes"].cpu(), rs, orig)
            self.results += coco_records(
                image_id, boxes, det["scores"], det["labels"], info.class_names, info.category_ids
            )
            if trainer.global_rank != 0 or len(self.images_written) >= self.max_images:
                continue
            index = batch_indices[i] if batch_indices is not None else None
            image = _dataset_image(dataset, index) if index is not None else None
            if image is None:
                continue
            keep = det["scores"] >= self.score_thresh
            drawn = draw_detections(
                image,
                boxes[keep],
                det["labels"][keep],
                det["scores"][keep],
                info.class_names,
                title=f"predictions (score >= {self.score_thresh:.2f})",
            )
            path = self.output_dir / "images" / f"{image_id:012d}.png"
            self.images_written.append(save_image(drawn, path))

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        results = self.results
        if (
            trainer.world_size > 1
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
        ):
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, results)
            results = [r for part in gathered for r in part]
        if trainer.global_rank == 0:
            write_json(results, self.results_path)
            n_img = len({r["image_id"] for r in results})
            print(
                f"\nPredictions: {len(results)} boxes on {n_img} images"
                f"\n  COCO results JSON: {self.results_path}"
                f"\n  images with drawn boxes: {self.output_dir / 'images'} "
                f"({len(self.images_written)} PNGs)",
                flush=True,
            )


class EvaluationReportWriter(Callback):
    """After ``validate``/``test``: per-class AP table (console + file), confusion matrix
    and precision-recall PNGs, from the detections the model's steps return.

    Under DDP the counts and the AP are gathered from every process; process 0 writes.

    Parameters
    ----------
    output_dir:
        Folder of the report files.
    score_thresh:
        Smallest score of a detection counted in the confusion matrix.
    confusion:
        Draw the confusion matrix (the model's ``log_confusion_matrix`` setting).
    """

    def __init__(
        self,
        output_dir: str | Path,
        score_thresh: float = DEFAULT_DRAW_THRESH,
        confusion: bool = True,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.score_thresh = float(score_thresh)
        self.confusion = bool(confusion)
        self.report: DetectionReport | None = None
        self.lines: list[str] = []

    def _start(self, pl_module: LightningModule) -> None:
        names = list(pl_module.data_info.class_names) or [
            str(k) for k in range(int(getattr(pl_module, "num_classes", 0)))
        ]
        self.report = DetectionReport(names, self.score_thresh, confusion=self.confusion)
        self.report.metric.to(pl_module.device)  # its states sync over the module's backend

    def _update(self, outputs: Any, batch: Any) -> None:
        if self.report is None or not isinstance(outputs, list) or not isinstance(batch, dict):
            return
        self.report.update(outputs, batch["boxes"], batch["labels"])

    def _finish(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.report is None:
            return
        if trainer.world_size > 1:  # every process joins the collectives; process 0 writes
            device = pl_module.device
            self.report.sync(lambda t: trainer.strategy.reduce(t.to(device), reduce_op="sum"))
            if trainer.global_rank != 0:
                self.report.metric.compute()
                return
        files = self.report.write(self.output_dir, stage)
        self.lines = [f"\n{stage}: AP per class", files.table, *files.summary_lines()]
        print("\n".join(self.lines), flush=True)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._start(pl_module)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self._update(outputs, batch)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._finish(trainer, pl_module, "validate")

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(pl_module)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._update(outputs, batch)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, pl_module, "test")
