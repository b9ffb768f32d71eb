"""Reproducibility helpers."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int = 42, deterministic: bool = False) -> int:
    """Seed Python, NumPy and torch (CPU and CUDA) random generators.

    Parameters
    ----------
    seed : int
        The seed, also exported as ``PL_GLOBAL_SEED`` and ``PYTHONHASHSEED``.
    deterministic : bool
        If True, ask torch for deterministic algorithms (``warn_only``: ops
        without a deterministic kernel warn instead of failing), turn off the
        cuDNN benchmark and set ``CUBLAS_WORKSPACE_CONFIG``.

    Returns
    -------
    int
        The seed that was set.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} ({seed!r})")
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return seed
