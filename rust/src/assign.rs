//! FCOS point-to-box target assignment (pure Rust).
//!
//! The rule is the seed's (`ObjectDetector._compute_targets_per_level`),
//! evaluated for every image and every FPN level of a batch in one call:
//!
//! * the points of a level with stride `s` and an `h x w` feature map sit at
//!   `((x + 0.5) * s, (y + 0.5) * s)` (float32); levels are concatenated in
//!   order, points row-major within a level;
//! * point `p` is a candidate for box `g` when `l, t, r, b` (float32
//!   `px - x1, py - y1, x2 - px, y2 - py`) are all `> 0` and
//!   `max(l, t, r, b)` lies in the level's half-open range `[lo, hi)`; with a
//!   centre-sampling radius the point must also lie strictly inside the box's
//!   centre region (centre ± radius·stride clipped to the box, as mmdet);
//! * among the candidates the box with the smallest float32 area
//!   `(x2 - x1) * (y2 - y1)` wins, the lowest index on equal areas; a box whose
//!   area is `inf` never wins (the seed masks non-candidates with `inf` and
//!   requires `min < inf`);
//! * targets: class = label of the winner (`-1` elsewhere), regression =
//!   `(l, t, r, b)` (zeros elsewhere), centerness =
//!   `sqrt(min(l, r) / max(max(l, r), 1e-7) * min(t, b) / max(max(t, b), 1e-7))`
//!   (zero elsewhere).
//!
//! Every value is computed with the same float32 operations as the torch
//! reference, so results are bit-identical. Instead of the dense `P x G` test
//! each box only visits the points of the rectangle that can pass the rule on
//! each level (inside the box and within `hi` of its far edges); the exact
//! per-point test then decides. The x half of the test (`l, r > 0`,
//! `max(l, r) < hi`, centre region) is done once per column and the y half once
//! per row, so a point costs one `max` and a compare. Boxes are visited in index
//! order and replace the current winner only on a strictly smaller area, which
//! gives the first-index tie-break.

use rayon::prelude::*;

use crate::alloc;
use crate::error::{Error, Result};
use crate::parallel;

/// Label of a point assigned to no box.
pub const BACKGROUND: i64 = -1;

/// The seed's centerness clamp, `max(l, r).clamp(min=1e-7)` in float32.
const CENTERNESS_EPS: f32 = 1e-7;

/// One FPN level: stride, feature-map size and the `[lo, hi)` range of
/// `max(l, t, r, b)` it is responsible for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    pub stride: u32,
    pub height: usize,
    pub width: usize,
    pub lo: f32,
    pub hi: f32,
}

impl Level {
    fn num_points(&self) -> Option<usize> {
        self.height.checked_mul(self.width)
    }

    /// Cell-centre coordinate of index `i`, as torch computes it.
    #[inline]
    fn centre(&self, i: usize) -> f32 {
        (i as f32 + 0.5) * self.stride as f32
    }
}

/// Options of the rule beyond the levels.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Options {
    /// Centre-sampling radius in strides (`None`: off, the seed's rule).
    pub center_sampling_radius: Option<f64>,
    /// If set, labels must be `< num_classes`.
    pub num_classes: Option<i64>,
    /// Worker threads across images (0: the available cores capped by
    /// `AUTOTIMM_NUM_THREADS`, 1: no rayon at all).
    pub num_threads: usize,
}

/// Targets of a batch: `cls [B, P]`, `reg [B, P, 4]`, `ctr [B, P]`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub num_images: usize,
    pub num_points: usize,
    pub cls: Vec<i64>,
    pub reg: Vec<f32>,
    pub ctr: Vec<f32>,
}

/// One image's output slices: index, then `cls`, `reg`, `ctr`.
type ImageChunk<'a> = (usize, ((&'a mut [i64], &'a mut [f32]), &'a mut [f32]));

