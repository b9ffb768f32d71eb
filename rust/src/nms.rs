//! Non-maximum suppression over xyxy boxes, index-identical to
//! `torchvision.ops.nms` on CPU. Pure Rust: slices in, `Vec` out.

use crate::error::{Error, Result};

/// Box coordinate type: the op runs in the input's own float width.
pub trait Coord: Copy + PartialOrd + Send + Sync + std::ops::Sub<Output = Self> {
    fn zero() -> Self;
    fn mul(self, other: Self) -> Self;
    fn add(self, other: Self) -> Self;
    fn div(self, other: Self) -> Self;
    fn to_f64(self) -> f64;
    fn is_finite(self) -> bool;
}

macro_rules! impl_coord {
    ($t:ty) => {
        impl Coord for $t {
            fn zero() -> Self {
                0.0
            }
            fn mul(self, other: Self) -> Self {
                self * other
            }
            fn add(self, other: Self) -> Self {
                self + other
            }
            fn div(self, other: Self) -> Self {
                self / other
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    };
}
impl_coord!(f32);
impl_coord!(f64);

/// Greedy NMS. `boxes` is row-major `[n, 4]` xyxy, `scores` has length `n`.
/// Returns the kept indices in decreasing score order (ties: lower index first).
pub fn nms<T: Coord>(boxes: &[T], scores: &[T], iou_threshold: f64) -> Result<Vec<i64>> {
    let n = scores.len();
    if boxes.len() != 4 * n {
        return Err(Error::shape(
            "boxes",
            format!("({}, 4)", boxes.len() / 4),
            format!("({n}, 4) to match scores"),
        ));
    }
    let mut order: Vec<usize> = (0..n).collect();
    // Stable descending sort, NaN first, as torch's `sort(stable=True, descending=True)`.
    order.sort_by(|&a, &b| {
        let (sa, sb) = (scores[a].to_f64(), scores[b].to_f64());
        sb.partial_cmp(&sa)
            .unwrap_or_else(|| sa.is_nan().cmp(&sb.is_nan()).reverse())
    });
    let area =
        |i: usize| (boxes[4 * i + 2] - boxes[4 * i]).mul(boxes[4 * i + 3] - boxes[4 * i + 1]);
    let areas: Vec<T> = (0..n).map(area).collect();
    let mut suppressed = vec![false; n];
    let mut keep = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i as i64);
        let bi = &boxes[4 * i..4 * i + 4];
        for &j in &order[pos + 1..] {
            if suppressed[j] {
                continue;
            }
            let bj = &boxes[4 * j..4 * j + 4];
            let max = |a: T, b: T| if a > b { a } else { b };
            let min = |a: T, b: T| if a < b { a } else { b };
            let w = max(T::zero(), min(bi[2], bj[2]) - max(bi[0], bj[0]));
            let h = max(T::zero(), min(bi[3], bj[3]) - max(bi[1], bj[1]));
            let inter = w.mul(h);
            let iou = inter.div(areas[i].add(areas[j]) - inter);
            if iou.to_f64() > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_highest_and_drops_overlaps() {
        let boxes = [
            0.0f32, 0.0, 10.0, 10.0, 1.0, 1.0, 10.0, 10.0, 20.0, 20.0, 30.0, 30.0,
        ];
        let scores = [0.9f32, 0.8, 0.7];
        assert_eq!(nms(&boxes, &scores, 0.5).unwrap(), vec![0, 2]);
    }
}
