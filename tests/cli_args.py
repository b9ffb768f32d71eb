"""Command-line pieces shared by the tests that run ``autotimm`` (in process or as a child)."""

from __future__ import annotations

import os
from pathlib import Path

TESTS_DIR = Path(__file__).parent

#: A tiny from-scratch detector: timm's test backbone, 16-channel FPN, one conv per branch.
TINY_MODEL_ARGS: tuple[str, ...] = (
    "--model.backbone", '{"model_name": "test_byobnet", "pretrained": false}',
    "--model.fpn_channels", "16",
    "--model.head_num_convs", "1",
)  # fmt: skip

#: CPU, no progress bar.
CPU_TRAINER_ARGS: tuple[str, ...] = (
    "--trainer.accelerator", "cpu",
    "--trainer.enable_progress_bar", "false",
)  # fmt: skip


def coco_data_args(root: Path, batch_size: int = 2, num_workers: int = 0) -> list[str]:
    """A COCO folder at 64 px."""
    return [
        "--data.data_dir", str(root),
        "--data.image_size", "64",
        "--data.batch_size", str(batch_size),
        "--data.num_workers", str(num_workers),
    ]  # fmt: skip


def child_env(**extra: str) -> dict[str, str]:
    """Environment of an ``autotimm`` child process: no banner, one OpenMP thread,
    the tests folder importable (for callbacks named by path)."""
    return {
        **os.environ,
        "AUTOTIMM_NO_BANNER": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }
