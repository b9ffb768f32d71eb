"""A run killed with SIGKILL mid-epoch resumes with ``--ckpt_path last`` and ends with
the same weights, optimizer and scheduler state as a run that was never interrupted.

``autotimm fit`` runs as a subprocess on a tiny COCO folder of the embedded shapes
(12 training images of 64 pixels, batch 2: 6 steps per epoch, 2 epochs) with
timm's ``test_byobnet`` backbone and the default augmentation (random flip and
colour jitter), ``last.ckpt`` every 2 steps. The killed run uses 2 loader worker
processes, the others none: the per-sample seeds make the batches independent of
the workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_args import CPU_TRAINER_ARGS, TINY_MODEL_ARGS, child_env, coco_data_args
from lightning.pytorch.callbacks import Callback

from autotimm.checkpointing import LAST_CHECKPOINT_STEPS_ENV
from autotimm.data.shapes import write_shapes_coco

STEPS_PER_EPOCH = 6
KILL_AT_STEP = 9  # epoch 1, batch 3; last.ckpt is at step 8


class KillAtStep(Callback):
    """SIGKILLs its own process at the end of training step ``step`` (before the
    checkpoint callbacks of that step run: Lightning calls them last)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    return write_shapes_coco(
        tmp_path_factory.mktemp("shapes"),
        num_train=2 * STEPS_PER_EPOCH,
        num_val=4,
        image_size=64,
        min_size=10,
        max_size=30,
    )


def _fit(
    coco_root: Path, root: Path, *extra: str, num_workers: int = 0
) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "autotimm",
        "fit",
        *TINY_MODEL_ARGS,
        "--model.lr",
        "0.01",
        *coco_data_args(coco_root, num_workers=num_workers),
        "--data.augmentation_preset",
        "default",
        "--trainer.max_epochs",
        "2",
        *CPU_TRAINER_ARGS,
        "--trainer.default_root_dir",
        str(root),
        "--max_images",
        "0",
        *extra,
    ]
    env = child_env(**{LAST_CHECKPOINT_STEPS_ENV: "2"})
    root.mkdir(exist_ok=True)
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root
    )


def _wait(proc: subprocess.Popen) -> tuple[int, str]:
    """Exit status and the end of stderr."""
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err[-3000:]


def _last(root: Path) -> dict[str, Any]:
    [path] = sorted(root.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime_ns)[-1:]
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_equal(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(coco_root, tmp_path) -> None:
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    uninterrupted = _fit(coco_root, straight)
    killed = _fit(
        coco_root,
        broken,
        "--trainer.callbacks+=test_resume.KillAtStep",
        f"--trainer.callbacks.step={KILL_AT_STEP}",
        num_workers=2,
    )
    code, err = _wait(uninterrupted)
    assert code == 0, err
    reference = _last(straight)
    assert reference["global_step"] == 2 * STEPS_PER_EPOCH

    code, err = _wait(killed)
    assert code == -signal.SIGKILL, err
    interrupted = _last(broken)
    assert interrupted["global_step"] == KILL_AT_STEP - 1
    assert interrupted["epoch"] == 1  # mid-epoch: batch 2 of 6 of the second epoch
    assert "ResumeState" in interrupted["callbacks"]

    code, err = _wait(_fit(coco_root, broken, "--ckpt_path", "last"))
    assert code == 0, err
    assert "not resumable" not in err
    resumed = _last(broken)
    assert resumed["global_step"] == reference["global_step"]
    _assert_equal(resumed["state_dict"], reference["state_dict"], "state_dict")
    _assert_equal(resumed["optimizer_states"], reference["optimizer_states"], "optimizer")
    _assert_equal(resumed["lr_schedulers"], reference["lr_schedulers"], "lr_schedulers")


_SLOW_WRITER = """
import sys, time
import torch
from autotimm.checkpointing import AtomicCheckpointIO

io = AtomicCheckpointIO()
io.save_checkpoint({"step": 1, "w": torch.ones(3)}, sys.argv[1])

def slow_save(obj, fh):
    fh.write(b"partial" * 1000)
    fh.flush()
    print("writing", flush=True)
    time.sleep(120)

torch.save = slow_save
io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, sys.argv[1])
"""


def test_kill_during_checkpoint_write_keeps_the_previous_file(tmp_path) -> None:
    from autotimm.checkpointing import AtomicCheckpointIO, resolve_last_checkpoint

    target = tmp_path / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    [partial] = list(target.parent.glob(".last.ckpt.*.tmp"))
    assert partial.stat().st_size == 7000
    saved = torch.load(target, weights_only=True)
    assert saved["step"] == 1 and torch.equal(saved["w"], torch.ones(3))
    assert resolve_last_checkpoint(tmp_path) == target

    AtomicCheckpointIO().save_checkpoint({"step": 3}, target)  # clears the stale file
    assert torch.load(target, weights_only=True) == {"step": 3}
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


def test_failed_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch) -> None:
    from autotimm.checkpointing import AtomicCheckpointIO

    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, target)
    plain = tmp_path.parent / f"{tmp_path.name}-plain.ckpt"
    torch.save({"step": 1}, plain)
    assert target.stat().st_mode == plain.stat().st_mode  # the umask's, as torch.save

    def failing_save(obj: Any, fh: Any) -> None:
        fh.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    with pytest.raises(TypeError, match="storage_options"):
        io.save_checkpoint({"step": 2}, target, storage_options={"x": 1})


