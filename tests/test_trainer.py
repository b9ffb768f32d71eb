"""AutoTrainer and TunerConfig (no training here; the CLI tests train)."""

from __future__ import annotations

import inspect

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from autotimm.trainer import AutoTrainer, JsonProgressCallback, TunerConfig


def _quiet(**kw) -> AutoTrainer:
    return AutoTrainer(
        accelerator="cpu", enable_progress_bar=False, enable_model_summary=False, **kw
    )


def _checkpoints(trainer: AutoTrainer) -> list[ModelCheckpoint]:
    return [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]


def test_signature_matches_autotimm() -> None:
    params = list(inspect.signature(AutoTrainer).parameters)
    assert params == [
        "max_epochs",
        "accelerator",
        "devices",
        "precision",
        "logger",
        "tuner_config",
        "checkpoint_monitor",
        "checkpoint_mode",
        "callbacks",
        "default_root_dir",
        "gradient_clip_val",
        "accumulate_grad_batches",
        "val_check_interval",
        "enable_checkpointing",
        "fast_dev_run",
        "seed",
        "deterministic",
        "use_autotimm_seeding",
        "json_progress",
        "json_progress_every_n_steps",
        "json_progress_log_file",
        "trainer_kwargs",
    ]
    cfg = TunerConfig()
    assert (cfg.auto_lr, cfg.auto_batch_size, cfg.lr_find_kwargs, cfg.batch_size_kwargs) == (
        True,
        True,
        None,
        None,
    )


def test_defaults_and_banner(capsys, monkeypatch) -> None:
    monkeypatch.delenv("AUTOTIMM_NO_BANNER", raising=False)
    trainer = _quiet()
    assert "torch" in capsys.readouterr().err
    assert trainer.max_epochs == 10 and trainer.logger is None
    [ckpt] = _checkpoints(trainer)
    assert (ckpt.monitor, ckpt.mode, ckpt.save_top_k) == ("val/loss", "min", 1)
    # AutoTimm's default: the LR finder runs; batch-size search only with CUDA
    assert trainer.tuner_config == TunerConfig(
        auto_lr=True, auto_batch_size=torch.cuda.is_available()
    )
    assert _quiet(tuner_config=False).tuner_config is None
    assert _quiet(tuner_config=True).tuner_config.auto_lr
    with pytest.raises(TypeError, match="tuner_config"):
        _quiet(tuner_config="yes")
    with pytest.raises(ValueError, match="checkpoint_mode"):
        _quiet(checkpoint_mode="best")


def test_detector_gets_val_map_monitor() -> None:
    class Detector(torch.nn.Module):
        detection_arch = "fcos"

    trainer = _quiet()
    trainer._resolve_checkpoint_monitor(Detector())
    [ckpt] = _checkpoints(trainer)
    assert (ckpt.monitor, ckpt.mode) == ("val/map", "max")
    assert trainer.checkpoint_callback is ckpt
    assert (trainer.checkpoint_monitor, trainer.checkpoint_mode) == ("val/map", "max")


def test_explicit_monitor_and_other_models_untouched() -> None:
    class Detector(torch.nn.Module):
        detection_arch = "fcos"

    trainer = _quiet(checkpoint_monitor="val/map_50", checkpoint_mode="max")
    trainer._resolve_checkpoint_monitor(Detector())
    assert _checkpoints(trainer)[0].monitor == "val/map_50"
    trainer = _quiet()
    trainer._resolve_checkpoint_monitor(torch.nn.Linear(1, 1))
    assert _checkpoints(trainer)[0].monitor == "val/loss"


def test_user_checkpoint_kept_and_json_progress(tmp_path) -> None:
    mine = ModelCheckpoint(monitor="val/map_75", mode="max")
    trainer = _quiet(
        callbacks=[mine], json_progress=True, json_progress_log_file=str(tmp_path / "p")
    )
    assert _checkpoints(trainer) == [mine]
    assert any(isinstance(c, JsonProgressCallback) for c in trainer.callbacks)
    assert not _checkpoints(_quiet(enable_checkpointing=False))


def test_trainer_kwargs_pass_through() -> None:
    trainer = _quiet(limit_train_batches=3, num_sanity_val_steps=0, max_epochs=2)
    assert trainer.limit_train_batches == 3 and trainer.max_epochs == 2


def test_seed(monkeypatch) -> None:
    _quiet(seed=123)
    a = torch.rand(3)
    _quiet(seed=123, use_autotimm_seeding=True)
    b = torch.rand(3)
    assert torch.equal(a, b)
