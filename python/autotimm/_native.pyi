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

# --- NMS (rust/src/py/nms.rs) -------------------------------------------------

def nms(
    boxes: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    scores: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    iou_threshold: float,
) -> npt.NDArray[np.int64]:
    """Greedy NMS, index-identical to ``torchvision.ops.nms`` on CPU.

    boxes [N, 4] xyxy and scores [N], C-contiguous, both float32 or both float64.
    Returns int64 [K] kept indices in decreasing score order (ties: lower index).
    Raises TypeError on other dtypes, ValueError on bad shapes, NaN/Inf values or
    a NaN threshold.
    """

def batched_nms(
    boxes: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    scores: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    idxs: npt.NDArray[np.int64],
    iou_threshold: float,
    num_threads: int = 1,
) -> npt.NDArray[np.int64]:
    """Per-class NMS, index-identical to ``torchvision.ops.batched_nms`` on CPU.

    As ``nms`` plus idxs [N] int64 class ids (C-contiguous). Up to 1000 boxes it
    reproduces torchvision's coordinate-offset trick, above it NMS per class.
    num_threads caps the worker threads for large inputs (0 = all cores).
    """