/// FCOS targets for a batch.
///
/// `boxes` holds the `[N, 4]` xyxy boxes of all images concatenated
/// (row-major, `4 * N` values), `labels` their `N` labels and `counts` the
/// number of boxes of each image (summing to `N`).
pub fn fcos_targets(
    boxes: &[f32],
    labels: &[i64],
    counts: &[i64],
    levels: &[Level],
    options: &Options,
) -> Result<Targets> {
    let starts = check_inputs(boxes, labels, counts, levels, options)?;
    let num_images = counts.len();
    let num_points = levels
        .iter()
        .try_fold(0usize, |acc, l| acc.checked_add(l.num_points()?))
        .ok_or_else(|| Error::value("feature_sizes", "the number of points overflows"))?;
    let total = alloc::product("feature_sizes", &[num_images, num_points])?;
    let mut cls = alloc::filled("feature_sizes", total, BACKGROUND)?;
    let mut reg = alloc::filled(
        "feature_sizes",
        alloc::product("feature_sizes", &[total, 4])?,
        0.0f32,
    )?;
    let mut ctr = alloc::filled("feature_sizes", total, 0.0f32)?;
    if num_points > 0 && num_images > 0 {
        let radius = options.center_sampling_radius;
        let image = |(i, ((cls, reg), ctr)): ImageChunk<'_>| {
            let (a, b) = (starts[i], starts[i + 1]);
            assign_image(
                &boxes[4 * a..4 * b],
                &labels[a..b],
                levels,
                radius,
                cls,
                reg,
                ctr,
            );
        };
        let chunks = cls
            .chunks_mut(num_points)
            .zip(reg.chunks_mut(4 * num_points))
            .zip(ctr.chunks_mut(num_points));
        if options.num_threads == 1 || num_images == 1 {
            // No rayon at all: safe in forked DataLoader workers.
            chunks.enumerate().for_each(image);
        } else {
            parallel::with_threads(options.num_threads, || {
                cls.par_chunks_mut(num_points)
                    .zip(reg.par_chunks_mut(4 * num_points))
                    .zip(ctr.par_chunks_mut(num_points))
                    .enumerate()
                    .for_each(image);
            })?;
        }
    }
    Ok(Targets {
        num_images,
        num_points,
        cls,
        reg,
        ctr,
    })
}

/// Validates everything and returns the first box index of each image (plus the end).
fn check_inputs(
    boxes: &[f32],
    labels: &[i64],
    counts: &[i64],
    levels: &[Level],
    options: &Options,
) -> Result<Vec<usize>> {
    if boxes.len() != 4 * labels.len() {
        return Err(Error::shape(
            "boxes",
            format!("({} values)", boxes.len()),
            format!("({}, 4) to match labels", labels.len()),
        ));
    }
    let mut starts = Vec::with_capacity(counts.len() + 1);
    let mut acc = 0usize;
    starts.push(0);
    for (i, &c) in counts.iter().enumerate() {
        let c = usize::try_from(c)
            .map_err(|_| Error::value("counts", format!("image {i} has a negative count {c}")))?;
        if c >= NO_BOX as usize {
            return Err(Error::value(
                "counts",
                format!(
                    "image {i} has {c} boxes; at most {} are supported",
                    NO_BOX - 1
                ),
            ));
        }
        acc = acc
            .checked_add(c)
            .ok_or_else(|| Error::value("counts", "the total overflows"))?;
        starts.push(acc);
    }
    if acc != labels.len() {
        return Err(Error::value(
            "counts",
            format!("sum to {acc} but there are {} boxes", labels.len()),
        ));
    }
    if levels.is_empty() {
        return Err(Error::value("strides", "at least one level is required"));
    }
    for (i, l) in levels.iter().enumerate() {
        if l.stride == 0 {
            return Err(Error::value("strides", format!("level {i} has stride 0")));
        }
        if l.lo.is_nan() || l.hi.is_nan() {
            return Err(Error::value(
                "regress_ranges",
                format!("level {i} has a NaN bound ({}, {})", l.lo, l.hi),
            ));
        }
    }
    if let Some(r) = options.center_sampling_radius {
        if !(r.is_finite() && r > 0.0) {
            return Err(Error::value(
                "center_sampling_radius",
                format!("must be a positive finite number, got {r}"),
            ));
        }
    }
    if let Some(n) = options.num_classes {
        if n <= 0 {
            return Err(Error::value(
                "num_classes",
                format!("must be positive, got {n}"),
            ));
        }
    }
    for image in 0..counts.len() {
        for g in starts[image]..starts[image + 1] {
            let b = &boxes[4 * g..4 * g + 4];
            let j = g - starts[image];
            if !b.iter().all(|v| v.is_finite()) {
                return Err(Error::value(
                    "boxes",
                    format!("image {image}, box {j} = {b:?} is not finite"),
                ));
            }
            if b[2] < b[0] || b[3] < b[1] {
                return Err(Error::value(
                    "boxes",
                    format!(
                        "image {image}, box {j} = {b:?} has x2 < x1 or y2 < y1 (expected xyxy)"
                    ),
                ));
            }
            let label = labels[g];
            let too_big = options.num_classes.is_some_and(|n| label >= n);
            if label < 0 || too_big {
                let bound = match options.num_classes {
                    Some(n) => format!("[0, {n})"),
                    None => "[0, inf)".to_string(),
                };
                return Err(Error::value(
                    "labels",
                    format!("image {image}, box {j} has label {label}, outside {bound}"),
                ));
            }
        }
    }
    Ok(starts)
}

