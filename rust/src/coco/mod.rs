//! COCO bbox evaluation with pycocotools semantics (pure Rust).
//!
//! The pipeline mirrors `pycocotools.cocoeval.COCOeval` for `iouType="bbox"`:
//!
//! * [`evaluate`](evaluate::evaluate): per image and category, detections sorted
//!   by score (stable, NaN last), truncated to the largest `maxDet`, greedy
//!   matching at every IoU threshold and area range. The result is a flat table
//!   of per-detection records (`0` false positive, `1` true positive, `2`
//!   ignored for every area range and threshold) and per-bucket counts of
//!   non-ignored ground truth.
//! * [`accumulate`](accumulate::accumulate): the interpolated precision, recall
//!   and score arrays `[T, R, K, A, M]` / `[T, K, A, M]` from such records.
//! * [`summarize`](summarize::summarize): the 12 standard statistics.
//! * [`json`]: COCO ground-truth and result files.
//!
//! Records are independent per image, so they can be produced batch by batch
//! (a streaming metric) and accumulated once at the end.

pub mod accumulate;
pub mod evaluate;
pub mod json;
pub mod params;
pub mod summarize;

mod index;

pub use accumulate::{accumulate, accumulate_with, Accumulation, Records};
pub use evaluate::{evaluate, Detections, EvalParams, Evaluation, GroundTruth};
pub use params::{linspace, Params};
pub use summarize::{summarize, summarize_stat};

use std::cmp::Ordering;

/// The distinct values of `ids` that are not in `allowed`, in first-seen
/// order (checks that results name only ground-truth images).
pub fn missing_ids(ids: &[i64], allowed: &[i64]) -> Vec<i64> {
    let index = index::IdIndex::new(allowed);
    let mut missing: Vec<i64> = Vec::new();
    for &id in ids {
        if index.get(id).is_none() && !missing.contains(&id) {
            missing.push(id);
            if missing.len() >= 20 {
                break;
            }
        }
    }
    missing
}

/// pycocotools' `np.spacing(1)`, added to the precision denominator.
pub const EPS: f64 = f64::EPSILON;

/// Order of `np.argsort(-scores, kind="mergesort")`: descending score, NaN last.
/// Used with a stable sort, ties keep their input order.
#[inline]
pub(crate) fn by_score_desc(a: f64, b: f64) -> Ordering {
    let (ka, kb) = (-a, -b);
    match (ka.is_nan(), kb.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => ka.partial_cmp(&kb).unwrap_or(Ordering::Equal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_missing_ids() {
        assert_eq!(missing_ids(&[3, 9, 3, 7, 9], &[1, 3, 5]), vec![9, 7]);
        assert!(missing_ids(&[], &[1]).is_empty());
    }

    #[test]
    fn score_order_is_descending_with_nan_last() {
        let mut v = [0.5, f64::NAN, 0.9, 0.5, -0.0, 0.0];
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| by_score_desc(v[a], v[b]));
        assert_eq!(idx, vec![2, 0, 3, 4, 5, 1]);
        v.sort_by(|a, b| by_score_desc(*a, *b));
        assert!(v[5].is_nan());
    }
}
