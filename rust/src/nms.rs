//! Non-maximum suppression over xyxy boxes, index-identical to
//! `torchvision.ops.nms` and `torchvision.ops.batched_nms` on CPU.
//! Pure Rust: slices in, `Vec` out.
//!
//! # What "identical" takes
//!
//! * Order: scores sorted descending with a *stable* sort, so equal scores keep
//!   ascending index order (`-0.0` and `0.0` are equal scores).
//! * Arithmetic: areas, intersections and IoU are computed in the input's own
//!   float width with torchvision's operation order (`inter / ((a_i + a_j) -
//!   inter)`, `std::max`/`std::min` operand order), and a box is suppressed iff
//!   `IoU > iou_threshold` with the threshold an `f64`. For `f32` boxes the
//!   comparison uses [`Float::threshold`], the greatest `f32` not above the
//!   threshold, which decides `(iou as f64) > thr` exactly for every `f32` IoU
//!   (including NaN, which never suppresses).
//! * `batched_nms` follows torchvision's dispatch: below [`VANILLA_MIN_BOXES`]
//!   boxes it shifts every box by `idx * (max_coordinate + 1)` in the box dtype
//!   (with its rounding) and runs one NMS on the shifted boxes; from
//!   [`VANILLA_MIN_BOXES`] boxes on it runs NMS per class on the original boxes.
//!   Kept indices come out in decreasing score order, ties by lower index.
//!
//! # How it is fast
//!
//! Scores are sorted once (an LSD radix sort on order-preserving integer keys,
//! stable), boxes are bucketed by class with a counting sort that keeps that
//! order, and greedy suppression runs inside each class on structure-of-arrays
//! coordinates with precomputed areas. The inner loop is branch-free so it
//! vectorises (AVX2 when the CPU has it); it keeps the division and never
//! fuses a multiply-add, so every IoU is bit-identical to torchvision's. The
//! coordinate-offset path also runs per class whenever the shifted classes are
//! provably disjoint (then no IoU across classes can exceed a threshold `>= 0`)
//! and falls back to one global NMS otherwise.

use std::ops::{Add, Div, Mul, Sub};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::parallel;

/// `torchvision.ops.batched_nms` on CPU runs per class ("vanilla") when
/// `boxes.numel() > 4000`, i.e. from this many boxes on; below it uses the
/// coordinate-offset trick.
pub const VANILLA_MIN_BOXES: usize = 1001;

/// Below this many boxes a call never starts parallel work.
const PARALLEL_MIN_BOXES: usize = 8192;

/// Up to this many scores a comparison sort beats the radix sort's histograms.
const SMALL_SORT: usize = 256;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// Integer sort key: ascending key order is the wanted score order. A key is
/// sorted packed with its index (key in the high bits, index in the low 32),
/// so that comparing packed values breaks ties by index.
pub trait RadixKey: Copy + Ord + Send + Sync {
    type Packed: Copy + Ord + Send + Sync;
    /// Number of key bytes the radix sort looks at.
    const BYTES: usize;
    fn pack(self, index: u32) -> Self::Packed;
    /// Byte `k` of the key part (0 = least significant).
    fn byte(packed: Self::Packed, k: usize) -> usize;
    fn index(packed: Self::Packed) -> u32;
}

impl RadixKey for u32 {
    type Packed = u64;
    const BYTES: usize = 4;
    #[inline(always)]
    fn pack(self, index: u32) -> u64 {
        ((self as u64) << 32) | index as u64
    }
    #[inline(always)]
    fn byte(packed: u64, k: usize) -> usize {
        ((packed >> (32 + 8 * k)) & 0xff) as usize
    }
    #[inline(always)]
    fn index(packed: u64) -> u32 {
        packed as u32
    }
}

impl RadixKey for u64 {
    type Packed = u128;
    const BYTES: usize = 8;
    #[inline(always)]
    fn pack(self, index: u32) -> u128 {
        ((self as u128) << 32) | index as u128
    }
    #[inline(always)]
    fn byte(packed: u128, k: usize) -> usize {
        ((packed >> (32 + 8 * k)) & 0xff) as usize
    }
    #[inline(always)]
    fn index(packed: u128) -> u32 {
        packed as u32
    }
}