# --------------------------------------------------------------------------- #
# The parts, without training
# --------------------------------------------------------------------------- #
class _Items(torch.utils.data.Dataset):
    """Item ``i`` is ``(i, a random draw)``: the draw shows the seed it was loaded under."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> tuple[int, float]:
        return index, float(torch.rand(()))


def _batches(loader: Any) -> list[list[tuple[int, float]]]:
    return [[(int(i), float(r)) for i, r in zip(*batch, strict=True)] for batch in loader]


def test_loader_resumes_mid_epoch_with_the_same_items() -> None:
    from autotimm.data.resumable import resumable_loader

    def loader(num_workers: int = 0) -> Any:
        return resumable_loader(_Items(), seed=3, batch_size=3, num_workers=num_workers)

    full = loader()
    full.sampler.set_epoch(2)
    epoch2 = _batches(full)
    assert len(full) == 4 and sorted(i for b in epoch2 for i, _ in b) == list(range(10))
    full.sampler.set_epoch(1)
    assert _batches(full) != epoch2  # another permutation and other draws

    it = iter(full)
    full.sampler.set_epoch(2)
    next(it)
    next(it)
    state = full.state_dict()
    assert state == {"epoch": 2, "batches": 2, "seed": 3}

    resumed = resumable_loader(_Items(), seed=5, batch_size=3, num_workers=2)
    resumed.load_state_dict(state)  # the saved seed wins
    resumed.sampler.set_epoch(2)
    assert _batches(resumed) == epoch2[2:]  # same items, same draws, other workers
    assert resumed.state_dict() == {"epoch": 2, "batches": 4, "seed": 3}
    resumed.sampler.set_epoch(2)
    assert _batches(resumed) == epoch2  # the skip applies once

    other = loader()
    other.load_state_dict({"epoch": 1, "batches": 4})  # an epoch that has ended
    other.sampler.set_epoch(2)
    assert _batches(other) == epoch2


def test_loader_slices_per_process() -> None:
    from autotimm.data.resumable import resumable_loader

    parts = [
        resumable_loader(_Items(), num_replicas=2, rank=rank, seed=0, batch_size=5)
        for rank in (0, 1)
    ]
    seen = [i for part in parts for batch in _batches(part) for i, _ in batch]
    assert sorted(seen) == list(range(10))
    with pytest.raises(TypeError, match="resumable_loader sets 'shuffle' itself"):
        resumable_loader(_Items(), shuffle=True)


def test_random_generators_are_restored_at_train_start() -> None:
    import random

    import numpy as np

    from autotimm.checkpointing import ResumeCallback

    saver = ResumeCallback()
    state = torch.load(_roundtrip(saver.state_dict()), weights_only=True)
    expected = (torch.rand(2), np.random.rand(2), random.random())
    restorer = ResumeCallback()
    restorer.load_state_dict(state)

    class _FitLoop:
        def _load_combined_loader_states(self) -> None:
            self.loaded = True

    class _Trainer:
        fit_loop = _FitLoop()

    restorer.on_train_start(_Trainer(), None)  # type: ignore[arg-type]
    assert _Trainer.fit_loop.loaded
    assert torch.equal(torch.rand(2), expected[0])
    assert np.array_equal(np.random.rand(2), expected[1])
    assert random.random() == expected[2]


def _roundtrip(obj: Any) -> Any:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer
