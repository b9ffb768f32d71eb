//! `nms` and `batched_nms` on arbitrary boxes, scores, classes and
//! thresholds (NaN and infinities included): an error or a valid keep list,
//! never a panic. A keep list holds distinct in-range indices in
//! non-increasing score order, and `batched_nms` with class 0 everywhere equals `nms`
//! on the same boxes when there are at most 1000 of them.
#![no_main]

use _native::nms::{batched_nms, nms};
use libfuzzer_sys::fuzz_target;

/// Bytes per box: four coordinates and a score (f32), a class byte.
const RECORD: usize = 5 * 4 + 1;

fn check(keep: &[i64], scores: &[f32]) {
    let n = scores.len();
    let mut seen = vec![false; n];
    for &k in keep {
        let k = usize::try_from(k).expect("negative index");
        assert!(k < n, "index {k} out of range {n}");
        assert!(!seen[k], "index {k} kept twice");
        seen[k] = true;
    }
    for w in keep.windows(2) {
        assert!(
            scores[w[0] as usize] >= scores[w[1] as usize],
            "not in score order"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let threshold = f64::from(i8::from_le_bytes([data[0]])) / 64.0;
    let threads = usize::from(data[1] % 3);
    let body = &data[2..];
    let n = body.len() / RECORD;
    let mut boxes = Vec::with_capacity(4 * n);
    let mut scores = Vec::with_capacity(n);
    let mut classes = Vec::with_capacity(n);
    for r in body.chunks_exact(RECORD) {
        let f = |k: usize| f32::from_le_bytes([r[4 * k], r[4 * k + 1], r[4 * k + 2], r[4 * k + 3]]);
        boxes.extend_from_slice(&[f(0), f(1), f(2), f(3)]);
        scores.push(f(4));
        classes.push(i64::from(r[20] % 4) - 1);
    }
    let single = nms(&boxes, &scores, threshold);
    if let Ok(keep) = &single {
        check(keep, &scores);
    }
    let batched = batched_nms(&boxes, &scores, &classes, threshold, threads);
    if let Ok(keep) = &batched {
        check(keep, &scores);
    }
    assert_eq!(single.is_ok(), batched.is_ok());
    let one_class = vec![0i64; n];
    let same = batched_nms(&boxes, &scores, &one_class, threshold, threads);
    if let (Ok(a), Ok(b)) = (&single, &same) {
        if n <= 1000 {
            assert_eq!(a, b);
        }
    }
});