/// Box coordinate / score type: the op runs in the input's own float width
/// (`f32` or `f64`).
pub trait Float:
    sealed::Sealed
    + Copy
    + Default
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    /// Sort key of a score for a descending sort.
    type Key: RadixKey;

    fn is_finite(self) -> bool;
    /// `idx as Self`, rounding to nearest like torch's `idxs.to(boxes)`.
    fn from_i64(v: i64) -> Self;
    /// The threshold to compare IoUs of this type against: the greatest value
    /// `t` of this type with `t <= thr`. For every value `x` of this type,
    /// `x > t` iff `(x as f64) > thr`, so the decision equals torchvision's
    /// (IoU in the input dtype, promoted to double, compared to the double
    /// threshold). `thr` must not be NaN.
    fn threshold(thr: f64) -> Self;
    /// Key whose ascending order is descending score order, with `-0.0` and
    /// `0.0` equal. Finite scores only.
    fn desc_key(self) -> Self::Key;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    type Key = u32;

    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[inline(always)]
    fn from_i64(v: i64) -> Self {
        v as f32
    }
    fn threshold(thr: f64) -> Self {
        let r = thr as f32; // round to nearest, overflow to +-inf
        if (r as f64) > thr {
            // One step down (r > thr >= -inf, so r is not -inf).
            let bits = r.to_bits();
            if r == 0.0 {
                -f32::from_bits(1)
            } else if r > 0.0 {
                f32::from_bits(bits - 1)
            } else {
                f32::from_bits(bits + 1)
            }
        } else {
            r
        }
    }
    #[inline(always)]
    fn desc_key(self) -> u32 {
        let v = if self == 0.0 { 0.0f32 } else { self };
        let b = v.to_bits();
        let asc = if b >> 31 == 1 { !b } else { b | (1 << 31) };
        !asc
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    type Key = u64;

    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline(always)]
    fn from_i64(v: i64) -> Self {
        v as f64
    }
    fn threshold(thr: f64) -> Self {
        thr
    }
    #[inline(always)]
    fn desc_key(self) -> u64 {
        let v = if self == 0.0 { 0.0f64 } else { self };
        let b = v.to_bits();
        let asc = if b >> 63 == 1 { !b } else { b | (1 << 63) };
        !asc
    }
}

/// `std::max(a, b)` exactly as C++ defines it: `(a < b) ? b : a`.
#[inline(always)]
fn cmax<T: Float>(a: T, b: T) -> T {
    if a < b {
        b
    } else {
        a
    }
}

/// `std::min(a, b)` exactly as C++ defines it: `(b < a) ? b : a`.
#[inline(always)]
fn cmin<T: Float>(a: T, b: T) -> T {
    if b < a {
        b
    } else {
        a
    }
}

/// Greedy NMS like `torchvision.ops.nms`. `boxes` is row-major `[n, 4]`
/// xyxy, `scores` has length `n`. Returns the kept indices in decreasing score
/// order (ties: lower index first).
///
/// # Errors
/// Mismatched lengths, NaN or infinite boxes or scores, a NaN threshold.
pub fn nms<T: Float>(boxes: &[T], scores: &[T], iou_threshold: f64) -> Result<Vec<i64>> {
    let n = validate(boxes, scores, iou_threshold)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let order = sort_desc(scores);
    let all: Vec<u32> = (0..n as u32).collect();
    let buckets = [0, n];
    run_buckets(
        boxes,
        &order,
        &all,
        &buckets,
        T::threshold(iou_threshold),
        1,
    )
}

