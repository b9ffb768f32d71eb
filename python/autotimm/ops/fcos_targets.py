"""FCOS point-to-box target assignment for a whole batch in one call.

The rule is the seed's (AutoTimm ``ObjectDetector._compute_targets_per_level``),
evaluated for all images and all FPN levels at once:

* points sit at ``((x + 0.5) * stride, (y + 0.5) * stride)`` in float32, levels
  in stride order, points row-major within a level;
* a point is a candidate for a box when it lies strictly inside it (all four
  distances ``l, t, r, b`` > 0) and ``max(l, t, r, b)`` is in the level's
  half-open regress range ``[lo, hi)``; with ``center_sampling_radius`` it must
  also lie strictly inside the box's centre region (FCOS / mmdet
  ``center_sampling``: centre ± radius·stride, clipped to the box);
* among candidates the box with the smallest float32 area
  ``(x2 - x1) * (y2 - y1)`` wins, the lowest box index on equal areas; a box
  whose area overflows to ``inf`` is never assigned (as in the seed);
* targets: class = the box's label (``BACKGROUND`` = -1 elsewhere), regression
  = ``(l, t, r, b)`` in pixels (zeros for background), centerness =
  ``sqrt(min(l, r) / max(max(l, r), 1e-7) * min(t, b) / max(max(t, b), 1e-7))``
  (zero for background), every operation in float32 and the square root
  correctly rounded (IEEE; torch's CPU float32 ``sqrt`` can be 1 ulp off, so
  the torch path takes it in float64 and rounds back).

Zero-area boxes (``x1 == x2`` or ``y1 == y2``) are valid input but can never
contain a point strictly, so they are never assigned.

CPU inputs run on the native core (one call for the batch, GIL released, images
in parallel); CUDA inputs run the batched torch implementation, which is also
the reference the native path is tested against bit for bit.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from autotimm import _native
from autotimm.constants import BACKGROUND, DEFAULT_REGRESS_RANGES, DEFAULT_STRIDES
from autotimm.ops.boxes import level_points

__all__ = ["fcos_feature_sizes", "fcos_points", "fcos_targets"]

FcosTargets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

# The seed's centerness clamp (``max(l, r).clamp(min=1e-7)``), applied in float32.
_CENTERNESS_EPS = 1e-7


# --------------------------------------------------------------------------- #
# Argument checks (host-side metadata only: no device synchronisation)
# --------------------------------------------------------------------------- #
def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = (int(v) if isinstance(v, torch.Tensor) else v for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(
            f"image_size must be a pair (H, W) of positive ints, got {image_size!r}"
        ) from None
    if not (_is_int(height) and _is_int(width)) or height <= 0 or width <= 0:
        raise ValueError(
            f"image_size must be a pair (H, W) of positive ints, got {tuple(image_size)!r}"
        )
    return height, width


def _check_strides(strides: Sequence[int]) -> tuple[int, ...]:
    try:
        values = tuple(strides)
    except TypeError:
        raise ValueError(f"strides must be a sequence of positive ints, got {strides!r}") from None
    if not values or not all(_is_int(s) and s > 0 for s in values):
        raise ValueError(f"strides must be a non-empty sequence of positive ints, got {values!r}")
    return values


def _check_regress_ranges(
    regress_ranges: Sequence[tuple[float, float]] | None, num_levels: int
) -> tuple[tuple[float, float], ...]:
    if regress_ranges is None:
        if num_levels != len(DEFAULT_REGRESS_RANGES):
            raise ValueError(
                f"regress_ranges must be given for {num_levels} levels: the defaults cover "
                f"{len(DEFAULT_REGRESS_RANGES)} levels"
            )
        return DEFAULT_REGRESS_RANGES
    ranges = []
    for i, pair in enumerate(regress_ranges):
        try:
            lo, hi = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise ValueError(
                f"regress_ranges[{i}] must be a pair (lo, hi) of numbers, got {pair!r}"
            ) from None
        if math.isnan(lo) or math.isnan(hi) or not lo < hi:
            raise ValueError(f"regress_ranges[{i}] = ({lo}, {hi}): expected lo < hi, not NaN")
        ranges.append((lo, hi))
    if len(ranges) != num_levels:
        raise ValueError(f"regress_ranges has {len(ranges)} levels but strides has {num_levels}")
    return tuple(ranges)


def fcos_feature_sizes(
    image_size: Sequence[int], strides: Sequence[int] = DEFAULT_STRIDES
) -> list[tuple[int, int]]:
    """Feature-map sizes of an image: ``(ceil(H / s), ceil(W / s))`` per stride.

    Parameters
    ----------
    image_size : (int, int)
        ``(H, W)`` of the (padded) input image.
    strides : sequence of int
        FPN strides, one per level.

    Returns
    -------
    list of (int, int)
        ``(h, w)`` per level.
    """
    height, width = _check_image_size(image_size)
    return [(-(-height // s), -(-width // s)) for s in _check_strides(strides)]


def _check_feature_sizes(
    feature_sizes: Sequence[tuple[int, int]] | None,
    image_size: tuple[int, int],
    strides: tuple[int, ...],
) -> list[tuple[int, int]]:
    if feature_sizes is None:
        return fcos_feature_sizes(image_size, strides)
    height, width = image_size
    sizes = []
    for i, pair in enumerate(feature_sizes):
        try:
            h, w = (int(v) if isinstance(v, torch.Tensor) else v for v in pair)
        except (TypeError, ValueError):
            raise ValueError(
                f"feature_sizes[{i}] must be a pair (h, w) of ints, got {pair!r}"
            ) from None
        if not (_is_int(h) and _is_int(w)):
            raise ValueError(f"feature_sizes[{i}] must be a pair (h, w) of ints, got {pair!r}")
        sizes.append((h, w))
    if len(sizes) != len(strides):
        raise ValueError(f"feature_sizes has {len(sizes)} levels but strides has {len(strides)}")
    for i, ((h, w), s) in enumerate(zip(sizes, strides, strict=True)):
        # A feature map of stride s over an H x W image has floor(H/s) or ceil(H/s) rows.
        if not (height // s <= h <= -(-height // s) and width // s <= w <= -(-width // s)):
            raise ValueError(
                f"feature_sizes[{i}] = ({h}, {w}) does not match image_size ({height}, {width}) "
                f"at stride {s}: expected ({-(-height // s)}, {-(-width // s)}) (ceil) "
                f"or ({height // s}, {width // s}) (floor)"
            )
    return sizes


def _check_radius(center_sampling_radius: float | None) -> float | None:
    if center_sampling_radius is None:
        return None
    radius = float(center_sampling_radius)
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(
            "center_sampling_radius must be a positive finite number or None, "
            f"got {center_sampling_radius!r}"
        )
    return radius


def _check_targets(
    boxes: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], num_classes: int | None
) -> torch.device:
    if isinstance(boxes, torch.Tensor) or not isinstance(boxes, Sequence):
        raise TypeError(f"boxes must be a list of [N_i, 4] tensors, got {type(boxes).__name__}")
    if isinstance(labels, torch.Tensor) or not isinstance(labels, Sequence):
        raise TypeError(f"labels must be a list of [N_i] tensors, got {type(labels).__name__}")
    if len(boxes) != len(labels):
        raise ValueError(f"boxes has {len(boxes)} images but labels has {len(labels)}")
    if num_classes is not None and not (_is_int(num_classes) and num_classes > 0):
        raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
    device = None
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        if not isinstance(b, torch.Tensor):
            raise TypeError(f"boxes[{i}] must be a tensor, got {type(b).__name__}")
        if not isinstance(lab, torch.Tensor):
            raise TypeError(f"labels[{i}] must be a tensor, got {type(lab).__name__}")
        if not b.is_floating_point():
            raise TypeError(f"boxes[{i}] has dtype {b.dtype}; expected a floating dtype")
        if lab.dtype.is_floating_point or lab.dtype.is_complex or lab.dtype == torch.bool:
            raise TypeError(f"labels[{i}] has dtype {lab.dtype}; expected an integer dtype (int64)")
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes[{i}] has shape {tuple(b.shape)}; expected (N, 4)")
        if lab.dim() != 1 or lab.shape[0] != b.shape[0]:
            raise ValueError(
                f"labels[{i}] has shape {tuple(lab.shape)}; "
                f"expected ({b.shape[0]},) to match boxes[{i}]"
            )
        if device is None:
            device = b.device
        if b.device != device or lab.device != device:
            raise ValueError(
                f"boxes[{i}] / labels[{i}] are on {b.device} / {lab.device}; "
                f"expected all on {device}"
            )
    return device if device is not None else torch.device("cpu")


def _bad_value_message(
    boxes: torch.Tensor, labels: torch.Tensor, counts: list[int], num_classes: int | None
) -> str | None:
    """Describes the first invalid box or label of the concatenated batch (one host sync)."""
    finite = torch.isfinite(boxes).all(dim=1)
    ordered = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    label_ok = labels >= 0
    if num_classes is not None:
        label_ok &= labels < num_classes
    bad = ~(finite & ordered & label_ok)
    if not bool(bad.any()):
        return None
    first = int(bad.nonzero()[0, 0])
    image, acc = 0, 0
    while acc + counts[image] <= first:
        acc += counts[image]
        image += 1
    j = first - acc
    box = [float(v) for v in boxes[first].tolist()]
    # Same wording as the native core's errors.
    if not bool(finite[first]):
        return f"boxes: image {image}, box {j} = {box} is not finite"
    if not bool(ordered[first]):
        return f"boxes: image {image}, box {j} = {box} has x2 < x1 or y2 < y1 (expected xyxy)"
    bound = f"[0, {num_classes})" if num_classes is not None else "[0, inf)"
    return f"labels: image {image}, box {j} has label {int(labels[first])}, outside {bound}"


def _validate_values(
    boxes: list[torch.Tensor], labels: list[torch.Tensor], num_classes: int | None
) -> None:
    if boxes:
        counts = [b.shape[0] for b in boxes]
        message = _bad_value_message(torch.cat(boxes), torch.cat(labels), counts, num_classes)
        if message is not None:
            raise ValueError(message)


# --------------------------------------------------------------------------- #
# Points
# --------------------------------------------------------------------------- #
def _axis_table(
    lengths: list[int], strides: tuple[int, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell-centre coordinates of one axis for all levels, concatenated: values and level index."""
    total = sum(lengths)
    level = torch.repeat_interleave(
        torch.arange(len(lengths), device=device),
        torch.tensor(lengths, device=device),
        output_size=total,
    )
    offsets = torch.tensor([0, *lengths[:-1]], device=device).cumsum(0)
    local = torch.arange(total, device=device) - offsets[level]
    stride = torch.tensor(strides, dtype=torch.float32, device=device)[level]
    return (local.to(torch.float32) + 0.5) * stride, level


