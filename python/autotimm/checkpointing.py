"""Checkpoints a training run can resume from after being killed.

- :class:`AtomicCheckpointIO` writes each checkpoint to a temporary file in the
  same folder, ``fsync``\\ s it and renames it over the target (``os.replace``):
  a kill at any moment leaves either the previous file or the new one, never a
  truncated one. A leftover temporary file (``.last.ckpt.*.tmp``) is never read.
- :class:`LastCheckpoint` keeps ``last.ckpt`` every
  :data:`LAST_CHECKPOINT_EVERY_N_STEPS` training steps and at the end of every
  epoch, so a killed run loses at most that many steps.
- :class:`ResumeCallback` saves the global random generators (torch CPU and
  CUDA, NumPy, Python) in every checkpoint and restores them, and the training
  loader's position, when training resumes. With the data module's resumable
  loader (:mod:`autotimm.data.resumable`) a resumed run continues exactly as the
  uninterrupted run would have.
- :func:`resolve_last_checkpoint` finds the run's ``last.ckpt`` for
  ``ckpt_path="last"`` (``autotimm fit --ckpt_path last``).

Where runs write: ``<default_root_dir>/<logger name>/version_<N>/checkpoints/``
with a logger (the ``autotimm`` command: ``autotimm_runs/lightning_logs/
version_<N>/checkpoints/``), ``<default_root_dir>/checkpoints/`` without one.
A resumed run writes into a new ``version_<N+1>``; ``"last"`` is always the most
recently written ``last.ckpt``.
"""

from __future__ import annotations

import os
import random
import secrets
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

__all__ = [
    "LAST_CHECKPOINT_EVERY_N_STEPS",
    "LAST_CHECKPOINT_STEPS_ENV",
    "AtomicCheckpointIO",
    "LastCheckpoint",
    "ResumeCallback",
    "last_checkpoint_every_n_steps",
    "resolve_last_checkpoint",
]

#: Training steps between two writes of ``last.ckpt`` (it is also written every epoch).
LAST_CHECKPOINT_EVERY_N_STEPS: int = 50
#: Environment variable overriding :data:`LAST_CHECKPOINT_EVERY_N_STEPS` (0: epochs only).
LAST_CHECKPOINT_STEPS_ENV: str = "AUTOTIMM_LAST_CHECKPOINT_STEPS"
#: Suffix of the temporary files of :class:`AtomicCheckpointIO`.
TEMP_SUFFIX: str = ".tmp"
_LAST_NAME = ModelCheckpoint.CHECKPOINT_NAME_LAST + ModelCheckpoint.FILE_EXTENSION