/// NMS per class like `torchvision.ops.batched_nms`: boxes of different
/// `idxs` never suppress each other (up to torchvision's own coordinate-offset
/// rounding below [`VANILLA_MIN_BOXES`] boxes, which is reproduced). Returns
/// the kept indices in decreasing score order (ties: lower index first).
/// `num_threads` caps the rayon workers for large inputs (0 = the available cores
/// capped by `AUTOTIMM_NUM_THREADS`, 1 = this thread only).
///
/// # Errors
/// Mismatched lengths, NaN or infinite boxes or scores, a NaN threshold.
pub fn batched_nms<T: Float>(
    boxes: &[T],
    scores: &[T],
    idxs: &[i64],
    iou_threshold: f64,
    num_threads: usize,
) -> Result<Vec<i64>> {
    let n = validate(boxes, scores, iou_threshold)?;
    if idxs.len() != n {
        return Err(Error::shape(
            "idxs",
            format!("({},)", idxs.len()),
            format!("({n},) to match boxes"),
        ));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let thr = T::threshold(iou_threshold);
    let order = sort_desc(scores);
    let (grouped, buckets) = group_by_class(idxs, &order);
    if n >= VANILLA_MIN_BOXES {
        return run_buckets(boxes, &order, &grouped, &buckets, thr, num_threads);
    }
    let shifted = shift_by_class(boxes, idxs);
    if iou_threshold >= 0.0 && classes_disjoint(&shifted, &order, &grouped, &buckets) {
        run_buckets(&shifted, &order, &grouped, &buckets, thr, 1)
    } else {
        let all: Vec<u32> = (0..n as u32).collect();
        run_buckets(&shifted, &order, &all, &[0, n], thr, 1)
    }
}

/// Checks lengths, finiteness and the threshold; returns the number of boxes.
fn validate<T: Float>(boxes: &[T], scores: &[T], iou_threshold: f64) -> Result<usize> {
    if boxes.len() % 4 != 0 {
        return Err(Error::shape(
            "boxes",
            format!("({},) (flat)", boxes.len()),
            "(N, 4)",
        ));
    }
    let n = boxes.len() / 4;
    if scores.len() != n {
        return Err(Error::shape(
            "scores",
            format!("({},)", scores.len()),
            format!("({n},) to match boxes"),
        ));
    }
    if n > u32::MAX as usize {
        return Err(Error::value(
            "boxes",
            format!("at most {} boxes are supported, got {n}", u32::MAX),
        ));
    }
    if iou_threshold.is_nan() {
        return Err(Error::value("iou_threshold", "must not be NaN"));
    }
    if let Some(at) = first_non_finite(boxes) {
        return Err(Error::value(
            "boxes",
            format!(
                "must be finite; found NaN or infinity at row {}, column {}",
                at / 4,
                at % 4
            ),
        ));
    }
    if let Some(at) = first_non_finite(scores) {
        return Err(Error::value(
            "scores",
            format!("must be finite; found NaN or infinity at index {at}"),
        ));
    }
    Ok(n)
}

/// Index of the first NaN or infinite value, scanning in vectorisable chunks.
fn first_non_finite<T: Float>(values: &[T]) -> Option<usize> {
    const CHUNK: usize = 256;
    for (c, chunk) in values.chunks(CHUNK).enumerate() {
        if !chunk.iter().fold(true, |ok, v| ok & v.is_finite()) {
            let at = chunk.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Some(c * CHUNK + at);
        }
    }
    None
}

/// Indices of `scores` in descending order, ties by ascending index (torch's
/// `sort(stable=True, descending=True)` on finite scores).
fn sort_desc<T: Float>(scores: &[T]) -> Vec<u32> {
    type K<T> = <T as Float>::Key;
    let n = scores.len();
    let mut a: Vec<<K<T> as RadixKey>::Packed> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| s.desc_key().pack(i as u32))
        .collect();
    if n <= SMALL_SORT {
        // Packed values are distinct (they hold the index), so unstable ==
        // stable here.
        a.sort_unstable();
        return a.into_iter().map(K::<T>::index).collect();
    }
    let mut hist = vec![[0u32; 256]; K::<T>::BYTES];
    for &p in &a {
        for (b, h) in hist.iter_mut().enumerate() {
            h[K::<T>::byte(p, b)] += 1;
        }
    }
    let mut tmp = a.clone();
    for (b, h) in hist.iter_mut().enumerate() {
        if h.iter().any(|&c| c as usize == n) {
            continue; // every key has the same byte here: the pass is a no-op
        }
        let mut sum = 0u32;
        for c in h.iter_mut() {
            let count = *c;
            *c = sum;
            sum += count;
        }
        for &p in &a {
            let d = K::<T>::byte(p, b);
            tmp[h[d] as usize] = p;
            h[d] += 1;
        }
        std::mem::swap(&mut a, &mut tmp);
    }
    a.into_iter().map(K::<T>::index).collect()
}

/// Groups sort positions (indices into `order`) by class, keeping their order
/// inside each class. Returns the grouped positions and bucket boundaries
/// (`buckets[k]..buckets[k + 1]`), classes in ascending id order.
fn group_by_class(idxs: &[i64], order: &[u32]) -> (Vec<u32>, Vec<usize>) {
    let n = order.len();
    let (lo, hi) = idxs
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &c| (lo.min(c), hi.max(c)));
    let range = (hi as i128 - lo as i128) as u128;
    let mut grouped = vec![0u32; n];
    let mut buckets = vec![0usize];
    if range < (2 * n + 1024) as u128 {
        // Dense ids: counting sort.
        let classes = range as usize + 1;
        let slot = |c: i64| c.wrapping_sub(lo) as u64 as usize;
        let mut next = vec![0usize; classes];
        for &c in idxs {
            next[slot(c)] += 1;
        }
        let mut sum = 0usize;
        for c in next.iter_mut() {
            let count = *c;
            *c = sum;
            sum += count;
            if count > 0 {
                buckets.push(sum);
            }
        }
        for (p, &i) in order.iter().enumerate() {
            let s = slot(idxs[i as usize]);
            grouped[next[s]] = p as u32;
            next[s] += 1;
        }
    } else {
        // Sparse ids: sort (class, position) pairs.
        let mut pairs: Vec<(i64, u32)> = order
            .iter()
            .enumerate()
            .map(|(p, &i)| (idxs[i as usize], p as u32))
            .collect();
        pairs.sort_unstable();
        for (k, &(c, p)) in pairs.iter().enumerate() {
            grouped[k] = p;
            if k + 1 < n && pairs[k + 1].0 != c {
                buckets.push(k + 1);
            }
        }
        buckets.push(n);
    }
    (grouped, buckets)
}

/// torchvision's coordinate trick, in the box dtype:
/// `boxes + (idxs.to(boxes) * (boxes.max() + 1))[:, None]`.
fn shift_by_class<T: Float>(boxes: &[T], idxs: &[i64]) -> Vec<T> {
    let max = boxes[1..]
        .iter()
        .fold(boxes[0], |m, &v| if v > m { v } else { m });
    let scale = max + T::ONE;
    let mut out = Vec::with_capacity(boxes.len());
    for (b, &c) in boxes.chunks_exact(4).zip(idxs) {
        let off = T::from_i64(c) * scale;
        out.extend_from_slice(&[b[0] + off, b[1] + off, b[2] + off, b[3] + off]);
    }
    out
}