def _point_index(
    sizes: list[tuple[int, int]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per point (levels in order, row-major): its x-table index, y-table index and level."""
    counts = [h * w for h, w in sizes]
    total = sum(counts)
    level = torch.repeat_interleave(
        torch.arange(len(sizes), device=device),
        torch.tensor(counts, device=device),
        output_size=total,
    )
    offsets = torch.tensor([0, *counts[:-1]], device=device).cumsum(0)
    x_offsets = torch.tensor([0, *[w for _, w in sizes][:-1]], device=device).cumsum(0)
    y_offsets = torch.tensor([0, *[h for h, _ in sizes][:-1]], device=device).cumsum(0)
    widths = torch.tensor([w for _, w in sizes], device=device).clamp(min=1)[level]
    local = torch.arange(total, device=device) - offsets[level]
    xi = x_offsets[level] + torch.remainder(local, widths)
    yi = y_offsets[level] + torch.div(local, widths, rounding_mode="floor")
    return xi, yi, level


def fcos_points(
    image_size: Sequence[int],
    strides: Sequence[int] = DEFAULT_STRIDES,
    feature_sizes: Sequence[tuple[int, int]] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Point (cell-centre) coordinates of all levels, in the order of ``fcos_targets``.

    Parameters
    ----------
    image_size : (int, int)
        ``(H, W)`` of the (padded) input image.
    strides : sequence of int
        FPN strides, one per level.
    feature_sizes : sequence of (int, int), optional
        ``(h, w)`` per level; defaults to ``fcos_feature_sizes(image_size, strides)``.
    device : torch.device or str, optional
        Device of the result (CPU by default).

    Returns
    -------
    torch.Tensor
        ``[P, 2]`` float32 ``(x, y)`` with ``P = sum(h * w)``; levels in stride
        order, points row-major within a level, ``x = (i + 0.5) * stride``.
    """
    size = _check_image_size(image_size)
    strides_t = _check_strides(strides)
    sizes = _check_feature_sizes(feature_sizes, size, strides_t)
    return level_points(sizes, strides_t, device=device)


# --------------------------------------------------------------------------- #
# Batched torch implementation (CUDA path and test reference)
# --------------------------------------------------------------------------- #
def _axis_distances(
    coords: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    present: torch.Tensor,
    radius: torch.Tensor | None,
) -> torch.Tensor:
    """``max(near, far)`` of every axis coordinate to every box; ``inf`` where not strictly inside.

    coords [C] float32 cell centres of one axis (all levels), lo / hi [B, 1, G]
    the box's low / high edge on that axis, radius [C] the centre-sampling
    radius in pixels of each coordinate's level (or None). Returns [B, C, G].
    """
    c = coords.view(1, -1, 1)
    near = c - lo
    far = hi - c
    inside = (near > 0) & (far > 0) & present.unsqueeze(1)
    if radius is not None:
        # Centre region: centre ± radius, clipped to the box, as mmdet's FCOSHead does.
        r = radius.view(1, -1, 1)
        mid = (lo + hi) / 2
        inside &= (c - torch.maximum(mid - r, lo) > 0) & (torch.minimum(mid + r, hi) - c > 0)
    inf = torch.full((), math.inf, dtype=torch.float32, device=coords.device)
    return torch.where(inside, torch.maximum(near, far), inf)


class _Grid(NamedTuple):
    """Per-configuration tables of the torch path (on its device)."""

    xs: torch.Tensor  # [X] float32 cell-centre x of every level, concatenated
    ys: torch.Tensor  # [Y] float32 cell-centre y
    x_radius: torch.Tensor | None  # [X] float32 centre-sampling radius in pixels
    y_radius: torch.Tensor | None  # [Y]
    xi: torch.Tensor  # [P] int64 index of each point's x in xs
    yi: torch.Tensor  # [P] int64 index of each point's y in ys
    lo: torch.Tensor  # [P] float32 lower regress bound of each point's level
    hi: torch.Tensor  # [P] float32 upper regress bound


@functools.lru_cache(maxsize=32)
def _grid(
    strides: tuple[int, ...],
    sizes: tuple[tuple[int, int], ...],
    ranges: tuple[tuple[float, float], ...],
    radius: float | None,
    device: torch.device,
) -> _Grid:
    """Built on the CPU and copied to ``device`` once per configuration, so
    repeated calls on CUDA make no host-to-device copies (which would sync)."""
    cpu = torch.device("cpu")
    xs, x_level = _axis_table([w for _, w in sizes], strides, cpu)
    ys, y_level = _axis_table([h for h, _ in sizes], strides, cpu)
    xi, yi, level = _point_index(list(sizes), cpu)
    bounds = torch.tensor(ranges, dtype=torch.float32)[level]  # [P, 2]
    x_radius = y_radius = None
    if radius is not None:
        # stride * radius in float64, rounded once to float32 (as mmdet fills its tensor)
        per_level = torch.tensor([s * radius for s in strides], dtype=torch.float32)
        x_radius, y_radius = per_level[x_level].to(device), per_level[y_level].to(device)
    return _Grid(
        xs=xs.to(device),
        ys=ys.to(device),
        x_radius=x_radius,
        y_radius=y_radius,
        xi=xi.to(device),
        yi=yi.to(device),
        lo=bounds[:, 0].contiguous().to(device),
        hi=bounds[:, 1].contiguous().to(device),
    )


def _sqrt_f32(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float32 square root on every device.

    torch's float32 ``sqrt`` on CPU is not correctly rounded in current x86
    builds (about 1 in 5 results is 1 ulp off), while CUDA's and IEEE's (the
    native core's) are. The square root of a float32 taken in float64 and
    rounded back is the correctly rounded float32 result (53 >= 2 * 24 + 2 bits).
    """
    if x.device.type == "mps":  # no float64 there; its float32 sqrt is IEEE
        return torch.sqrt(x)
    return torch.sqrt(x.to(torch.float64)).to(torch.float32)


def _targets_torch(
    boxes: list[torch.Tensor],
    labels: list[torch.Tensor],
    strides: tuple[int, ...],
    ranges: tuple[tuple[float, float], ...],
    sizes: list[tuple[int, int]],
    radius: float | None,
    device: torch.device,
) -> FcosTargets:
    """All images and levels at once on ``[B, P, G]`` tensors (G = most boxes in an image).

    The grid of a level is the product of its x and y cell centres, so the
    per-axis parts of the rule (inside tests, ``max(l, r)``, ``max(t, b)``) are
    computed on ``[B, X, G]`` / ``[B, Y, G]`` and only their combination
    ``max(l, t, r, b)`` and the area argmin run over all points.
    """
    batch = len(boxes)
    grid = _grid(strides, tuple(sizes), ranges, radius, device)
    total = grid.xi.shape[0]
    num_boxes = max((b.shape[0] for b in boxes), default=0)
    if batch == 0 or num_boxes == 0 or total == 0:
        return (
            torch.full((batch, total), BACKGROUND, dtype=torch.int64, device=device),
            torch.zeros((batch, total, 4), dtype=torch.float32, device=device),
            torch.zeros((batch, total), dtype=torch.float32, device=device),
        )

    # Padded boxes [B, G, 4] / labels [B, G]; padding columns never match.
    gt = torch.nn.utils.rnn.pad_sequence(list(boxes), batch_first=True)
    gt_labels = torch.nn.utils.rnn.pad_sequence(
        list(labels), batch_first=True, padding_value=BACKGROUND
    )
    present = torch.nn.utils.rnn.pad_sequence(
        [torch.ones(b.shape[0], dtype=torch.bool, device=device) for b in boxes], batch_first=True
    )
    x1, y1, x2, y2 = (gt[..., k].unsqueeze(1) for k in range(4))  # [B, 1, G]

    dist_x = _axis_distances(grid.xs, x1, x2, present, grid.x_radius)  # [B, X, G]
    dist_y = _axis_distances(grid.ys, y1, y2, present, grid.y_radius)  # [B, Y, G]
    # max(l, t, r, b) per point and box; inf (never in [lo, hi)) where the point is outside.
    max_reg = torch.maximum(dist_x.index_select(1, grid.xi), dist_y.index_select(1, grid.yi))
    del dist_x, dist_y
    candidate = (max_reg >= grid.lo.view(1, -1, 1)) & (max_reg < grid.hi.view(1, -1, 1))
    del max_reg

    area = ((gt[..., 2] - gt[..., 0]) * (gt[..., 3] - gt[..., 1])).unsqueeze(1)  # [B, 1, G]
    inf = torch.full((), math.inf, dtype=torch.float32, device=device)
    min_area, best = torch.where(candidate, area, inf).min(dim=2)  # first index among equal minima
    del candidate
    assigned = min_area < math.inf  # [B, P]; an overflowing (inf) area never wins, as in the seed

    # The winner's distances, with the same float32 ops as the rule (so equal bits).
    chosen = gt.gather(1, best.unsqueeze(-1).expand(-1, -1, 4))  # [B, P, 4]
    px, py = grid.xs[grid.xi].view(1, -1), grid.ys[grid.yi].view(1, -1)
    left = px - chosen[..., 0]
    top = py - chosen[..., 1]
    right = chosen[..., 2] - px
    bottom = chosen[..., 3] - py
    zero = torch.zeros((), dtype=torch.float32, device=device)
    reg = torch.where(assigned.unsqueeze(-1), torch.stack([left, top, right, bottom], dim=-1), zero)

    lr_min, lr_max = torch.minimum(left, right), torch.maximum(left, right)
    tb_min, tb_max = torch.minimum(top, bottom), torch.maximum(top, bottom)
    ctr = _sqrt_f32(
        (lr_min / lr_max.clamp(min=_CENTERNESS_EPS)) * (tb_min / tb_max.clamp(min=_CENTERNESS_EPS))
    )
    ctr = torch.where(assigned, ctr, zero)

    background = torch.full((), BACKGROUND, dtype=torch.int64, device=device)
    cls = torch.where(assigned, gt_labels.gather(1, best), background)
    return cls, reg, ctr


# --------------------------------------------------------------------------- #
# Native implementation (CPU)
# --------------------------------------------------------------------------- #
def _targets_native(
    boxes: list[torch.Tensor],
    labels: list[torch.Tensor],
    strides: tuple[int, ...],
    ranges: tuple[tuple[float, float], ...],
    sizes: list[tuple[int, int]],
    radius: float | None,
    num_classes: int | None,
    num_threads: int,
) -> FcosTargets:
    """One native call for the batch: boxes concatenated, per-image counts; validates values."""
    counts = torch.tensor([b.shape[0] for b in boxes], dtype=torch.int64)
    flat_boxes = torch.cat(boxes) if boxes else torch.zeros((0, 4), dtype=torch.float32)
    flat_labels = torch.cat(labels) if labels else torch.zeros((0,), dtype=torch.int64)
    cls, reg, ctr = _native.fcos_targets(
        flat_boxes.numpy(),
        flat_labels.numpy(),
        counts.numpy(),
        list(strides),
        list(sizes),
        list(ranges),
        radius,
        num_classes,
        num_threads,
    )
    return torch.from_numpy(cls), torch.from_numpy(reg), torch.from_numpy(ctr)


# --------------------------------------------------------------------------- #
# Public entry point
# --------------------------------------------------------------------------- #
class _Args(NamedTuple):
    device: torch.device
    boxes: list[torch.Tensor]  # float32, contiguous, detached
    labels: list[torch.Tensor]  # int64, contiguous, detached
    strides: tuple[int, ...]
    ranges: tuple[tuple[float, float], ...]
    sizes: list[tuple[int, int]]
    radius: float | None


def _prepare(
    boxes: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    image_size: Sequence[int],
    strides: Sequence[int],
    regress_ranges: Sequence[tuple[float, float]] | None,
    feature_sizes: Sequence[tuple[int, int]] | None,
    center_sampling_radius: float | None,
    num_classes: int | None,
) -> _Args:
    device = _check_targets(boxes, labels, num_classes)
    size = _check_image_size(image_size)
    strides_t = _check_strides(strides)
    return _Args(
        device=device,
        boxes=[b.detach().to(torch.float32).contiguous() for b in boxes],
        labels=[lab.detach().to(torch.int64).contiguous() for lab in labels],
        strides=strides_t,
        ranges=_check_regress_ranges(regress_ranges, len(strides_t)),
        sizes=_check_feature_sizes(feature_sizes, size, strides_t),
        radius=_check_radius(center_sampling_radius),
    )


def fcos_targets(
    boxes: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    image_size: Sequence[int],
    strides: Sequence[int] = DEFAULT_STRIDES,
    regress_ranges: Sequence[tuple[float, float]] | None = None,
    feature_sizes: Sequence[tuple[int, int]] | None = None,
    center_sampling_radius: float | None = None,
    *,
    num_classes: int | None = None,
    validate: bool = True,
    num_threads: int | None = None,
) -> FcosTargets:
    """FCOS classification, regression and centerness targets for a batch.

    Parameters
    ----------
    boxes : list of torch.Tensor
        Per image, ``[N_i, 4]`` float boxes ``(x1, y1, x2, y2)`` in pixels (cast
        to float32). ``N_i`` may be 0 (all points background).
    labels : list of torch.Tensor
        Per image, ``[N_i]`` integer class ids ``>= 0`` (cast to int64).
    image_size : (int, int)
        ``(H, W)`` of the (padded) batch images.
    strides : sequence of int
        FPN strides, one per level (default ``DEFAULT_STRIDES``).
    regress_ranges : sequence of (float, float), optional
        Half-open ``[lo, hi)`` range of ``max(l, t, r, b)`` per level, compared
        in float32; ``None`` means ``DEFAULT_REGRESS_RANGES`` (5 levels).
    feature_sizes : sequence of (int, int), optional
        ``(h, w)`` per level; default ``(ceil(H / s), ceil(W / s))``. Each must
        be the floor or the ceiling of the image size over the stride.
    center_sampling_radius : float, optional
        If given, a point must also lie strictly inside the box's centre region
        (centre ± radius·stride, clipped to the box; FCOS / mmdet
        ``center_sampling``, usually 1.5). ``None`` (default) is the seed's rule.
    num_classes : int, optional
        If given, labels must also be ``< num_classes``.
    validate : bool
        Torch path only (CUDA): check box and label values (finite, ``x2 >= x1``,
        ``y2 >= y1``, labels in range) at the cost of one host synchronisation.
        Pass ``False`` in a training step to stay sync-free; invalid boxes then
        simply never match. The native (CPU) path always checks, for free.
        Shapes, dtypes and sizes are always checked.
    num_threads : int, optional
        Threads of the native path across images (default
        ``torch.get_num_threads()``, which is 1 in DataLoader workers; 1 runs
        without a thread pool; a forked child builds pools of its own).

    Returns
    -------
    cls : torch.Tensor
        ``[B, P]`` int64 class target, ``BACKGROUND`` (-1) where unassigned.
    reg : torch.Tensor
        ``[B, P, 4]`` float32 ``(l, t, r, b)`` distances in pixels, zeros where
        unassigned.
    ctr : torch.Tensor
        ``[B, P]`` float32 centerness target, zero where unassigned.

    ``P = sum(h * w)`` over levels in stride order, points row-major within a
    level (the order of ``fcos_points``). Results are on the device of the boxes.

    Raises
    ------
    ValueError
        Wrong shapes, non-finite or inverted boxes, negative (or ``>=
        num_classes``) labels, boxes / labels of different lengths, mismatched
        strides / ranges / feature sizes / image size.
    TypeError
        Non-tensor inputs, non-float boxes or non-integer labels.

    Examples
    --------
    >>> cls, reg, ctr = fcos_targets([torch.tensor([[8.0, 8.0, 40.0, 24.0]])],
    ...                              [torch.tensor([2])], (64, 64))
    >>> cls.shape, reg.shape, int((cls >= 0).sum())
    (torch.Size([1, 86]), torch.Size([1, 86, 4]), 8)
    """
    args = _prepare(
        boxes, labels, image_size, strides, regress_ranges, feature_sizes,
        center_sampling_radius, num_classes,
    )  # fmt: skip
    if num_threads is not None and not (_is_int(num_threads) and num_threads >= 0):
        raise ValueError(f"num_threads must be a non-negative int or None, got {num_threads!r}")
    if args.device.type == "cpu":
        threads = torch.get_num_threads() if num_threads is None else num_threads
        return _targets_native(
            args.boxes, args.labels, args.strides, args.ranges, args.sizes, args.radius,
            num_classes, threads,
        )  # fmt: skip
    if validate:
        _validate_values(args.boxes, args.labels, num_classes)
    return _targets_torch(
        args.boxes, args.labels, args.strides, args.ranges, args.sizes, args.radius, args.device
    )


def _fcos_targets_torch(
    boxes: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    image_size: Sequence[int],
    strides: Sequence[int] = DEFAULT_STRIDES,
    regress_ranges: Sequence[tuple[float, float]] | None = None,
    feature_sizes: Sequence[tuple[int, int]] | None = None,
    center_sampling_radius: float | None = None,
    *,
    num_classes: int | None = None,
    validate: bool = True,
) -> FcosTargets:
    """``fcos_targets`` on the batched torch path on any device (the test reference)."""
    args = _prepare(
        boxes, labels, image_size, strides, regress_ranges, feature_sizes,
        center_sampling_radius, num_classes,
    )  # fmt: skip
    if validate:
        _validate_values(args.boxes, args.labels, num_classes)
    return _targets_torch(
        args.boxes, args.labels, args.strides, args.ranges, args.sizes, args.radius, args.device
    )
