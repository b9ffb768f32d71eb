"""Typed stub of the native extension ``autotimm._native``.

Every array argument is checked for dtype (``TypeError``) and shape
(``ValueError``), with the argument's name in the message; arrays in another
layout (Fortran order, strided views) are read in logical order. An allocation
sized from the input that cannot be made raises ``MemoryError`` naming the
input. ``num_threads=0`` means the available cores, capped by the
``AUTOTIMM_NUM_THREADS`` environment variable; parallel work runs in thread
pools owned per process, so the functions also work in forked children.
"""

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
    MemoryError naming ``feature_sizes`` when the B * P targets cannot be allocated.
    """

# --- Channels-last BatchNorm sums (rust/src/py/batchnorm.rs) -------------------

def batch_norm_moments(
    x: npt.NDArray[np.float32], num_threads: int = 0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-channel mean and biased variance of x (rows, C) float32 (an NHWC
    tensor's values as rows), summed in float64 (shifted by the first row).

    Returns (mean [C], var [C]) float64; NaN/Inf propagate to their channel.
    Independent of num_threads (fixed chunks, added in order).
    """

def batch_norm_grad_sums(
    grad: npt.NDArray[np.float32],
    x: npt.NDArray[np.float32],
    mean: npt.NDArray[np.float64],
    num_threads: int = 0,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-channel sums of BatchNorm's output gradient: grad and x (rows, C)
    float32, the batch's mean [C] float64.

    Returns (sum_grad [C], sum_grad_centered [C]) float64: Σ g and Σ g·(x − mean),
    the bias gradient and (times invstd) the weight gradient.
    """

# --- NMS (rust/src/py/nms.rs) -------------------------------------------------

def nms(
    boxes: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    scores: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    iou_threshold: float,
) -> npt.NDArray[np.int64]:
    """Greedy NMS, index-identical to ``torchvision.ops.nms`` on CPU.

    boxes [N, 4] xyxy and scores [N], both float32 or both float64.
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
    by_index: bool = False,
) -> npt.NDArray[np.int64]:
    """Per-class NMS, index-identical to ``torchvision.ops.batched_nms`` on CPU.

    As ``nms`` plus idxs [N] int64 class ids. Up to 1000 boxes it reproduces
    torchvision's coordinate-offset trick, above it NMS per class; kept indices
    come in decreasing score order, ties by lower index (``autotimm.ops``
    reorders ties above 1000 boxes as torchvision does); with ``by_index`` in
    ascending index order. num_threads caps the worker threads for large inputs.
    """

# --- COCO bbox evaluation (rust/src/py/coco.rs) -------------------------------

def coco_load_ground_truth(path: str) -> dict[str, object]:
    """Reads a COCO ground-truth file into columns.

    Keys: ``image_ids`` int64 [I], ``categories`` (list of dicts with id, name,
    supercategory), and per annotation ``id``, ``image_id``, ``category_id``
    int64 [N], ``bbox`` float64 [N, 4] xywh, ``area`` float64 [N] (w*h when
    absent), ``iscrowd`` uint8 [N]; with string image ids also ``image_names``
    (sorted; every image id is an index into it). Reads NaN/Infinity numbers,
    integral float ids and boxes of more than four numbers (the first four).
    FileNotFoundError if missing; ValueError naming the file, the record, the
    key and what was expected if malformed.
    """

def coco_load_results(path: str, num_threads: int = 0) -> dict[str, object]:
    """Reads a COCO result file with ``loadRes`` semantics (id from 1, area = w*h,
    iscrowd 0): ``id``, ``image_id``, ``category_id``, ``bbox`` [N, 4], ``area``,
    ``iscrowd``, ``score``, and ``image_names`` for string image ids (as
    ``coco_load_ground_truth``). Large files are parsed on ``num_threads``."""

def coco_evaluate(
    gt_id: npt.NDArray[np.int64],
    gt_image_id: npt.NDArray[np.int64],
    gt_category_id: npt.NDArray[np.int64],
    gt_bbox: npt.NDArray[np.float64],
    gt_area: npt.NDArray[np.float64],
    gt_iscrowd: npt.NDArray[np.uint8],
    dt_id: npt.NDArray[np.int64],
    dt_image_id: npt.NDArray[np.int64],
    dt_category_id: npt.NDArray[np.int64],
    dt_bbox: npt.NDArray[np.float64],
    dt_area: npt.NDArray[np.float64],
    dt_score: npt.NDArray[np.float64],
    img_ids: npt.NDArray[np.int64],
    cat_ids: npt.NDArray[np.int64] | None,
    iou_thrs: npt.NDArray[np.float64],
    area_rng: npt.NDArray[np.float64],
    max_det: int,
    use_cats: bool,
    num_threads: int = 0,
) -> dict[str, npt.NDArray[np.generic]]:
    """pycocotools' per image and category matching (bbox), GIL released.

    Returns records: ``dt_image``, ``dt_category``, ``dt_rank`` int64 [n],
    ``dt_score`` float64 [n], ``dt_flags`` uint8 [n, A*T] (0 false positive,
    1 true positive, 2 ignored), ``gt_image``, ``gt_category`` int64 [m],
    ``gt_count`` int64 [m, A] (non-ignored ground truth per area range).
    """

def coco_accumulate(
    dt_image: npt.NDArray[np.int64],
    dt_category: npt.NDArray[np.int64],
    dt_rank: npt.NDArray[np.int64],
    dt_score: npt.NDArray[np.float64],
    dt_flags: npt.NDArray[np.uint8],
    gt_category: npt.NDArray[np.int64],
    gt_count: npt.NDArray[np.int64],
    cat_ids: npt.NDArray[np.int64],
    num_iou: int,
    rec_thrs: npt.NDArray[np.float64],
    max_dets: list[int],
    num_threads: int = 0,
    with_scores: bool = True,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """pycocotools' ``accumulate``: precision [T, R, K, A, M], recall [T, K, A, M],
    scores [T, R, K, A, M] (-1 where a category has no ground truth; an empty
    array when ``with_scores`` is false)."""

def coco_summarize(
    precision: npt.NDArray[np.float64],
    recall: npt.NDArray[np.float64],
    iou_thrs: npt.NDArray[np.float64],
    area_lbls: list[str],
    max_dets: list[int],
) -> list[float]:
    """pycocotools' 12 bbox summary statistics (-1 where undefined)."""

def coco_missing_ids(
    ids: npt.NDArray[np.int64], allowed: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Up to 20 distinct ``ids`` that are not in ``allowed`` (first-seen order)."""
