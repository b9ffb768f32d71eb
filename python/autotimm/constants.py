"""Detection defaults shared by the model, the ops and the data pipeline.

One fact in one place: every module that needs a default stride, regress range
or top-k reads it from here.
"""

from __future__ import annotations

import math

#: FPN output strides P3..P7.
DEFAULT_STRIDES: tuple[int, ...] = (8, 16, 32, 64, 128)

#: FCOS scale ranges per level, [lo, hi) on max(l, t, r, b) in pixels.
DEFAULT_REGRESS_RANGES: tuple[tuple[float, float], ...] = (
    (-1.0, 64.0),
    (64.0, 128.0),
    (128.0, 256.0),
    (256.0, 512.0),
    (512.0, math.inf),
)

#: Candidates kept per level before NMS (torchvision FCOS's ``topk_candidates``).
DEFAULT_PRE_NMS_TOP_K: int = 1000

#: Label of a point that is assigned to no box.
BACKGROUND: int = -1