/// Index range `[start, end)` of cell centres `(i + 0.5) * stride` that may lie
/// strictly between `a` and `b`, clamped to `[0, n)`. Conservative: the exact
/// float32 test decides for each index; the f64 estimate can only be off by a
/// fraction of an index, which the rounding directions absorb.
fn index_range(a: f64, b: f64, stride: f64, n: usize) -> (usize, usize) {
    // start = floor(a / stride - 0.5), end = ceil(b / stride - 0.5) + 1, clamped
    // to [0, n]; truncation is floor for the positive values that survive the
    // clamp (and avoids a libm call). NaN cannot occur (finite boxes).
    let start = a / stride - 0.5;
    let start = if start <= 0.0 {
        0
    } else {
        (start as usize).min(n)
    };
    let end = b / stride + 0.5;
    let end = if end <= 0.0 {
        0
    } else {
        let t = end as usize;
        let t = if (t as f64) < end {
            t.saturating_add(1)
        } else {
            t
        };
        t.min(n)
    };
    (start, end.max(start))
}

/// Assigns the points of one image. `cls` comes in as background (-1), `reg`
/// and `ctr` as zeros. The boxes are visited against a compact per-image
/// scratch of (best area, winner) per point, which stays in cache; the
/// outputs are then written once, in point order, for the points with a winner.
fn assign_image(
    boxes: &[f32],
    labels: &[i64],
    levels: &[Level],
    radius: Option<f64>,
    cls: &mut [i64],
    reg: &mut [f32],
    ctr: &mut [f32],
) {
    if boxes.is_empty() {
        return;
    }
    let mut best: Vec<(f32, u32)> = vec![(f32::INFINITY, NO_BOX); cls.len()];
    let mut cols: Vec<f32> = Vec::new();
    for (g, b) in boxes.chunks_exact(4).enumerate() {
        let (x1, y1, x2, y2) = (b[0], b[1], b[2], b[3]);
        let area = (x2 - x1) * (y2 - y1);
        // A zero-width box contains no point strictly; an inf area never wins.
        if !(x2 > x1 && y2 > y1 && area < f32::INFINITY) {
            continue;
        }
        let mut offset = 0usize;
        for level in levels {
            let base = offset;
            offset += level.height * level.width;
            let (lo, hi) = (level.lo, level.hi);
            // Centre region of this box on this level (`None` without sampling).
            let centre = radius.map(|radius| {
                let r = (f64::from(level.stride) * radius) as f32;
                let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
                (
                    (cx - r).max(x1),
                    (cy - r).max(y1),
                    (cx + r).min(x2),
                    (cy + r).min(y2),
                )
            });
            // Points that can pass lie inside the box, within `hi` of both edges
            // and inside the centre region.
            let (mut ax, mut bx, mut ay, mut by) =
                (f64::from(x1), f64::from(x2), f64::from(y1), f64::from(y2));
            if hi.is_finite() {
                let h = f64::from(hi);
                ax = ax.max(f64::from(x2) - h);
                bx = bx.min(f64::from(x1) + h);
                ay = ay.max(f64::from(y2) - h);
                by = by.min(f64::from(y1) + h);
            }
            if let Some((cx1, cy1, cx2, cy2)) = centre {
                ax = ax.max(f64::from(cx1));
                bx = bx.min(f64::from(cx2));
                ay = ay.max(f64::from(cy1));
                by = by.min(f64::from(cy2));
            }
            if !(ax < bx && ay < by) {
                continue;
            }
            let stride = f64::from(level.stride);
            let (xs, xe) = index_range(ax, bx, stride, level.width);
            let (ys, ye) = index_range(ay, by, stride, level.height);
            // Columns that pass their half of the rule: strictly inside on x (and
            // inside the centre region), max(l, r) < hi. They are contiguous (each
            // test is monotone in px), so keep the run and its max(l, r).
            cols.clear();
            let mut first = xs;
            for x in xs..xe {
                let px = level.centre(x);
                let (l, r) = (px - x1, x2 - px);
                let mut ok = l > 0.0 && r > 0.0;
                if let Some((cx1, _, cx2, _)) = centre {
                    ok &= px - cx1 > 0.0 && cx2 - px > 0.0;
                }
                let lr = l.max(r);
                if ok && lr < hi {
                    if cols.is_empty() {
                        first = x;
                    }
                    cols.push(lr);
                }
            }
            if cols.is_empty() {
                continue;
            }
            for y in ys..ye {
                let py = level.centre(y);
                let (t, bo) = (py - y1, y2 - py);
                if !(t > 0.0 && bo > 0.0) {
                    continue;
                }
                if let Some((_, cy1, _, cy2)) = centre {
                    if !(py - cy1 > 0.0 && cy2 - py > 0.0) {
                        continue;
                    }
                }
                let tb = t.max(bo);
                if tb >= hi {
                    continue;
                }
                // max(l, t, r, b) = max(lr, tb) < hi holds for the whole run; only
                // the lower bound is left (all of it when tb >= lo already).
                let row = base + y * level.width + first;
                let whole_row = tb >= lo;
                let run = &mut best[row..row + cols.len()];
                for (slot, &lr) in run.iter_mut().zip(&cols) {
                    // Strictly smaller area wins: boxes come in index order.
                    if (whole_row || lr >= lo) && area < slot.0 {
                        *slot = (area, g as u32);
                    }
                }
            }
        }
    }

    // Turn (area, winner) into (label, l t r b, centerness), in point order;
    // points without a winner keep their background values.
    let mut p = 0usize;
    for level in levels {
        for y in 0..level.height {
            let py = level.centre(y);
            for x in 0..level.width {
                let winner = best[p].1;
                if winner != NO_BOX {
                    let g = winner as usize;
                    let b = &boxes[4 * g..4 * g + 4];
                    let px = level.centre(x);
                    let (l, t, r, bo) = (px - b[0], py - b[1], b[2] - px, b[3] - py);
                    reg[4 * p..4 * p + 4].copy_from_slice(&[l, t, r, bo]);
                    ctr[p] = centerness(l, t, r, bo);
                    cls[p] = labels[g];
                }
                p += 1;
            }
        }
    }
}