/// True when the x extents of the classes (all x1 and x2 values of each
/// class), taken in bucket order, follow each other without overlap. Then
/// every intersection width across classes is `max(0, d)` with `d <= 0`, so
/// every cross-class IoU is 0, -0 or NaN and never exceeds a threshold `>= 0`:
/// per-class NMS equals one global NMS on the shifted boxes.
fn classes_disjoint<T: Float>(
    boxes: &[T],
    order: &[u32],
    grouped: &[u32],
    buckets: &[usize],
) -> bool {
    let mut prev_hi: Option<T> = None;
    for w in buckets.windows(2) {
        let mut lo = T::ZERO;
        let mut hi = T::ZERO;
        for (k, &p) in grouped[w[0]..w[1]].iter().enumerate() {
            let i = order[p as usize] as usize;
            let (a, b) = (boxes[4 * i], boxes[4 * i + 2]);
            let (l, h) = if a < b { (a, b) } else { (b, a) };
            if k == 0 || l < lo {
                lo = l;
            }
            if k == 0 || h > hi {
                hi = h;
            }
        }
        // NaN-safe: anything but a proven `prev_hi <= lo` fails.
        if let Some(ph) = prev_hi {
            match ph.partial_cmp(&lo) {
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal) => {}
                _ => return false,
            }
        }
        prev_hi = Some(hi);
    }
    true
}

/// Structure-of-arrays coordinates of one bucket, in score order.
#[derive(Default)]
struct Soa<T> {
    x1: Vec<T>,
    y1: Vec<T>,
    x2: Vec<T>,
    y2: Vec<T>,
    area: Vec<T>,
    suppressed: Vec<u8>,
    kept: Vec<u32>,
}

impl<T: Float> Soa<T> {
    fn load(&mut self, boxes: &[T], order: &[u32], positions: &[u32]) {
        self.x1.clear();
        self.y1.clear();
        self.x2.clear();
        self.y2.clear();
        self.area.clear();
        for &p in positions {
            let i = order[p as usize] as usize;
            let b = &boxes[4 * i..4 * i + 4];
            self.x1.push(b[0]);
            self.y1.push(b[1]);
            self.x2.push(b[2]);
            self.y2.push(b[3]);
            // torchvision: areas = (x2 - x1) * (y2 - y1) in the box dtype.
            self.area.push((b[2] - b[0]) * (b[3] - b[1]));
        }
    }

    /// Greedy suppression over the loaded bucket; fills `kept` with local
    /// indices in score order.
    fn greedy(&mut self, thr: T) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above).
                unsafe { greedy_avx2(self, thr) };
                return;
            }
        }
        greedy_generic(self, thr);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn greedy_avx2<T: Float>(s: &mut Soa<T>, thr: T) {
    greedy_generic(s, thr)
}

/// torchvision's loop: walk boxes in score order; a box not yet suppressed is
/// kept and suppresses every later box whose IoU with it is `> thr`. The row
/// update is branch-free (it also recomputes already suppressed boxes, which
/// changes nothing) so that it vectorises.
#[inline(always)]
fn greedy_generic<T: Float>(s: &mut Soa<T>, thr: T) {
    let m = s.x1.len();
    s.kept.clear();
    s.suppressed.clear();
    s.suppressed.resize(m, 0);
    for i in 0..m {
        if s.suppressed[i] != 0 {
            continue;
        }
        s.kept.push(i as u32);
        let (ix1, iy1, ix2, iy2, ia) = (s.x1[i], s.y1[i], s.x2[i], s.y2[i], s.area[i]);
        let rest = i + 1;
        for (((((&x1, &y1), &x2), &y2), &a), sup) in s.x1[rest..]
            .iter()
            .zip(&s.y1[rest..])
            .zip(&s.x2[rest..])
            .zip(&s.y2[rest..])
            .zip(&s.area[rest..])
            .zip(&mut s.suppressed[rest..])
        {
            let xx1 = cmax(ix1, x1);
            let yy1 = cmax(iy1, y1);
            let xx2 = cmin(ix2, x2);
            let yy2 = cmin(iy2, y2);
            let w = cmax(T::ZERO, xx2 - xx1);
            let h = cmax(T::ZERO, yy2 - yy1);
            let inter = w * h;
            let iou = inter / (ia + a - inter);
            *sup |= (iou > thr) as u8;
        }
    }
}

