"""The ``autotimm`` command: Lightning CLI for detection, plus ``autotimm evaluate``.

Usage::

    autotimm fit                                   # the main job: FCOS on the embedded shapes
    autotimm fit --config detection.yaml --trainer.max_epochs 20
    autotimm fit --data.data_dir /data/coco --data.image_size 640 --model.backbone resnet50
    autotimm validate|test --ckpt_path best.ckpt ...
    autotimm predict --ckpt_path best.ckpt [--output_dir out/] [--max_images 16]
    autotimm evaluate GT.json RESULTS.json [--json]
    autotimm --version

``fit`` with no other argument trains a small FCOS detector (``resnet18``
backbone, ``pretrained=False``, 128-pixel images) on the embedded synthetic
shapes, validates mAP every epoch, keeps the best checkpoint by ``val/map``, and
ends by printing where the checkpoint, the metrics (``metrics.json`` /
``metrics.csv``) and PNG images with drawn predictions are.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from autotimm.trainer import AutoTrainer

__all__ = [
    "MAIN_JOB_DATA",
    "MAIN_JOB_MODEL",
    "MAIN_JOB_TRAINER",
    "AutoTimmCLI",
    "CocoResultsWriter",
    "MetricsFileWriter",
    "cli_main",
    "main",
]

#: Model of the main job (``autotimm fit`` with no other argument).
MAIN_JOB_MODEL: dict[str, Any] = {
    "class_path": "autotimm.ObjectDetector",
    "init_args": {
        "backbone": {"model_name": "resnet18", "pretrained": False},
        "detection_arch": "fcos",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "optimizer": "adamw",
        "scheduler": "cosine",
        "fpn_channels": 64,
        "head_num_convs": 2,
        "compile_model": False,
        "seed": None,
        "deterministic": False,
    },
}

#: Data of the main job: the embedded shapes, written once as a COCO folder.
MAIN_JOB_DATA: dict[str, Any] = {
    "class_path": "autotimm.DetectionDataModule",
    "init_args": {
        "data_dir": "builtin:shapes",
        "image_size": 128,
        "batch_size": 16,
        "num_workers": 2,
        "augmentation_preset": "light",
    },
}

#: Trainer defaults of the ``autotimm`` command (on top of AutoTrainer's).
MAIN_JOB_TRAINER: dict[str, Any] = {
    "max_epochs": 3,
    "tuner_config": False,
    "default_root_dir": "autotimm_runs",
    "log_every_n_steps": 10,
}

#: PNGs with drawn predictions written at the end of ``fit`` / by ``predict``.
DEFAULT_MAX_IMAGES = 8


# --------------------------------------------------------------------------- #
# Callbacks
# --------------------------------------------------------------------------- #
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


def _draw(
    image_u8: torch.Tensor, boxes: torch.Tensor, labels: Sequence[str], colors: Sequence[str]
) -> torch.Tensor:
    from torchvision.utils import draw_bounding_boxes

    if len(boxes) == 0:
        return image_u8
    return draw_bounding_boxes(image_u8, boxes, labels=list(labels), colors=list(colors), width=2)


_PALETTE = [
    "#e6194b",
    "#3cb44b",
    "#ffe119",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#fabebe",
    "#008080",
    "#e6beff",
]


def _class_name(names: Sequence[str], label: int) -> str:
    return names[label] if 0 <= label < len(names) else str(label)


def _to_original(
    boxes: torch.Tensor,
    orig_size: torch.Tensor,
    resized_size: torch.Tensor | None,
    canvas: tuple[int, int],
) -> torch.Tensor:
    """Map boxes from the network input to the original image (resize + pad undone)."""
    oh, ow = (float(v) for v in orig_size)
    if resized_size is not None:
        rh, rw = (float(v) for v in resized_size)
    else:  # assume longest-side resize to the canvas, padded right/bottom
        s = max(canvas) / max(oh, ow)
        rh, rw = oh * s, ow * s
    out = boxes.detach().float().cpu().clone()
    out[:, 0::2] = (out[:, 0::2] * (ow / rw)).clamp(0, ow)
    out[:, 1::2] = (out[:, 1::2] * (oh / rh)).clamp(0, oh)
    return out


def _original_image(
    dataset: Any,
    image_id: int,
    fallback: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    region: tuple[int, int],
) -> tuple[torch.Tensor, bool]:
    """The original image as uint8 [3, H, W], or the un-normalised network input.

    Returns ``(image, is_original)``.
    """
    index_of = getattr(dataset, "_autotimm_id_index", None)
    if index_of is None and hasattr(dataset, "image_ids") and hasattr(dataset, "image_path"):
        index_of = {int(i): k for k, i in enumerate(dataset.image_ids)}
        try:
            dataset._autotimm_id_index = index_of
        except AttributeError:
            pass
    if index_of is not None and int(image_id) in index_of:
        from autotimm.data.detection_dataset import load_image

        return load_image(dataset.image_path(index_of[int(image_id)])).as_subclass(
            torch.Tensor
        ), True
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    img = (fallback.detach().cpu().float() * s + m).clamp(0, 1)[:, : region[0], : region[1]]
    return (img * 255 + 0.5).to(torch.uint8), False


def _norm_stats(datamodule: Any) -> tuple[Sequence[float], Sequence[float]]:
    tf = getattr(datamodule, "eval_transforms", None)
    from autotimm.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    return getattr(tf, "mean", IMAGENET_MEAN), getattr(tf, "std", IMAGENET_STD)


class CocoResultsWriter(BasePredictionWriter):
    """Writes ``predict`` output: a COCO results JSON and PNGs with drawn boxes.

    Boxes are mapped back to the original image size; labels are mapped back to
    the annotation file's category ids (``datamodule.category_ids``; in CSV mode
    the contiguous label is written and ``category_name`` added).

    Parameters
    ----------
    output_dir:
        Folder for ``results.json`` and ``images/*.png``.
    max_images:
        PNGs to draw (the first images in order); 0 → none.
    score_thresh:
        Minimum score of a box drawn on the PNGs (all boxes go to the JSON).
    """

    def __init__(
        self,
        output_dir: str | Path,
        max_images: int = DEFAULT_MAX_IMAGES,
        score_thresh: float = 0.3,
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
        cat_ids = getattr(dm, "category_ids", None)
        names = list(getattr(dm, "class_names", []) or [])
        dataset = dm.predict_dataset() if hasattr(dm, "predict_dataset") else None
        mean, std = _norm_stats(dm)
        canvas = tuple(int(v) for v in batch["images"].shape[-2:])
        resized = batch.get("resized_sizes")
        for i, det in enumerate(prediction):
            image_id = int(batch["image_ids"][i])
            rs = resized[i] if resized is not None else None
            boxes = _to_original(det["boxes"], batch["orig_sizes"][i], rs, canvas)
            scores = det["scores"].detach().float().cpu()
            labels = det["labels"].detach().cpu().long()
            for b, s, lab in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True):
                rec: dict[str, Any] = {
                    "image_id": image_id,
                    "category_id": int(cat_ids[lab]) if cat_ids is not None else int(lab),
                    "bbox": [
                        round(b[0], 3),
                        round(b[1], 3),
                        round(b[2] - b[0], 3),
                        round(b[3] - b[1], 3),
                    ],
                    "score": round(float(s), 5),
                }
                if cat_ids is None:
                    rec["category_name"] = _class_name(names, lab)
                self.results.append(rec)
            if trainer.global_rank == 0 and len(self.images_written) < self.max_images:
                region = tuple(int(v) for v in (rs if rs is not None else canvas))
                img, is_orig = _original_image(
                    dataset, image_id, batch["images"][i], mean, std, region
                )
                keep = scores >= self.score_thresh
                draw_boxes = boxes[keep] if is_orig else det["boxes"].detach().cpu()[keep]
                texts = [
                    f"{_class_name(names, int(lab))} {float(s):.2f}"
                    for lab, s in zip(labels[keep], scores[keep], strict=True)
                ]
                colors = [_PALETTE[int(lab) % len(_PALETTE)] for lab in labels[keep]]
                path = self.output_dir / "images" / f"{image_id:012d}.png"
                _save_png(_draw(img, draw_boxes, texts, colors), path)
                self.images_written.append(path)

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
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self.results_path.write_text(json.dumps(results))
            n_img = len({r["image_id"] for r in results})
            print(
                f"\nPredictions: {len(results)} boxes on {n_img} images"
                f"\n  COCO results JSON: {self.results_path}"
                f"\n  images with drawn boxes: {self.output_dir / 'images'} "
                f"({len(self.images_written)} PNGs)",
                flush=True,
            )


def _save_png(image_u8: torch.Tensor, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_u8.permute(1, 2, 0).contiguous().numpy()).save(path)


@torch.no_grad()
def draw_predictions(
    model: LightningModule,
    datamodule: Any,
    output_dir: str | Path,
    max_images: int = DEFAULT_MAX_IMAGES,
    score_thresh: float = 0.3,
) -> list[Path]:
    """Draw the model's predictions on the first validation images as PNGs.

    Parameters
    ----------
    model:
        A detector with ``predict(images) -> list[dict(boxes, scores, labels)]``.
    datamodule:
        A set-up :class:`autotimm.DetectionDataModule` (uses the validation set).
    output_dir:
        Folder for the PNGs.
    max_images:
        Number of images.
    score_thresh:
        Minimum score of a drawn box.
    """
    from autotimm.data.collate import detection_collate_fn

    dataset = getattr(datamodule, "val_dataset", None)
    if dataset is None or max_images <= 0 or len(dataset) == 0:
        return []
    names = list(getattr(datamodule, "class_names", []) or [])
    mean, std = _norm_stats(datamodule)
    was_training = model.training
    model.eval()
    items = [dataset[i] for i in range(min(max_images, len(dataset)))]
    batch = detection_collate_fn(items)
    device = next(model.parameters()).device
    preds = model.predict(batch["images"].to(device))
    canvas = tuple(int(v) for v in batch["images"].shape[-2:])
    out: list[Path] = []
    for i, det in enumerate(preds):
        rs = batch["resized_sizes"][i] if "resized_sizes" in batch else None
        image_id = int(batch["image_ids"][i])
        region = tuple(int(v) for v in (rs if rs is not None else canvas))
        img, is_orig = _original_image(dataset, image_id, batch["images"][i], mean, std, region)
        scores = det["scores"].detach().float().cpu()
        labels = det["labels"].detach().cpu().long()
        boxes = det["boxes"].detach().float().cpu()
        if is_orig:
            boxes = _to_original(boxes, batch["orig_sizes"][i], rs, canvas)
        keep = scores >= score_thresh
        texts = [
            f"{_class_name(names, int(lab))} {float(s):.2f}"
            for lab, s in zip(labels[keep], scores[keep], strict=True)
        ]
        colors = [_PALETTE[int(lab) % len(_PALETTE)] for lab in labels[keep]]
        path = Path(output_dir) / f"val_{image_id:012d}.png"
        _save_png(_draw(img, boxes[keep], texts, colors), path)
        out.append(path)
    model.train(was_training)
    return out


# --------------------------------------------------------------------------- #
# The CLI
# --------------------------------------------------------------------------- #
class AutoTimmCLI(LightningCLI):
    """``LightningCLI`` for autotimm: subcommands ``fit``, ``validate``, ``test``,
    ``predict`` with ``--config`` YAML and ``--model.*``/``--data.*``/``--trainer.*``.

    Defaults (when not overridden): ``model`` = :data:`MAIN_JOB_MODEL`, ``data`` =
    :data:`MAIN_JOB_DATA`, trainer = :class:`autotimm.AutoTrainer` with
    :data:`MAIN_JOB_TRAINER` (no LR finder). ``model.num_classes`` is taken from
    the data module. Extra options: ``--output_dir`` (where ``predict`` and the end
    of ``fit`` write results and PNGs) and ``--max_images``.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--output_dir",
            type=str | None,
            default=None,
            help="Folder for predictions and PNGs (default: <log dir or "
            "default_root_dir>/predictions).",
        )
        parser.add_argument(
            "--max_images",
            type=int,
            default=DEFAULT_MAX_IMAGES,
            help="PNG images with drawn predictions to write.",
        )
        parser.set_defaults({"model": MAIN_JOB_MODEL, "data": MAIN_JOB_DATA})
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The default CSV logger writes under ``trainer.default_root_dir``."""
        from lightning.pytorch.loggers import CSVLogger

        trainer_cfg = self._get(self.config_init, "trainer", default={})
        logger = trainer_cfg.get("logger")
        root = trainer_cfg.get("default_root_dir")
        default_root = MAIN_JOB_TRAINER["default_root_dir"]
        if (
            "logger" not in kwargs
            and isinstance(logger, CSVLogger)
            and str(logger.save_dir) == default_root
            and root is not None
            and str(root) != default_root
        ):
            kwargs["logger"] = CSVLogger(save_dir=str(root), name=logger.name)
        return super().instantiate_trainer(**kwargs)

    def _parse_ckpt_path(self) -> None:
        """As Lightning's, but only the checkpoint hyperparameters that the model's
        ``__init__`` accepts are applied (``ObjectDetector`` also records
        ``backbone_name``, ``username``, ``timestamp`` and ``batch_size``)."""
        if not self.config.get("subcommand"):
            return
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        ckpt = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        hparams = dict(ckpt.get("hyper_parameters", {}))
        hparams.pop("_instantiator", None)
        class_path = hparams.pop("_class_path", None)
        if not hparams or class_path is None:
            return
        try:
            from jsonargparse._util import import_object

            params = inspect.signature(import_object(class_path)).parameters
        except Exception:  # unknown class: let Lightning's parsing report it
            return super()._parse_ckpt_path()
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            hparams = {k: v for k, v in hparams.items() if k in params}
        update = {
            self.config.subcommand: {"model": {"class_path": class_path, "init_args": hparams}}
        }
        try:
            self.config = self.parser.parse_object(update, self.config)
        except SystemExit:
            sys.stderr.write(f"Parsing of the hyperparameters in {ckpt_path} failed!\n")
            raise

    # -- helpers
    def _sub(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    def _output_dir(self, default_name: str = "predictions") -> Path:
        configured = self._sub().get("output_dir")
        if configured:
            return Path(configured)
        base = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        return base if default_name == "." else base / default_name

    # -- fit
    def before_fit(self) -> None:
        self._fit_start = time.monotonic()
        self._metrics_writer = MetricsFileWriter(
            Path(self.trainer.log_dir or self.trainer.default_root_dir) / "metrics.json"
        )
        self.trainer.callbacks.append(self._metrics_writer)

    def after_fit(self) -> None:
        trainer = self.trainer
        if trainer.global_rank != 0:
            return
        elapsed = time.monotonic() - getattr(self, "_fit_start", time.monotonic())
        ckpt_cb = trainer.checkpoint_callback
        best = getattr(ckpt_cb, "best_model_path", "") if ckpt_cb is not None else ""
        model = self.model
        images: list[Path] = []
        if hasattr(model, "predict"):
            try:
                if best and Path(best).is_file():  # draw with the best weights
                    ckpt = torch.load(best, map_location="cpu", weights_only=False)
                    model.on_load_checkpoint(ckpt)
                    model.load_state_dict(ckpt["state_dict"])
                images = draw_predictions(
                    model,
                    self.datamodule,
                    self._output_dir("predictions"),
                    self._sub().get("max_images", DEFAULT_MAX_IMAGES),
                )
            except Exception as exc:  # drawing must not hide a finished training
                print(f"warning: could not draw predictions: {exc}", file=sys.stderr)
        lines = [f"\nTraining finished in {_fmt_time(elapsed)}."]
        records = self._metrics_writer.records
        monitor = getattr(ckpt_cb, "monitor", None)
        if records and monitor:
            scored = [r for r in records if monitor in r and not math.isnan(r[monitor])]
            if scored:
                mode = getattr(ckpt_cb, "mode", "max")
                pick = max if mode == "max" else min
                top = pick(scored, key=lambda r: r[monitor])
                extra = "".join(f", {k} {top[k]:.4f}" for k in ("val/map_50",) if k in top)
                lines.append(f"Best {monitor} {top[monitor]:.4f}{extra} (epoch {top['epoch']}).")
        lines.append(f"  checkpoint:  {best or '(none saved)'}")
        metrics_csv = Path(trainer.log_dir or "") / "metrics.csv" if trainer.log_dir else None
        csv_note = (
            f" and {metrics_csv}" if metrics_csv is not None and metrics_csv.is_file() else ""
        )
        lines.append(f"  metrics:     {self._metrics_writer.path}{csv_note}")
        if images:
            lines.append(f"  predictions: {images[0].parent} ({len(images)} PNGs)")
        if best:
            lines.append(f"Predict with: autotimm predict --ckpt_path {best}")
        print("\n".join(lines), flush=True)

    # -- validate / test
    def _write_eval_metrics(self, stage: str) -> None:
        if self.trainer.global_rank != 0:
            return
        metrics = {
            k: float(v)
            for k, v in sorted(self.trainer.callback_metrics.items())
            if isinstance(v, torch.Tensor) and v.numel() == 1
        }
        path = self._output_dir(".") / f"{stage}_metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, indent=1))
        print(f"\n{stage} metrics written to {path}", flush=True)

    def after_validate(self) -> None:
        self._write_eval_metrics("validate")

    def after_test(self) -> None:
        self._write_eval_metrics("test")

    # -- predict
    def before_predict(self) -> None:
        self._writer = CocoResultsWriter(
            self._output_dir("predictions"),
            max_images=self._sub().get("max_images", DEFAULT_MAX_IMAGES),
        )
        self.trainer.callbacks.append(self._writer)


def _fmt_time(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _trainer_defaults() -> dict[str, Any]:
    from jsonargparse import lazy_instance
    from lightning.pytorch.loggers import CSVLogger

    return {
        **MAIN_JOB_TRAINER,
        "logger": lazy_instance(
            CSVLogger, save_dir=MAIN_JOB_TRAINER["default_root_dir"], name="lightning_logs"
        ),
    }


def cli_main(args: Sequence[str] | None = None, run: bool = True) -> AutoTimmCLI:
    """Build (and by default run) the :class:`AutoTimmCLI`.

    Parameters
    ----------
    args:
        Command-line arguments (``None`` → ``sys.argv[1:]``).
    run:
        Run the subcommand (``False`` → only instantiate, with ``args`` without one).
    """
    return AutoTimmCLI(
        model_class=LightningModule,
        datamodule_class=LightningDataModule,
        trainer_class=AutoTrainer,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=None,
        seed_everything_default=0,
        trainer_defaults=_trainer_defaults(),
        args=list(args) if args is not None else None,
        run=run,
        auto_configure_optimizers=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autotimm`` console script and ``python -m autotimm``."""
    from_sys = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--version", "-V", "version"):
        from autotimm import __version__

        print(f"autotimm {__version__}")
        return 0
    if argv and argv[0] == "evaluate":
        from autotimm.metrics.evaluate_cli import main as evaluate_main

        return int(evaluate_main(argv[1:]) or 0)
    cli_main(None if from_sys else argv)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