/// Winner slot of a point that no box has claimed.
const NO_BOX: u32 = u32::MAX;

/// The seed's centerness, in its float32 operation order.
#[inline]
fn centerness(l: f32, t: f32, r: f32, b: f32) -> f32 {
    let lr = l.min(r) / l.max(r).max(CENTERNESS_EPS);
    let tb = t.min(b) / t.max(b).max(CENTERNESS_EPS);
    (lr * tb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(stride: u32, height: usize, width: usize, lo: f32, hi: f32) -> Level {
        Level {
            stride,
            height,
            width,
            lo,
            hi,
        }
    }

    fn default_levels(h: usize, w: usize) -> Vec<Level> {
        let ranges = [
            (-1.0, 64.0),
            (64.0, 128.0),
            (128.0, 256.0),
            (256.0, 512.0),
            (512.0, f32::INFINITY),
        ];
        [8u32, 16, 32, 64, 128]
            .iter()
            .zip(ranges)
            .map(|(&s, (lo, hi))| {
                let s_ = s as usize;
                level(s, h.div_ceil(s_), w.div_ceil(s_), lo, hi)
            })
            .collect()
    }

    /// Dense restatement of the rule: every point against every box.
    fn dense(boxes: &[f32], labels: &[i64], levels: &[Level], radius: Option<f64>) -> Targets {
        let n: usize = levels.iter().map(|l| l.height * l.width).sum();
        let mut out = Targets {
            num_images: 1,
            num_points: n,
            cls: vec![-1; n],
            reg: vec![0.0; 4 * n],
            ctr: vec![0.0; n],
        };
        let mut p = 0;
        for lv in levels {
            for y in 0..lv.height {
                for x in 0..lv.width {
                    let (px, py) = (lv.centre(x), lv.centre(y));
                    let mut best = (f32::INFINITY, usize::MAX);
                    for (g, b) in boxes.chunks_exact(4).enumerate() {
                        let (l, t, r, bo) = (px - b[0], py - b[1], b[2] - px, b[3] - py);
                        let mut ok = l > 0.0 && t > 0.0 && r > 0.0 && bo > 0.0;
                        let m = l.max(t).max(r).max(bo);
                        ok &= m >= lv.lo && m < lv.hi;
                        if let Some(radius) = radius {
                            let rr = (f64::from(lv.stride) * radius) as f32;
                            let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
                            ok &= px - (cx - rr).max(b[0]) > 0.0
                                && py - (cy - rr).max(b[1]) > 0.0
                                && (cx + rr).min(b[2]) - px > 0.0
                                && (cy + rr).min(b[3]) - py > 0.0;
                        }
                        let area = (b[2] - b[0]) * (b[3] - b[1]);
                        if ok && area < best.0 {
                            best = (area, g);
                        }
                    }
                    if best.1 != usize::MAX {
                        let b = &boxes[4 * best.1..4 * best.1 + 4];
                        let (l, t, r, bo) = (px - b[0], py - b[1], b[2] - px, b[3] - py);
                        out.cls[p] = labels[best.1];
                        out.reg[4 * p..4 * p + 4].copy_from_slice(&[l, t, r, bo]);
                        out.ctr[p] = centerness(l, t, r, bo);
                    }
                    p += 1;
                }
            }
        }
        out
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Small deterministic generator (xorshift) for the randomised checks.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn matches_the_dense_rule_on_random_batches() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..200 {
            let (h, w) = (8 + rng.below(300) as usize, 8 + rng.below(300) as usize);
            let levels = if case % 3 == 0 {
                vec![
                    level(4, h.div_ceil(4), w.div_ceil(4), -1.0, 16.0),
                    level(8, h.div_ceil(8), w.div_ceil(8), 16.0, 48.0),
                    level(24, h.div_ceil(24), w.div_ceil(24), 48.0, f32::INFINITY),
                ]
            } else {
                default_levels(h, w)
            };
            let radius = if case % 4 == 1 { Some(1.5) } else { None };
            let images = 1 + rng.below(3) as usize;
            let mut boxes = Vec::new();
            let mut labels = Vec::new();
            let mut counts = Vec::new();
            for _ in 0..images {
                let n = rng.below(20) as usize;
                counts.push(n as i64);
                for _ in 0..n {
                    // Half-stride grid so edges land exactly on points.
                    let q = |v: u64| v as f32 * 2.0;
                    let x1 = q(rng.below(w as u64 / 2));
                    let y1 = q(rng.below(h as u64 / 2));
                    let x2 = x1 + q(rng.below(w as u64 / 2 + 1));
                    let y2 = y1 + q(rng.below(h as u64 / 2 + 1));
                    boxes.extend_from_slice(&[x1, y1, x2, y2]);
                    labels.push(rng.below(5) as i64);
                }
            }
            let options = Options {
                center_sampling_radius: radius,
                num_classes: None,
                num_threads: 1 + case % 2,
            };
            let got = fcos_targets(&boxes, &labels, &counts, &levels, &options).unwrap();
            let mut start = 0usize;
            for (i, &c) in counts.iter().enumerate() {
                let end = start + c as usize;
                let want = dense(
                    &boxes[4 * start..4 * end],
                    &labels[start..end],
                    &levels,
                    radius,
                );
                let n = got.num_points;
                assert_eq!(got.cls[i * n..(i + 1) * n], want.cls[..], "case {case}");
                assert_eq!(bits(&got.reg[4 * i * n..4 * (i + 1) * n]), bits(&want.reg));
                assert_eq!(bits(&got.ctr[i * n..(i + 1) * n]), bits(&want.ctr));
                start = end;
            }
        }
    }

    #[test]
    fn smallest_area_wins_and_first_index_breaks_ties() {
        let levels = default_levels(64, 64);
        // Box 1 is nested in box 0; boxes 2 and 3 are duplicates of box 1.
        let boxes = [
            0.0, 0.0, 60.0, 60.0, 10.0, 10.0, 30.0, 30.0, 10.0, 10.0, 30.0, 30.0, 10.0, 10.0, 30.0,
            30.0,
        ];
        let labels = [7, 8, 9, 10];
        let t = fcos_targets(&boxes, &labels, &[4], &levels, &Options::default()).unwrap();
        // Point (20, 20) = level 0, x = y = 2.
        let p = 2 * 8 + 2;
        assert_eq!(t.cls[p], 8);
        assert_eq!(t.reg[4 * p..4 * p + 4], [10.0, 10.0, 10.0, 10.0]);
        assert_eq!(t.ctr[p], 1.0);
        // Point (4, 4) only in box 0.
        assert_eq!(t.cls[0], 7);
    }

    #[test]
    fn points_on_edges_and_range_bounds() {
        let levels = default_levels(256, 256);
        let o = Options::default();
        // Left edge exactly on the point x = 4: l = 0 is not inside.
        let t = fcos_targets(&[4.0, 0.0, 12.0, 8.0], &[0], &[1], &levels, &o).unwrap();
        assert!(t.cls.iter().all(|&c| c == BACKGROUND));
        // Point (4, 4): l = 64 exactly -> not on [-1, 64); no other point fits.
        let t = fcos_targets(&[-60.0, 0.0, 20.0, 8.0], &[3], &[1], &levels, &o).unwrap();
        assert!(t.cls.iter().all(|&c| c == BACKGROUND));
        // Level-1 point (8, 8): l = 64 exactly -> on [64, 128).
        let t = fcos_targets(&[-56.0, 0.0, 20.0, 12.0], &[3], &[1], &levels, &o).unwrap();
        let p = 32 * 32;
        assert_eq!(t.cls[p], 3);
        assert_eq!(t.reg[4 * p..4 * p + 4], [64.0, 8.0, 12.0, 4.0]);
        // Level-0 point (4, 4): max 60 -> on level 0.
        assert_eq!(t.cls[0], 3);
    }

    #[test]
    fn empty_images_and_zero_area_boxes_are_background() {
        let levels = default_levels(100, 60);
        let boxes = [10.0, 10.0, 10.0, 50.0, 5.0, 5.0, 40.0, 5.0];
        let t = fcos_targets(&boxes, &[1, 2], &[0, 2, 0], &levels, &Options::default()).unwrap();
        assert_eq!(t.num_images, 3);
        assert!(t.cls.iter().all(|&c| c == BACKGROUND));
        assert!(t.reg.iter().all(|&v| v.to_bits() == 0));
        assert!(t.ctr.iter().all(|&v| v.to_bits() == 0));
        let t = fcos_targets(&[], &[], &[], &levels, &Options::default()).unwrap();
        assert_eq!((t.num_images, t.cls.len()), (0, 0));
    }

    #[test]
    fn inf_area_never_wins() {
        let levels = vec![level(8, 4, 4, -1.0, f32::INFINITY)];
        let boxes = [-3.0e38, 0.0, 3.0e38, 32.0];
        let t = fcos_targets(&boxes, &[0], &[1], &levels, &Options::default()).unwrap();
        assert!(t.cls.iter().all(|&c| c == BACKGROUND));
    }

    #[test]
    fn bad_input_is_rejected_with_the_argument_named() {
        let levels = default_levels(64, 64);
        let o = Options::default();
        let err = |b: &[f32], l: &[i64], c: &[i64], o: &Options| {
            fcos_targets(b, l, c, &levels, o).unwrap_err().to_string()
        };
        assert!(err(&[5.0, 0.0, 1.0, 4.0], &[0], &[1], &o).starts_with("boxes: image 0, box 0"));
        assert!(err(&[0.0, 0.0, f32::NAN, 4.0], &[0], &[1], &o).contains("not finite"));
        assert!(err(&[0.0, 0.0, 1.0, 4.0], &[-1], &[1], &o).starts_with("labels:"));
        let o3 = Options {
            num_classes: Some(3),
            ..o
        };
        assert!(err(&[0.0, 0.0, 1.0, 4.0], &[3], &[1], &o3).contains("outside [0, 3)"));
        assert!(err(&[0.0, 0.0, 1.0, 4.0], &[0], &[2], &o).starts_with("counts:"));
        assert!(err(&[0.0, 0.0, 1.0], &[0], &[1], &o).starts_with("boxes has shape"));
        let bad_radius = Options {
            center_sampling_radius: Some(f64::NAN),
            ..o
        };
        assert!(err(&[], &[], &[0], &bad_radius).starts_with("center_sampling_radius"));
        let nan_level = [level(8, 8, 8, f32::NAN, 64.0)];
        let e = fcos_targets(&[], &[], &[0], &nan_level, &o).unwrap_err();
        assert!(e.to_string().starts_with("regress_ranges"));
        let e = fcos_targets(&[], &[], &[0], &[], &o).unwrap_err();
        assert!(e.to_string().starts_with("strides"));
    }

    #[test]
    fn threads_do_not_change_the_result() {
        let levels = default_levels(320, 256);
        let mut rng = Rng(42);
        let mut boxes = Vec::new();
        let counts = [30i64; 6];
        for _ in 0..180 {
            let x1 = rng.below(250) as f32;
            let y1 = rng.below(300) as f32;
            boxes.extend_from_slice(&[
                x1,
                y1,
                x1 + rng.below(200) as f32 + 0.5,
                y1 + 1.0 + rng.below(200) as f32,
            ]);
        }
        let labels: Vec<i64> = (0..180).collect();
        let run = |n| {
            let o = Options {
                num_threads: n,
                ..Options::default()
            };
            fcos_targets(&boxes, &labels, &counts, &levels, &o).unwrap()
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(0));
        assert!(one.cls.iter().any(|&c| c >= 0));
    }
}
