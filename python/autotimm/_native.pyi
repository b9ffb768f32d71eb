"""Typed stub of the native extension ``autotimm._native``."""

import numpy as np
import numpy.typing as npt

# --- FCOS target assignment (rust/src/py/assign.rs) ---------------------------

def fcos_targets(
    boxes: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    strides: list[int],
    feature_sizes: list[tuple[int, int]],
    regress_ranges: list[tuple[float, float]],
    center_sampling_radius: float | None = None,
    num_classes: int | None = None,
    num_threads: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """FCOS targets of a batch: boxes [N, 4] of all images, labels [N], counts [B].

    Returns cls [B, P] int64 (-1 background), reg [B, P, 4] float32, ctr [B, P] float32.
    """