/// Runs greedy NMS in every bucket and returns the kept original indices in
/// sort order (`order` is the global descending-score order; `grouped` holds
/// positions into it, bucket by bucket).
fn run_buckets<T: Float>(
    boxes: &[T],
    order: &[u32],
    grouped: &[u32],
    buckets: &[usize],
    thr: T,
    num_threads: usize,
) -> Result<Vec<i64>> {
    let n = order.len();
    let mut keep = vec![false; n];
    let parallel = num_threads != 1 && n >= PARALLEL_MIN_BOXES && buckets.len() > 2;
    if parallel {
        let ranges: Vec<(usize, usize)> = buckets.windows(2).map(|w| (w[0], w[1])).collect();
        let kept: Vec<Vec<u32>> = parallel::with_threads(num_threads, || {
            ranges
                .par_iter()
                .map_init(Soa::<T>::default, |soa, &(start, end)| {
                    let positions = &grouped[start..end];
                    soa.load(boxes, order, positions);
                    soa.greedy(thr);
                    soa.kept.iter().map(|&k| positions[k as usize]).collect()
                })
                .collect()
        })?;
        for p in kept.into_iter().flatten() {
            keep[p as usize] = true;
        }
    } else {
        let mut soa = Soa::<T>::default();
        for w in buckets.windows(2) {
            let positions = &grouped[w[0]..w[1]];
            soa.load(boxes, order, positions);
            soa.greedy(thr);
            for &k in &soa.kept {
                keep[positions[k as usize] as usize] = true;
            }
        }
    }
    Ok(order
        .iter()
        .zip(&keep)
        .filter(|(_, &k)| k)
        .map(|(&i, _)| i as i64)
        .collect())
}

