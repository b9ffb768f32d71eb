"""AutoTrainer and TunerConfig (no training here; the CLI tests train)."""

from __future__ import annotations

import inspect
import os

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from autotimm.checkpointing import AtomicCheckpointIO, LastCheckpoint, ResumeCallback
from autotimm.trainer import AutoTrainer, JsonProgressCallback, TunerConfig


def _quiet(**kw) -> AutoTrainer:
    return AutoTrainer(
        accelerator="cpu", enable_progress_bar=False, enable_model_summary=False, **kw
    )


def _checkpoints(trainer: AutoTrainer) -> list[ModelCheckpoint]:
    """The monitored checkpoints (not the ``last.ckpt`` keeper)."""
    return [
        c
        for c in trainer.callbacks
        if isinstance(c, ModelCheckpoint) and not isinstance(c, LastCheckpoint)
    ]


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
    assert not any(isinstance(c, LastCheckpoint) for c in trainer.callbacks)  # the user's choice


def test_trainer_kwargs_pass_through() -> None:
    trainer = _quiet(limit_train_batches=3, num_sanity_val_steps=0, max_epochs=2)
    assert trainer.limit_train_batches == 3 and trainer.max_epochs == 2


def test_seed(monkeypatch) -> None:
    _quiet(seed=123)
    a = torch.rand(3)
    _quiet(seed=123, use_autotimm_seeding=True)
    b = torch.rand(3)
    assert torch.equal(a, b)


def test_resume_parts_added(monkeypatch) -> None:
    trainer = _quiet()
    [last] = [c for c in trainer.callbacks if isinstance(c, LastCheckpoint)]
    assert (last.save_last, last.save_top_k, last._every_n_train_steps) == (True, 0, 50)
    assert any(isinstance(c, ResumeCallback) for c in trainer.callbacks)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    monkeypatch.setenv("AUTOTIMM_LAST_CHECKPOINT_STEPS", "7")
    [last] = [c for c in _quiet().callbacks if isinstance(c, LastCheckpoint)]
    assert last._every_n_train_steps == 7
    monkeypatch.setenv("AUTOTIMM_LAST_CHECKPOINT_STEPS", "often")
    with pytest.raises(ValueError, match="AUTOTIMM_LAST_CHECKPOINT_STEPS.*'often'"):
        _quiet()


def test_ckpt_path_last(tmp_path) -> None:
    trainer = _quiet(default_root_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ckpt_path='last': no last.ckpt under"):
        trainer.fit(torch.nn.Linear(1, 1), ckpt_path="last")
    old = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    new = tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    for i, path in enumerate((old, new)):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, ns=(i * 10**9, i * 10**9))
    (new.parent / ".last.ckpt.abc.tmp").write_bytes(b"partial")
    assert trainer._resolve_ckpt_path("last") == str(new)
    assert trainer._resolve_ckpt_path("best.ckpt") == "best.ckpt"


def test_a_given_checkpoint_io_is_kept() -> None:
    from lightning.fabric.plugins import TorchCheckpointIO
    from lightning.pytorch.strategies import SingleDeviceStrategy

    mine = TorchCheckpointIO()
    assert _quiet(plugins=[mine]).strategy.checkpoint_io is mine
    strategy = SingleDeviceStrategy(device="cpu", checkpoint_io=mine)
    assert _quiet(strategy=strategy).strategy.checkpoint_io is mine