def _is_local(path: str | os.PathLike[str]) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file beside the target, ``fsync``, ``os.replace``.

    Remote paths (``s3://`` …) are written by Lightning's ``TorchCheckpointIO``.
    """

    def save_checkpoint(
        self,
        checkpoint: dict[str, Any],
        path: str | os.PathLike[str],
        storage_options: Any | None = None,
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                "AtomicCheckpointIO.save_checkpoint takes no storage_options, got "
                f"{storage_options!r}"
            )
        if not _is_local(path):
            super().save_checkpoint(checkpoint, path)
            return
        target = Path(str(path).removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        # a new name of our own ("x": never another's file), created with the umask's mode
        tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            with open(tmp, "xb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        _remove_stale_temps(target)


def _remove_stale_temps(target: Path) -> None:
    """Temporary files of ``target`` left by a killed process (ours was renamed)."""
    for stale in target.parent.glob(f".{target.name}.*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


def last_checkpoint_every_n_steps() -> int:
    """:data:`LAST_CHECKPOINT_EVERY_N_STEPS`, or the value of :data:`LAST_CHECKPOINT_STEPS_ENV`."""
    raw = os.environ.get(LAST_CHECKPOINT_STEPS_ENV)
    if raw is None or raw.strip() == "":
        return LAST_CHECKPOINT_EVERY_N_STEPS
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(
            f"{LAST_CHECKPOINT_STEPS_ENV} must be an integer >= 0 (0: every epoch only), "
            f"got {raw!r}"
        )
    return value


class LastCheckpoint(ModelCheckpoint):
    """A ``ModelCheckpoint`` that only keeps ``last.ckpt``: every ``every_n_steps``
    training steps (0: never) and at the end of every training epoch (after its
    validation).

    Parameters
    ----------
    dirpath:
        Folder (``None`` → Lightning's: the logger's ``checkpoints/`` folder).
    every_n_steps:
        Step interval (``None`` → :func:`last_checkpoint_every_n_steps`).
    """

    def __init__(
        self, dirpath: str | os.PathLike[str] | None = None, every_n_steps: int | None = None
    ) -> None:
        steps = last_checkpoint_every_n_steps() if every_n_steps is None else int(every_n_steps)
        if steps < 0:
            raise ValueError(f"every_n_steps must be >= 0, got {every_n_steps!r}")
        super().__init__(
            dirpath=dirpath,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=steps,
            enable_version_counter=False,
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # Also when a step interval saved at this step: that copy predates the validation.
        if trainer.fast_dev_run or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def resolve_last_checkpoint(*search_dirs: str | os.PathLike[str] | None) -> Path:
    """The most recently written ``last.ckpt`` under the given folders (recursively).

    Parameters
    ----------
    *search_dirs:
        Folders to search (``None`` entries are skipped).

    Raises
    ------
    FileNotFoundError
        When there is none, naming the folders searched.
    """
    dirs = [Path(d) for d in search_dirs if d is not None]
    found: set[Path] = set()
    for directory in dirs:
        if directory.is_dir():
            found.update(p for p in directory.rglob(_LAST_NAME) if p.is_file())
    if not found:
        searched = ", ".join(str(d) for d in dirs) or "(no folder)"
        raise FileNotFoundError(
            f"ckpt_path='last': no {_LAST_NAME} under {searched}. Runs write it to "
            f"<default_root_dir>/<logger name>/version_<N>/checkpoints/{_LAST_NAME} (with a "
            f"logger) or <default_root_dir>/checkpoints/{_LAST_NAME}; train without "
            "ckpt_path first, or pass a checkpoint file."
        )
    return max(found, key=lambda p: (p.stat().st_mtime_ns, str(p)))


class ResumeCallback(Callback):
    """Saves the global random generators in checkpoints; on resume restores them and
    the training loader's position.

    Saved: torch's CPU generator, the CUDA generators (when CUDA is initialised),
    NumPy's global ``RandomState`` and Python's ``random``, as tensors and plain
    numbers (loadable with ``weights_only=True``). Restored at ``on_train_start``:
    after Lightning has restored the model, optimizer, scheduler and loops, after
    the sanity check, and before the first training batch is loaded.

    The loader position (``state_dict`` of a stateful loader such as
    :class:`autotimm.data.resumable.ResumableDataLoader`) is saved by Lightning
    but not restored when the loader was created before the loops were restored,
    which is the case whenever ``configure_optimizers`` reads
    ``trainer.estimated_stepping_batches`` (the detector's cosine and one-cycle
    schedules do); it is applied here then.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return "ResumeState"

    def state_dict(self) -> dict[str, Any]:
        np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        version, py_internal, py_gauss = random.getstate()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "name": str(np_name),
                "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
                "pos": int(np_pos),
                "has_gauss": int(np_has_gauss),
                "cached_gaussian": float(np_gauss),
            },
            "python": {
                "version": int(version),
                "internal": torch.tensor(py_internal, dtype=torch.int64),
                "gauss": py_gauss,
            },
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        load_loader_states = getattr(trainer.fit_loop, "_load_combined_loader_states", None)
        if callable(load_loader_states):  # a no-op when Lightning has applied them
            load_loader_states()
        state, self._pending = self._pending, None
        if state is not None:
            _set_rng_state(state)


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py_state = state["python"]
    random.setstate(
        (
            py_state["version"],
            tuple(int(v) for v in py_state["internal"].tolist()),
            py_state["gauss"],
        )
    )
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
