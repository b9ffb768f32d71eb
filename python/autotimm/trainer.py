"""``AutoTrainer``: a Lightning ``Trainer`` with AutoTimm's defaults, and ``TunerConfig``."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from autotimm.checkpointing import (
    AtomicCheckpointIO,
    LastCheckpoint,
    ResumeCallback,
    resolve_last_checkpoint,
)

__all__ = ["AutoTrainer", "JsonProgressCallback", "TunerConfig"]

#: The checkpoint monitor AutoTimm uses by default; detection never logs it.
_DEFAULT_MONITOR = "val/loss"
#: What a detector logs every validation epoch.
_DETECTION_MONITOR = ("val/map", "max")


@dataclass
class TunerConfig:
    """What :class:`AutoTrainer` tunes before training.

    Parameters
    ----------
    auto_lr:
        Run Lightning's learning-rate finder and apply its suggestion.
    auto_batch_size:
        Run Lightning's batch-size finder (``datamodule.batch_size``).
    lr_find_kwargs:
        Extra arguments of ``Tuner.lr_find`` (e.g. ``min_lr``, ``max_lr``, ``num_training``).
    batch_size_kwargs:
        Extra arguments of ``Tuner.scale_batch_size`` (e.g. ``mode``, ``max_trials``).
    """

    auto_lr: bool = True
    auto_batch_size: bool = True
    lr_find_kwargs: dict[str, Any] | None = None
    batch_size_kwargs: dict[str, Any] | None = None


def _environment_banner() -> str:
    from autotimm import __version__

    parts = [
        f"autotimm {__version__}",
        f"python {platform.python_version()}",
        f"torch {torch.__version__}",
        f"lightning {pl.__version__}",
    ]
    try:
        import timm

        parts.append(f"timm {timm.__version__}")
    except ImportError:  # pragma: no cover - timm is a dependency
        pass
    if torch.cuda.is_available():
        parts.append(
            f"CUDA {torch.version.cuda} x{torch.cuda.device_count()} "
            f"({torch.cuda.get_device_name(0)})"
        )
    else:
        parts.append(f"CPU x{os.cpu_count()} ({torch.get_num_threads()} torch threads)")
    return " | ".join(parts)


def _is_detector(model: Any) -> bool:
    """An autotimm ObjectDetector (or anything that logs ``val/map`` like one)."""
    if model is None:
        return False
    if type(model).__name__ == "ObjectDetector":
        return True
    return getattr(model, "detection_arch", None) is not None


class JsonProgressCallback(Callback):
    """Writes one JSON line per ``every_n_steps`` training steps and per validation epoch.

    Parameters
    ----------
    every_n_steps:
        Step interval of the training lines.
    log_file:
        File to append to; ``None`` → stdout.
    """

    def __init__(self, every_n_steps: int = 10, log_file: str | None = None) -> None:
        self.every_n_steps = max(1, int(every_n_steps))
        self.log_file = log_file
        self._start = time.monotonic()

    def _emit(self, trainer: pl.Trainer, record: dict[str, Any]) -> None:
        if trainer.global_rank != 0:
            return
        record["elapsed_s"] = round(time.monotonic() - self._start, 3)
        line = json.dumps(record)
        if self.log_file is None:
            print(line, flush=True)
        else:
            with open(self.log_file, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")

    @staticmethod
    def _metrics(trainer: pl.Trainer, prefix: str) -> dict[str, float]:
        out = {}
        for key, value in trainer.callback_metrics.items():
            if key.startswith(prefix) and isinstance(value, torch.Tensor) and value.numel() == 1:
                out[key] = float(value)
        return out

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.monotonic()

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._emit(
                trainer,
                {
                    "event": "train",
                    "epoch": trainer.current_epoch,
                    "step": trainer.global_step,
                    **self._metrics(trainer, "train/"),
                },
            )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._emit(
            trainer,
            {
                "event": "val",
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                **self._metrics(trainer, "val/"),
            },
        )


class AutoTrainer(pl.Trainer):
    """Lightning ``Trainer`` with AutoTimm's defaults.

    Adds a ``ModelCheckpoint`` (``save_top_k=1`` on ``checkpoint_monitor``) and
    ``last.ckpt`` kept every :data:`autotimm.checkpointing.LAST_CHECKPOINT_EVERY_N_STEPS`
    steps and every epoch, unless a ``ModelCheckpoint`` is given; optional
    learning-rate / batch-size tuning before ``fit`` (:class:`TunerConfig`),
    optional seeding, JSON progress lines, and prints a one-line environment banner.

    Runs survive being killed: checkpoints are written atomically
    (:class:`autotimm.checkpointing.AtomicCheckpointIO`, unless a ``CheckpointIO``
    plugin is given), the random generators are saved in them
    (:class:`autotimm.checkpointing.ResumeCallback`), and ``ckpt_path="last"``
    resumes from the most recent ``last.ckpt`` of the run's folders (an error
    when there is none). With :class:`autotimm.DetectionDataModule` a run resumed
    mid-epoch on CPU ends with the same weights as an uninterrupted one.

    For a detector (:class:`autotimm.ObjectDetector`), whose validation logs
    ``val/map`` and no loss, the default monitor ``"val/loss"`` becomes
    ``"val/map"`` with mode ``"max"`` when ``fit``/``validate``/``test`` starts.

    Parameters
    ----------
    max_epochs, accelerator, devices, precision, logger, callbacks,
    default_root_dir, gradient_clip_val, accumulate_grad_batches,
    val_check_interval, enable_checkpointing, fast_dev_run, deterministic:
        As ``lightning.pytorch.Trainer`` (AutoTimm's defaults: ``max_epochs=10``,
        ``precision=32``, ``logger=False``, ``default_root_dir="."``).
    tuner_config:
        ``None`` or ``True`` → ``TunerConfig(auto_lr=True, auto_batch_size=<CUDA
        available>)`` (AutoTimm's default: the LR finder runs); ``False`` → no
        tuning; or a :class:`TunerConfig`. Tuning never runs with ``fast_dev_run``.
    checkpoint_monitor, checkpoint_mode:
        Metric and mode of the added ``ModelCheckpoint``.
    seed:
        Seed everything before training (``None`` → no seeding).
    use_autotimm_seeding:
        Use :func:`autotimm.seed_everything` instead of Lightning's.
    json_progress, json_progress_every_n_steps, json_progress_log_file:
        Add a :class:`JsonProgressCallback`.
    **trainer_kwargs:
        Any other ``lightning.pytorch.Trainer`` argument (``strategy``, ``num_nodes``,
        ``limit_train_batches``, …).
    """

    def __init__(
        self,
        max_epochs: int = 10,
        accelerator: str = "auto",
        devices: list[int] | str | int = "auto",
        precision: int | str | None = 32,
        logger: Logger | Iterable[Logger] | bool | None = False,
        tuner_config: TunerConfig | bool | None = None,
        checkpoint_monitor: str = _DEFAULT_MONITOR,
        checkpoint_mode: str = "min",
        callbacks: list[Callback] | Callback | None = None,
        default_root_dir: str = ".",
        gradient_clip_val: float | None = None,
        accumulate_grad_batches: int = 1,
        val_check_interval: float | int | None = 1.0,
        enable_checkpointing: bool = True,
        fast_dev_run: bool | int = False,
        seed: int | None = None,
        deterministic: bool | str | None = False,
        use_autotimm_seeding: bool = False,
        json_progress: bool = False,
        json_progress_every_n_steps: int = 10,
        json_progress_log_file: str | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        if checkpoint_mode not in ("min", "max"):
            raise ValueError(f"checkpoint_mode must be 'min' or 'max', got {checkpoint_mode!r}")
        if seed is not None:
            if use_autotimm_seeding:
                from autotimm.core.utils import seed_everything

                seed_everything(seed, deterministic=bool(deterministic))
            else:
                pl.seed_everything(seed, workers=True)
        if rank_zero_only.rank == 0 and not os.environ.get("AUTOTIMM_NO_BANNER"):
            print(_environment_banner(), file=sys.stderr, flush=True)

        if tuner_config is None or tuner_config is True:
            tuner_config = TunerConfig(auto_lr=True, auto_batch_size=torch.cuda.is_available())
        elif tuner_config is False:
            tuner_config = None
        elif not isinstance(tuner_config, TunerConfig):
            raise TypeError(
                f"tuner_config must be a TunerConfig, a bool or None, got {type(tuner_config)}"
            )
        self.tuner_config: TunerConfig | None = tuner_config
        self.checkpoint_monitor = checkpoint_monitor
        self.checkpoint_mode = checkpoint_mode
        self._monitor_is_default = (
            checkpoint_monitor == _DEFAULT_MONITOR and checkpoint_mode == "min"
        )

        cb_list: list[Callback]
        if callbacks is None:
            cb_list = []
        elif isinstance(callbacks, Callback):
            cb_list = [callbacks]
        else:
            cb_list = list(callbacks)
        self._added_checkpoint: ModelCheckpoint | None = None
        if enable_checkpointing and not any(isinstance(c, ModelCheckpoint) for c in cb_list):
            self._added_checkpoint = ModelCheckpoint(
                monitor=checkpoint_monitor, mode=checkpoint_mode, save_top_k=1
            )
            cb_list.append(self._added_checkpoint)
            cb_list.append(LastCheckpoint())
        if not any(isinstance(c, ResumeCallback) for c in cb_list):
            cb_list.append(ResumeCallback())
        plugins = trainer_kwargs.pop("plugins", None)
        plugin_list = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        plugin_list = [p for p in plugin_list if p is not None]
        strategy = trainer_kwargs.get("strategy")
        if not any(isinstance(p, CheckpointIO) for p in plugin_list) and (
            getattr(strategy, "_checkpoint_io", None) is None
        ):
            plugin_list.append(AtomicCheckpointIO())
        if json_progress:
            cb_list.append(
                JsonProgressCallback(json_progress_every_n_steps, json_progress_log_file)
            )

        super().__init__(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            precision=precision,
            logger=logger,
            callbacks=cb_list,
            default_root_dir=default_root_dir,
            gradient_clip_val=gradient_clip_val,
            accumulate_grad_batches=accumulate_grad_batches,
            val_check_interval=val_check_interval,
            enable_checkpointing=enable_checkpointing,
            fast_dev_run=fast_dev_run,
            deterministic=deterministic,
            plugins=plugin_list,
            **trainer_kwargs,
        )
        self._fast_dev_run_flag = bool(fast_dev_run)

    # ----------------------------------------------------------------- monitor
    def _resolve_checkpoint_monitor(self, model: Any) -> None:
        """Switch the added checkpoint from ``val/loss`` to ``val/map`` for detectors."""
        if not (self._monitor_is_default and _is_detector(model)):
            return
        monitor, mode = _DETECTION_MONITOR
        self.checkpoint_monitor, self.checkpoint_mode = monitor, mode
        old = self._added_checkpoint
        if old is None or old.monitor == monitor:
            return
        new = ModelCheckpoint(
            dirpath=old.dirpath, monitor=monitor, mode=mode, save_top_k=old.save_top_k
        )
        self.callbacks = [new if c is old else c for c in self.callbacks]
        self._added_checkpoint = new

    # ------------------------------------------------------------------ tuning
    def _tune(self, model: pl.LightningModule, **loaders: Any) -> None:
        cfg = self.tuner_config
        if cfg is None or self._fast_dev_run_flag or not (cfg.auto_lr or cfg.auto_batch_size):
            return
        from lightning.pytorch.tuner import Tuner

        tuner = Tuner(self)
        if cfg.auto_batch_size:
            if loaders.get("datamodule") is not None and hasattr(
                loaders["datamodule"], "batch_size"
            ):
                tuner.scale_batch_size(model, **loaders, **(cfg.batch_size_kwargs or {}))
            else:
                warnings.warn(
                    "auto_batch_size needs a datamodule with batch_size; skipped",
                    UserWarning,
                    stacklevel=3,
                )
        if cfg.auto_lr:
            result = tuner.lr_find(
                model, update_attr=False, **loaders, **(cfg.lr_find_kwargs or {})
            )
            suggestion = result.suggestion() if result is not None else None
            if suggestion is not None:
                if hasattr(model, "_lr"):
                    model._lr = suggestion
                if "lr" in getattr(model, "hparams", {}):
                    model.hparams["lr"] = suggestion
                elif hasattr(model, "lr"):
                    model.lr = suggestion
                if rank_zero_only.rank == 0:
                    print(f"LR finder suggests lr={suggestion:.3g}", file=sys.stderr, flush=True)

    # --------------------------------------------------------------- entrypoints
    def fit(
        self,
        model: pl.LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: Any = None,
        ckpt_path: Any = None,
        **kwargs: Any,
    ) -> None:
        self._resolve_checkpoint_monitor(model)
        loaders = (
            {"datamodule": datamodule}
            if datamodule is not None
            else {"train_dataloaders": train_dataloaders, "val_dataloaders": val_dataloaders}
        )
        ckpt_path = self._resolve_ckpt_path(ckpt_path)
        if ckpt_path is None:
            self._tune(model, **loaders)
        return super().fit(
            model, train_dataloaders, val_dataloaders, datamodule, ckpt_path, **kwargs
        )

    def _resolve_ckpt_path(self, ckpt_path: Any) -> Any:
        """``"last"`` → the most recent ``last.ckpt`` of this trainer's checkpoint folders."""
        if ckpt_path != "last":
            return ckpt_path
        root = Path(self.default_root_dir)
        dirs: list[Path] = [root / "checkpoints", root / "lightning_logs"]
        for logger in self.loggers:
            save_dir = getattr(logger, "save_dir", None)
            if save_dir is not None:
                dirs.append(Path(save_dir) / str(logger.name or ""))
        for callback in self.checkpoint_callbacks:
            if getattr(callback, "dirpath", None):
                dirs.append(Path(callback.dirpath))
        return str(resolve_last_checkpoint(*dict.fromkeys(dirs)))

    def validate(self, model: pl.LightningModule | None = None, *args: Any, **kwargs: Any) -> Any:
        self._resolve_checkpoint_monitor(model if model is not None else self.lightning_module)
        if "ckpt_path" in kwargs:
            kwargs["ckpt_path"] = self._resolve_ckpt_path(kwargs["ckpt_path"])
        return super().validate(model, *args, **kwargs)

    def test(
        self,
        model: pl.LightningModule | None = None,
        dataloaders: Any = None,
        datamodule: Any = None,
        ckpt_path: str | None = "best",
        verbose: bool = True,
        **kwargs: Any,
    ) -> list[dict[str, float]]:
        """Test with AutoTimm's parameters: ``ckpt_path="best"`` (the default) is the
        best checkpoint of this trainer's fit when there is one, else the model's
        current weights; ``"last"`` resolves as in :meth:`fit`."""
        self._resolve_checkpoint_monitor(model if model is not None else self.lightning_module)
        if ckpt_path == "best" and not self.best_model_path:
            ckpt_path = None
        return super().test(
            model,
            dataloaders,
            ckpt_path=self._resolve_ckpt_path(ckpt_path),
            verbose=verbose,
            datamodule=datamodule,
            **kwargs,
        )

    @property
    def best_model_path(self) -> str:
        """Path of the best checkpoint of the first ``ModelCheckpoint`` ('' if none)."""
        cb = self.checkpoint_callback
        return getattr(cb, "best_model_path", "") if cb is not None else ""

    def output_dir(self) -> Path:
        """``log_dir`` of the logger if there is one, else ``default_root_dir``."""
        return Path(self.log_dir or self.default_root_dir)