/// Distinct kept indices `keep` (each `< n`) in ascending order, in O(n):
/// torchvision's per-class path orders `torch.where(keep_mask)`, which is
/// this, with torch's sort by score.
pub fn ascending(keep: &[i64], n: usize) -> Vec<i64> {
    let mut mask = vec![false; n];
    for &k in keep {
        if let Some(slot) = usize::try_from(k).ok().and_then(|k| mask.get_mut(k)) {
            *slot = true;
        }
    }
    (0..n as i64).filter(|&i| mask[i as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- a literal port of torchvision's CPU code, the unit-test reference ----

    fn ref_nms<T: Float + Into<f64>>(boxes: &[T], scores: &[T], thr: f64) -> Vec<i64> {
        let n = scores.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            let (sa, sb): (f64, f64) = (scores[a].into(), scores[b].into());
            sb.partial_cmp(&sa).unwrap()
        });
        let areas: Vec<T> = (0..n)
            .map(|i| (boxes[4 * i + 2] - boxes[4 * i]) * (boxes[4 * i + 3] - boxes[4 * i + 1]))
            .collect();
        let mut sup = vec![false; n];
        let mut keep = Vec::new();
        for (pos, &i) in order.iter().enumerate() {
            if sup[i] {
                continue;
            }
            keep.push(i as i64);
            for &j in &order[pos + 1..] {
                if sup[j] {
                    continue;
                }
                let xx1 = cmax(boxes[4 * i], boxes[4 * j]);
                let yy1 = cmax(boxes[4 * i + 1], boxes[4 * j + 1]);
                let xx2 = cmin(boxes[4 * i + 2], boxes[4 * j + 2]);
                let yy2 = cmin(boxes[4 * i + 3], boxes[4 * j + 3]);
                let w = cmax(T::ZERO, xx2 - xx1);
                let h = cmax(T::ZERO, yy2 - yy1);
                let inter = w * h;
                let ovr: f64 = (inter / (areas[i] + areas[j] - inter)).into();
                if ovr > thr {
                    sup[j] = true;
                }
            }
        }
        keep
    }

    #[test]
    fn ascending_sorts_kept_indices() {
        assert_eq!(ascending(&[7, 2, 5, 0], 9), vec![0, 2, 5, 7]);
        assert!(ascending(&[], 0).is_empty());
    }

    fn ref_batched<T: Float + Into<f64>>(
        boxes: &[T],
        scores: &[T],
        idxs: &[i64],
        thr: f64,
    ) -> Vec<i64> {
        let n = scores.len();
        if n == 0 {
            return vec![];
        }
        if n < VANILLA_MIN_BOXES {
            let shifted = shift_by_class(boxes, idxs);
            return ref_nms(&shifted, scores, thr);
        }
        let mut classes: Vec<i64> = idxs.to_vec();
        classes.sort_unstable();
        classes.dedup();
        let mut keep = Vec::new();
        for c in classes {
            let members: Vec<usize> = (0..n).filter(|&i| idxs[i] == c).collect();
            let b: Vec<T> = members
                .iter()
                .flat_map(|&i| boxes[4 * i..4 * i + 4].to_vec())
                .collect();
            let s: Vec<T> = members.iter().map(|&i| scores[i]).collect();
            keep.extend(
                ref_nms(&b, &s, thr)
                    .into_iter()
                    .map(|k| members[k as usize] as i64),
            );
        }
        keep.sort_by(|&a, &b| {
            let (sa, sb): (f64, f64) = (scores[a as usize].into(), scores[b as usize].into());
            sb.partial_cmp(&sa).unwrap().then(a.cmp(&b))
        });
        keep
    }

    /// Small deterministic generator (splitmix64).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn below(&mut self, k: u64) -> u64 {
            self.next() % k
        }
    }

    /// Clustered boxes with coarse (tie-heavy) scores and a few degenerate boxes.
    fn clustered(
        rng: &mut Rng,
        n: usize,
        classes: u64,
        coarse: bool,
    ) -> (Vec<f64>, Vec<f64>, Vec<i64>) {
        let objects = (n / 8).max(1);
        let centers: Vec<(f64, f64, f64, i64)> = (0..objects)
            .map(|_| {
                (
                    rng.unit() * 600.0,
                    rng.unit() * 400.0,
                    8.0 + rng.unit() * 120.0,
                    rng.below(classes) as i64,
                )
            })
            .collect();
        let mut boxes = Vec::with_capacity(4 * n);
        let mut scores = Vec::with_capacity(n);
        let mut idxs = Vec::with_capacity(n);
        for _ in 0..n {
            let (cx, cy, s, c) = centers[rng.below(objects as u64) as usize];
            let jitter = |r: &mut Rng| (r.unit() - 0.5) * 0.3 * s;
            let (x, y) = (cx + jitter(rng), cy + jitter(rng));
            let (w, h) = (s * (0.7 + 0.6 * rng.unit()), s * (0.7 + 0.6 * rng.unit()));
            let kind = rng.below(20);
            let b = match kind {
                0 => [x, y, x, y + h],     // zero width
                1 => [x + w, y, x, y + h], // inverted
                _ => [x, y, x + w, y + h],
            };
            boxes.extend_from_slice(&b);
            scores.push(if coarse {
                rng.below(10) as f64 / 10.0
            } else {
                rng.unit()
            });
            idxs.push(if rng.below(5) == 0 {
                rng.below(classes) as i64
            } else {
                c
            });
        }
        (boxes, scores, idxs)
    }

    fn to_f32(v: &[f64]) -> Vec<f32> {
        v.iter().map(|&x| x as f32).collect()
    }

    #[test]
    fn keeps_highest_and_drops_overlaps() {
        let boxes = [
            0.0f32, 0.0, 10.0, 10.0, 1.0, 1.0, 10.0, 10.0, 20.0, 20.0, 30.0, 30.0,
        ];
        let scores = [0.9f32, 0.8, 0.7];
        assert_eq!(nms(&boxes, &scores, 0.5).unwrap(), vec![0, 2]);
    }

    #[test]
    fn empty_input_gives_empty_output() {
        assert!(nms::<f32>(&[], &[], 0.5).unwrap().is_empty());
        assert!(batched_nms::<f64>(&[], &[], &[], 0.5, 1)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn equal_scores_keep_lower_index_first() {
        let boxes = [
            0.0f32, 0.0, 1.0, 1.0, 5.0, 5.0, 6.0, 6.0, 0.0, 0.0, 1.0, 1.0,
        ];
        let scores = [0.5f32, 0.5, 0.5];
        assert_eq!(nms(&boxes, &scores, 0.5).unwrap(), vec![0, 1]);
        // -0.0 and 0.0 are the same score.
        let scores = [0.0f32, -0.0, 0.0];
        assert_eq!(nms(&boxes, &scores, 0.5).unwrap(), vec![0, 1]);
        let scores = [-0.0f32, 0.0, 0.0];
        assert_eq!(nms(&boxes, &scores, 0.5).unwrap(), vec![0, 1]);
    }

    #[test]
    fn iou_equal_to_threshold_does_not_suppress() {
        // [0,0,2,1] vs [0,0,1,1]: IoU exactly 0.5.
        let boxes = [0.0f32, 0.0, 2.0, 1.0, 0.0, 0.0, 1.0, 1.0];
        let scores = [0.9f32, 0.8];
        assert_eq!(nms(&boxes, &scores, 0.5).unwrap(), vec![0, 1]);
        assert_eq!(nms(&boxes, &scores, 0.4999).unwrap(), vec![0]);
        // Identical boxes: IoU exactly 1, never above 1.0.
        let boxes = [1.0f64, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(nms(&boxes, &[0.1, 0.2], 1.0).unwrap(), vec![1, 0]);
        assert_eq!(nms(&boxes, &[0.1, 0.2], 0.99).unwrap(), vec![1]);
    }

    #[test]
    fn degenerate_boxes_are_never_suppressed_by_nan() {
        // Two zero-area boxes at the same spot: 0/0 = NaN, never suppressed.
        let boxes = [1.0f32, 1.0, 1.0, 3.0, 1.0, 1.0, 1.0, 3.0];
        assert_eq!(nms(&boxes, &[0.9, 0.8], 0.0).unwrap(), vec![0, 1]);
        // Inverted boxes against a normal one: inter 0.
        let boxes = [0.0f32, 0.0, 4.0, 4.0, 3.0, 3.0, 1.0, 1.0];
        assert_eq!(nms(&boxes, &[0.9, 0.8], 0.0).unwrap(), vec![0, 1]);
        // A negative threshold suppresses disjoint boxes (IoU 0 > -0.1).
        let boxes = [0.0f32, 0.0, 1.0, 1.0, 5.0, 5.0, 6.0, 6.0];
        assert_eq!(nms(&boxes, &[0.9, 0.8], -0.1).unwrap(), vec![0]);
    }

    #[test]
    fn threshold_is_not_rounded_to_f32() {
        // f32(0.1) = 0.100000001490116... > 0.1 in double.
        let t = 0.1f32;
        assert!((t as f64) > 0.1);
        assert_eq!(f32::threshold(0.1), f32::from_bits(t.to_bits() - 1));
        // Construct an f32 IoU of exactly f32(0.1): inter = 0.1f32 * 10 ... use
        // areas directly: box A [0,0,1,1], B with inter/union == f32(0.1).
        for &thr in &[0.1, 0.7, 0.5, 0.0, -0.0, 1.0, 1e-50, -1e-50, 1e300, -1e300] {
            let t32 = f32::threshold(thr);
            assert!((t32 as f64) <= thr);
            let mut x = t32;
            for _ in 0..8 {
                x = f32::from_bits(if x >= 0.0 {
                    x.to_bits() + 1
                } else {
                    x.to_bits() - 1
                });
                if x.is_finite() {
                    assert_eq!(x > t32, (x as f64) > thr, "thr {thr} x {x}");
                }
            }
            for x in [t32, 0.1f32, 0.7f32, 0.0, -0.0, 1.0, f32::INFINITY, f32::NAN] {
                assert_eq!(x > t32, (x as f64) > thr, "thr {thr} x {x}");
            }
        }
        assert_eq!(f32::threshold(f64::INFINITY), f32::INFINITY);
        assert_eq!(f32::threshold(f64::NEG_INFINITY), f32::NEG_INFINITY);
        assert_eq!(f32::threshold(1e300), f32::MAX);
    }

    #[test]
    fn sort_is_stable_descending() {
        let mut rng = Rng(7);
        for &n in &[0usize, 1, 5, 256, 257, 500, 5000] {
            let s: Vec<f32> = (0..n)
                .map(|_| match rng.below(4) {
                    0 => 0.0,
                    1 => -0.0,
                    _ => (rng.below(50) as f32 - 25.0) * 0.37,
                })
                .collect();
            let got = sort_desc(&s);
            let mut want: Vec<u32> = (0..n as u32).collect();
            want.sort_by(|&a, &b| s[b as usize].partial_cmp(&s[a as usize]).unwrap());
            assert_eq!(got, want, "n={n}");
            let s64: Vec<f64> = s.iter().map(|&x| x as f64 * 1.000001).collect();
            let mut want: Vec<u32> = (0..n as u32).collect();
            want.sort_by(|&a, &b| s64[b as usize].partial_cmp(&s64[a as usize]).unwrap());
            assert_eq!(sort_desc(&s64), want, "f64 n={n}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        let e = nms(&[0.0f32, 0.0, 1.0], &[0.5], 0.5).unwrap_err();
        assert!(e.to_string().starts_with("boxes has shape"), "{e}");
        let e = nms(&[0.0f32, 0.0, 1.0, 1.0], &[0.5, 0.4], 0.5).unwrap_err();
        assert_eq!(
            e.to_string(),
            "scores has shape (2,); expected (1,) to match boxes"
        );
        let e = nms(&[0.0f32, 0.0, f32::NAN, 1.0], &[0.5], 0.5).unwrap_err();
        assert!(e.to_string().starts_with("boxes: must be finite"), "{e}");
        let e = nms(&[0.0f64, 0.0, 1.0, 1.0], &[f64::INFINITY], 0.5).unwrap_err();
        assert!(e.to_string().starts_with("scores: must be finite"), "{e}");
        let e = nms(&[0.0f64, 0.0, 1.0, 1.0], &[0.5], f64::NAN).unwrap_err();
        assert_eq!(e.to_string(), "iou_threshold: must not be NaN");
        let e = batched_nms(&[0.0f64, 0.0, 1.0, 1.0], &[0.5], &[0, 1], 0.5, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "idxs has shape (2,); expected (1,) to match boxes"
        );
        // A NaN far into a long input is found too.
        let mut b = vec![1.0f32; 4 * 1000];
        b[4 * 777 + 3] = f32::NEG_INFINITY;
        let e = nms(&b, &vec![0.5f32; 1000], 0.5).unwrap_err();
        assert!(e.to_string().contains("row 777, column 3"), "{e}");
    }

    #[test]
    fn nms_matches_reference() {
        let mut rng = Rng(1);
        for round in 0..200 {
            let n = [0, 1, 2, 7, 50, 300][round % 6];
            let (b, s, _) = clustered(&mut rng, n, 3, round % 2 == 0);
            let thr = [0.0, 0.1, 0.3, 0.5, 0.7, 1.0, -0.5][round % 7];
            assert_eq!(nms(&b, &s, thr).unwrap(), ref_nms(&b, &s, thr));
            let (b, s) = (to_f32(&b), to_f32(&s));
            assert_eq!(nms(&b, &s, thr).unwrap(), ref_nms(&b, &s, thr));
        }
    }

    #[test]
    fn batched_nms_matches_reference_on_both_paths() {
        let mut rng = Rng(2);
        for round in 0..60 {
            let n = [1, 10, 200, 999, 1000, 1001, 1500, 3000][round % 8];
            let classes = [1, 3, 80, 100][round % 4];
            let (b, s, mut c) = clustered(&mut rng, n, classes, round % 3 == 0);
            if round % 5 == 1 {
                // Sparse and negative class ids.
                c.iter_mut().for_each(|x| *x = *x * 1_000_003 - 40_000_000);
            }
            let thr = [0.1, 0.5, 0.7, 0.0, 1.0][round % 5];
            let threads = [1, 2, 0][round % 3];
            assert_eq!(
                batched_nms(&b, &s, &c, thr, threads).unwrap(),
                ref_batched(&b, &s, &c, thr),
                "f64 round {round}"
            );
            let (b, s) = (to_f32(&b), to_f32(&s));
            assert_eq!(
                batched_nms(&b, &s, &c, thr, threads).unwrap(),
                ref_batched(&b, &s, &c, thr),
                "f32 round {round}"
            );
        }
    }

    #[test]
    fn extreme_and_degenerate_coordinates_match_reference() {
        let mut rng = Rng(4);
        for round in 0..30 {
            let n = [128, 300, 1200][round % 3];
            let (mut b, s, c) = clustered(&mut rng, n, 2, round % 2 == 0);
            match round % 6 {
                0 => b.iter_mut().for_each(|x| *x *= 1e30),
                1 => b.iter_mut().for_each(|x| *x = -*x * 3e300),
                2 => (0..n).for_each(|i| b[4 * i] = 5.0), // one x1 for all
                3 => (0..n).for_each(|i| b[4 * i + 2] = b[4 * i]), // zero width
                4 => b.iter_mut().for_each(|x| *x = (*x / 50.0).round()),
                _ => {}
            }
            let thr = [0.0, 0.3, 0.5, 0.7, 1.0][round % 5];
            assert_eq!(
                nms(&b, &s, thr).unwrap(),
                ref_nms(&b, &s, thr),
                "round {round}"
            );
            assert_eq!(
                batched_nms(&b, &s, &c, thr, 1).unwrap(),
                ref_batched(&b, &s, &c, thr),
                "round {round}"
            );
            if round % 6 != 1 {
                let (b, s) = (to_f32(&b), to_f32(&s));
                assert_eq!(
                    nms(&b, &s, thr).unwrap(),
                    ref_nms(&b, &s, thr),
                    "round {round}"
                );
                // Class ids large enough for the f32 offsets to overflow.
                let c: Vec<i64> = c.iter().map(|&x| x * i64::MAX / 2).collect();
                assert_eq!(
                    batched_nms(&b, &s, &c, thr, 1).unwrap(),
                    ref_batched(&b, &s, &c, thr),
                    "round {round}"
                );
            }
        }
    }

    #[test]
    fn coordinate_trick_rounding_and_mixing_are_reproduced() {
        // Negative coordinates: max + 1 <= 0, classes are not separated and a
        // box of class 1 suppresses one of class 0.
        let boxes = [-10.0f32, -10.0, -5.0, -5.0, -10.0, -10.0, -5.0, -5.0];
        let scores = [0.9f32, 0.8];
        // max = -5, offset = idx * -4: class 0 -> +0, class 1 -> -4.
        let got = batched_nms(&boxes, &scores, &[1, 0], 0.1, 1).unwrap();
        assert_eq!(got, ref_batched(&boxes, &scores, &[1, 0], 0.1));
        // Same classes separated by id only: a negative threshold suppresses
        // across classes on the trick path, never on the vanilla path.
        let boxes = [0.0f64, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0];
        assert_eq!(
            batched_nms(&boxes, &[0.9, 0.8], &[0, 1], -0.5, 1).unwrap(),
            vec![0]
        );
        // Large class ids on f32: offsets absorb low bits; the shifted IoU is
        // what decides.
        let mut rng = Rng(3);
        for _ in 0..50 {
            let (b, s, c) = clustered(&mut rng, 400, 80, false);
            let b: Vec<f32> = b.iter().map(|&x| (x * 3.3) as f32).collect();
            let s = to_f32(&s);
            let c: Vec<i64> = c.iter().map(|&x| x * 997).collect();
            for thr in [0.3, 0.5, 0.7] {
                assert_eq!(
                    batched_nms(&b, &s, &c, thr, 1).unwrap(),
                    ref_batched(&b, &s, &c, thr)
                );
            }
        }
    }
}
