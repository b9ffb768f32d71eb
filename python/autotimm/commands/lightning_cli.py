"""Lightning's CLI for autotimm: ``fit``, ``validate``, ``test``, ``predict`` (labelled split).

Defaults come from :mod:`autotimm.commands.defaults`: the demo configuration when
no data source is given, the own-data configuration otherwise. Before anything
is built, :mod:`autotimm.commands.checks` checks the checkpoint, the data paths,
``--model.num_classes`` and the reachability of pretrained weights.
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from autotimm.commands import checks
from autotimm.commands.callbacks import (
    DEFAULT_DRAW_THRESH,
    DEFAULT_MAX_IMAGES,
    CocoResultsWriter,
    EvaluationReportWriter,
    MetricsFileWriter,
    draw_validation_images,
)
from autotimm.commands.defaults import (
    DEMO_DATA,
    DEMO_DATA_DIR,
    DEMO_MODEL,
    DEMO_TRAINER,
    OWN_DATA_DATA,
    OWN_DATA_MODEL,
    OWN_DATA_TRAINER,
    RUNS_DIR,
)
from autotimm.data.detection_datamodule import checkpoint_settings
from autotimm.trainer import AutoTrainer

__all__ = ["AutoTimmCLI", "cli_main", "is_demo_data"]

_DATA_SOURCES = (
    "train_csv",
    "val_csv",
    "test_csv",
    "train_ann_file",
    "val_ann_file",
    "test_ann_file",
    "train_images_dir",
    "val_images_dir",
    "test_images_dir",
)


def is_demo_data(data: Any) -> bool:
    """The parsed ``data`` config is the embedded shapes (no own data source given)."""
    if data is None:
        return True
    class_path = getattr(data, "class_path", None) or (
        data.get("class_path") if hasattr(data, "get") else None
    )
    if class_path not in (
        None,
        DEMO_DATA["class_path"],
        "autotimm.data.detection_datamodule.DetectionDataModule",
    ):
        return False
    init = getattr(data, "init_args", None) or (
        data.get("init_args") if isinstance(data, dict) else None
    ) or {}
    get = init.get if hasattr(init, "get") else lambda k, d=None: getattr(init, k, d)
    if str(get("data_dir", DEMO_DATA_DIR)) != DEMO_DATA_DIR:
        return False
    return all(get(k) is None for k in _DATA_SOURCES)


def _shown_sources(settings: dict[str, Any]) -> tuple[str, ...]:
    """The data source arguments that mean something in ``settings``: ``data_dir`` only
    in COCO mode (a CSV source ignores it)."""
    if any(settings.get(k) is not None for k in ("train_csv", "val_csv", "test_csv")):
        return (*_DATA_SOURCES, "image_dir")
    return ("data_dir", *_DATA_SOURCES)


def _format_elapsed(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _own_data_defaults() -> dict[str, Any]:
    return {
        "model": OWN_DATA_MODEL,
        "data": {"class_path": DEMO_DATA["class_path"], "init_args": dict(OWN_DATA_DATA)},
    }


class AutoTimmCLI(LightningCLI):
    """``LightningCLI`` with autotimm's defaults, checks, result files and reports.

    Extra options: ``--output_dir`` (predictions, reports), ``--max_images``
    (drawn PNGs) and ``--draw_thresh`` (smallest drawn score).
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--output_dir",
            type=str | None,
            default=None,
            help="Folder for predictions, PNGs and reports (default: the run's log folder).",
        )
        parser.add_argument(
            "--max_images",
            type=int,
            default=DEFAULT_MAX_IMAGES,
            help="PNG images with drawn predictions to write.",
        )
        parser.add_argument(
            "--draw_thresh",
            type=float,
            default=DEFAULT_DRAW_THRESH,
            help="Smallest score of a drawn box (and of a detection in the confusion matrix).",
        )
        parser.set_defaults({"model": DEMO_MODEL, "data": DEMO_DATA})
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )
        self._autotimm_parsers = [*getattr(self, "_autotimm_parsers", []), parser]

    # -- parsing: demo defaults, or own-data defaults when a data source is given
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        args = list(sys.argv[1:] if args is None else args)
        # a first pass finds the data source (--print_config would print and exit)
        super().parse_arguments(parser, [a for a in args if not a.startswith("--print_config")])
        sub = self.config.get("subcommand")
        section = self.config[sub] if sub else self.config
        self.is_demo = is_demo_data(section.get("data"))
        stored = self._checkpoint_data(sub, section) if self.is_demo else None
        if stored is not None:
            self.is_demo = False
        if self.is_demo:
            if any(a.startswith("--print_config") for a in args):
                super().parse_arguments(parser, args)
            return
        own = _own_data_defaults()
        own["data"]["init_args"].update(stored or {})
        for p in getattr(self, "_autotimm_parsers", []):
            p.set_defaults(own)
            p.set_defaults({f"trainer.{k}": v for k, v in OWN_DATA_TRAINER.items()})
        super().parse_arguments(parser, args)

    def _load_checkpoint(self, path: str) -> dict[str, Any]:
        """The checkpoint at ``path`` on the CPU, loaded once per command."""
        cache: dict[str, dict[str, Any]] = self.__dict__.setdefault("_checkpoints", {})
        if path not in cache:
            cache[path] = torch.load(path, weights_only=True, map_location="cpu")
        return cache[path]

    def _checkpoint_data(self, sub: str | None, section: Any) -> dict[str, Any] | None:
        """``validate|test|predict --ckpt_path`` without a data source: the data module
        settings the checkpoint was trained with (own data only), or None."""
        ckpt_path = section.get("ckpt_path") if sub in ("validate", "test", "predict") else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return None
        try:
            settings = checkpoint_settings(self._load_checkpoint(str(ckpt_path)))
        except Exception:  # not a loadable checkpoint: check_checkpoint reports it
            return None
        if settings is None or is_demo_data({"init_args": settings}):
            return None
        sources = [f"--data.{k} {settings[k]}" for k in _shown_sources(settings)
                   if settings.get(k) is not None]
        print(f"Data from the checkpoint: {' '.join(sources)} (--data.* flags replace it)",
              file=sys.stderr, flush=True)
        return settings

    def before_instantiate_classes(self) -> None:
        """Checks before anything is built: checkpoint, data paths, classes, weights."""
        sub = self.config.get("subcommand")
        section = self.config[sub] if sub else self.config
        if sub:
            checks.check_checkpoint(sub, section.get("ckpt_path"))
        data_init = section.get("data", {}).get("init_args", {}) or {}
        checks.check_data_paths(sub or "fit", dict(data_init))
        model_init = section.get("model", {}).get("init_args", {}) or {}
        requested = model_init.get("num_classes")
        backbone = model_init.get("backbone")
        pretrained = getattr(backbone, "pretrained", None)
        if pretrained is None and hasattr(backbone, "get"):
            pretrained = backbone.get("pretrained")
        if isinstance(backbone, str):
            name, pretrained = backbone, True
        else:
            name = getattr(backbone, "model_name", None) or (
                backbone.get("model_name") if hasattr(backbone, "get") else None
            )
        if pretrained and name and not (sub and section.get("ckpt_path")):
            checks.check_pretrained_reachable(str(name))
        self._requested_num_classes = requested

    def instantiate_classes(self) -> None:
        requested = getattr(self, "_requested_num_classes", None)
        if requested is not None:
            self._check_num_classes_against_data(requested)
        super().instantiate_classes()

    def _check_num_classes_against_data(self, requested: int) -> None:
        from jsonargparse import Namespace

        sub = self.config.get("subcommand")
        section = self.config[sub] if sub else self.config
        parser = self._parser(sub) if sub else self.parser
        data = parser.instantiate_classes(Namespace(data=section.get("data"))).get("data")
        names = list(getattr(data, "class_names", []))
        checks.check_num_classes(requested, len(names), names)

    def _parse_ckpt_path(self) -> None:
        """As Lightning's, but only hyperparameters the model's ``__init__`` accepts are
        applied, and the backbone is built without downloading pretrained weights (the
        checkpoint has the weights)."""
        if not self.config.get("subcommand"):
            return
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        ckpt = self._load_checkpoint(str(ckpt_path))
        self.__dict__.pop("_checkpoints", None)  # parsing is over: free the weights
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
        backbone = hparams.get("backbone")
        if isinstance(backbone, str):
            hparams["backbone"] = {"model_name": backbone, "pretrained": False}
        elif isinstance(backbone, dict):
            hparams["backbone"] = {**backbone, "pretrained": False}
        update: dict[str, Any] = {"model": {"class_path": class_path, "init_args": hparams}}
        data_size = self._checkpoint_image_size(ckpt)
        if data_size is not None:
            update["data"] = {"init_args": {"image_size": data_size}}
        self.config = self.parser.parse_object({self.config.subcommand: update}, self.config)

    def _checkpoint_image_size(self, ckpt: dict[str, Any]) -> int | None:
        """The checkpoint's input size, when ``--data.image_size`` was left at its default."""
        stored = ckpt.get("autotimm_data")
        if not isinstance(stored, dict) or "image_size" not in stored:
            return None
        data = self.config[self.config.subcommand].get("data")
        init = getattr(data, "init_args", None)
        current = getattr(init, "image_size", None)
        default = (DEMO_DATA["init_args"] if self.is_demo else OWN_DATA_DATA)["image_size"]
        return int(stored["image_size"]) if current == default else None

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The default CSV logger writes under ``trainer.default_root_dir``."""
        from lightning.pytorch.loggers import CSVLogger

        trainer_cfg = self._get(self.config_init, "trainer", default={})
        logger = trainer_cfg.get("logger")
        root = trainer_cfg.get("default_root_dir")
        if (
            "logger" not in kwargs
            and isinstance(logger, CSVLogger)
            and str(logger.save_dir) == RUNS_DIR
            and root is not None
            and str(root) != RUNS_DIR
        ):
            kwargs["logger"] = CSVLogger(save_dir=str(root), name=logger.name)
        return super().instantiate_trainer(**kwargs)

    # -- helpers
    def _sub(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    def _run_dir(self) -> Path:
        """The run's folder, read once: ``trainer.log_dir`` is a collective call under DDP,
        so the first call (in ``before_*``, on every rank) caches it for rank 0's later use."""
        cached = getattr(self, "_run_dir_cache", None)
        if cached is None or cached[0] is not self.trainer:
            cached = (self.trainer, Path(self.trainer.log_dir or self.trainer.default_root_dir))
            self._run_dir_cache = cached
        return cached[1]

    def _output_dir(self, default_name: str = "predictions") -> Path:
        configured = self._sub().get("output_dir")
        if configured:
            return Path(configured)
        return self._run_dir() if default_name == "." else self._run_dir() / default_name

    def _logs_confusion_matrix(self) -> bool:
        config = getattr(self.model, "_logging_config", None)
        return bool(getattr(config, "log_confusion_matrix", False))

    # -- fit
    def before_fit(self) -> None:
        self._fit_start = time.monotonic()
        self._metrics_writer = MetricsFileWriter(self._run_dir() / "metrics.json")
        self.trainer.callbacks.append(self._metrics_writer)
        if self._logs_confusion_matrix():
            self.trainer.callbacks.append(
                EvaluationReportWriter(self._run_dir(), self._sub().get("draw_thresh"))
            )

    def _source_hint(self) -> str | None:
        """The folder of the validation images (what ``predict --source`` should read)."""
        dataset = getattr(self.datamodule, "val_dataset", None)
        if dataset is None or not hasattr(dataset, "image_path") or len(dataset) == 0:
            return None
        return str(Path(dataset.image_path(0)).parent)

    def after_fit(self) -> None:
        trainer = self.trainer
        if trainer.global_rank != 0:
            return
        elapsed = time.monotonic() - getattr(self, "_fit_start", time.monotonic())
        ckpt_cb = trainer.checkpoint_callback
        best = getattr(ckpt_cb, "best_model_path", "") if ckpt_cb is not None else ""
        model = self.model
        images: list[Path] = []
        try:
            if best and Path(best).is_file():  # draw with the best weights
                ckpt = torch.load(best, map_location="cpu", weights_only=False)
                model.on_load_checkpoint(ckpt)
                model.load_state_dict(ckpt["state_dict"])
            images = draw_validation_images(
                model,
                self.datamodule,
                self._output_dir("predictions"),
                self._sub().get("max_images", DEFAULT_MAX_IMAGES),
                self._sub().get("draw_thresh", DEFAULT_DRAW_THRESH),
            )
        except Exception as exc:  # drawing must not hide a finished training
            print(f"warning: could not draw predictions: {exc}", file=sys.stderr)
        lines = [f"\nTraining finished in {_format_elapsed(elapsed)}."]
        records = self._metrics_writer.records
        monitor = getattr(ckpt_cb, "monitor", None)
        if records and monitor:
            scored = [r for r in records if monitor in r and not math.isnan(r[monitor])]
            if scored:
                pick = max if getattr(ckpt_cb, "mode", "max") == "max" else min
                top = pick(scored, key=lambda r: r[monitor])
                extra = "".join(f", {k} {top[k]:.4f}" for k in ("val/map_50",) if k in top)
                lines.append(f"Best {monitor} {top[monitor]:.4f}{extra} (epoch {top['epoch']}).")
        lines.append(f"  checkpoint:  {best or '(none saved)'}")
        metrics_csv = self._run_dir() / "metrics.csv"
        csv_note = f" and {metrics_csv}" if metrics_csv.is_file() else ""
        lines.append(f"  metrics:     {self._metrics_writer.path}{csv_note}")
        if images:
            lines.append(f"  predictions: {images[0].parent} ({len(images)} PNGs)")
        source = self._source_hint()
        if best and source:
            lines.append(
                f"Predict with: autotimm predict --ckpt_path {best} --source {source} "
                f"--output_dir {self._run_dir() / 'predict'}"
            )
        elif best:
            lines.append(f"Predict with: autotimm predict --ckpt_path {best} --source IMAGES")
        print("\n".join(lines), flush=True)

    # -- validate / test
    def _add_report(self) -> None:
        self._report = EvaluationReportWriter(
            self._output_dir("."),
            self._sub().get("draw_thresh", DEFAULT_DRAW_THRESH),
        )
        self.trainer.callbacks.append(self._report)

    def _write_eval_metrics(self, stage: str) -> None:
        if self.trainer.global_rank != 0:
            return
        import json

        metrics = {
            k: float(v)
            for k, v in sorted(self.trainer.callback_metrics.items())
            if isinstance(v, torch.Tensor) and v.numel() == 1
        }
        path = self._output_dir(".") / f"{stage}_metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, indent=1))
        print(f"  metrics:            {path}", flush=True)

    def before_validate(self) -> None:
        self._add_report()

    def after_validate(self) -> None:
        self._write_eval_metrics("validate")

    def before_test(self) -> None:
        self._add_report()

    def after_test(self) -> None:
        self._write_eval_metrics("test")

    # -- predict (a labelled split; image files go through `predict --source`)
    def before_predict(self) -> None:
        self._writer = CocoResultsWriter(
            self._output_dir("predictions"),
            max_images=self._sub().get("max_images", DEFAULT_MAX_IMAGES),
            score_thresh=self._sub().get("draw_thresh", DEFAULT_DRAW_THRESH),
        )
        self.trainer.callbacks.append(self._writer)


def _trainer_defaults() -> dict[str, Any]:
    from jsonargparse import lazy_instance
    from lightning.pytorch.loggers import CSVLogger

    return {
        **DEMO_TRAINER,
        "logger": lazy_instance(CSVLogger, save_dir=RUNS_DIR, name="lightning_logs"),
    }


def cli_main(args: list[str] | None = None, run: bool = True) -> AutoTimmCLI:
    """Build (and by default run) the :class:`AutoTimmCLI`.

    Parameters
    ----------
    args:
        Command-line arguments (``None``: ``sys.argv[1:]``), already rewritten by
        :func:`autotimm.commands.arguments.compose_backbone_flags` if wanted.
    run:
        Run the subcommand (``False``: only instantiate, with ``args`` without one).
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
        parser_kwargs={"exit_on_error": False},
    )
