//! `COCOeval.summarize`: the 12 standard bbox statistics.

use crate::error::{Error, Result};

/// numpy's pairwise summation of a contiguous float64 array (`np.add.reduce`),
/// so means equal `np.mean` to the last bit.
fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// `np.mean(v)`; -1 when empty (pycocotools' convention).
fn mean_or_minus_one(v: &[f64]) -> f64 {
    if v.is_empty() {
        -1.0
    } else {
        pairwise_sum(v) / v.len() as f64
    }
}

/// One `_summarize` call. `precision` is `[T, R, K, A, M]` (`shape`), `recall`
/// `[T, K, A, M]`. Selects IoU rows equal to `iou_thr` (all when `None`), the
/// area ranges labelled `area_lbl` and the `maxDets` equal to `max_det`
/// (numpy's advanced indexing: the two index lists are broadcast together),
/// then averages the entries > -1.
#[allow(clippy::too_many_arguments)]
pub fn summarize_stat(
    precision: &[f64],
    recall: &[f64],
    shape: [usize; 5],
    iou_thrs: &[f64],
    area_lbls: &[String],
    max_dets: &[usize],
    ap: bool,
    iou_thr: Option<f64>,
    area_lbl: &str,
    max_det: usize,
) -> Result<f64> {
    let [t_n, r_n, k_n, a_n, m_n] = shape;
    if precision.len() != t_n * r_n * k_n * a_n * m_n || recall.len() != t_n * k_n * a_n * m_n {
        return Err(Error::value("precision", "does not match its shape"));
    }
    let tind: Vec<usize> = match iou_thr {
        None => (0..t_n).collect(),
        Some(v) => (0..t_n.min(iou_thrs.len()))
            .filter(|&t| iou_thrs[t] == v)
            .collect(),
    };
    let pairs = selected_pairs(a_n, m_n, area_lbls, max_dets, area_lbl, max_det);
    let mut vals: Vec<f64> = Vec::new();
    for &t in &tind {
        if ap {
            for r in 0..r_n {
                for k in 0..k_n {
                    for &(a, m) in &pairs {
                        let v = precision[(((t * r_n + r) * k_n + k) * a_n + a) * m_n + m];
                        if v > -1.0 {
                            vals.push(v);
                        }
                    }
                }
            }
        } else {
            for k in 0..k_n {
                for &(a, m) in &pairs {
                    let v = recall[((t * k_n + k) * a_n + a) * m_n + m];
                    if v > -1.0 {
                        vals.push(v);
                    }
                }
            }
        }
    }
    Ok(mean_or_minus_one(&vals))
}

/// pycocotools' `_summarizeDets`: AP@[.5:.95] (maxDets=100, hard-coded as in
/// pycocotools), AP50, AP75, AP small/medium/large, AR@maxDets[0..3], AR
/// small/medium/large. Needs at least three `max_dets`.
///
/// One pass over `precision` in memory order collects the entries of all six
/// AP statistics (memory order is each statistic's numpy order: T, R, K, then
/// the (area, maxDet) pairs), then each mean is numpy's.
pub fn summarize(
    precision: &[f64],
    recall: &[f64],
    shape: [usize; 5],
    iou_thrs: &[f64],
    area_lbls: &[String],
    max_dets: &[usize],
) -> Result<[f64; 12]> {
    if max_dets.len() < 3 {
        return Err(Error::value(
            "maxDets",
            format!("summarize needs at least 3 values, got {}", max_dets.len()),
        ));
    }
    let [t_n, r_n, k_n, a_n, m_n] = shape;
    if precision.len() != t_n * r_n * k_n * a_n * m_n || recall.len() != t_n * k_n * a_n * m_n {
        return Err(Error::value("precision", "does not match its shape"));
    }
    let m = max_dets;
    let specs: [(bool, Option<f64>, &str, usize); 12] = [
        (true, None, "all", 100),
        (true, Some(0.5), "all", m[2]),
        (true, Some(0.75), "all", m[2]),
        (true, None, "small", m[2]),
        (true, None, "medium", m[2]),
        (true, None, "large", m[2]),
        (false, None, "all", m[0]),
        (false, None, "all", m[1]),
        (false, None, "all", m[2]),
        (false, None, "small", m[2]),
        (false, None, "medium", m[2]),
        (false, None, "large", m[2]),
    ];
    // Per statistic: which IoU rows, and which (area, maxDet) cells it takes.
    let mut t_sel = vec![[false; 12]; t_n];
    let mut cell_sel = vec![[false; 12]; a_n * m_n];
    for (i, &(_, thr, lbl, md)) in specs.iter().enumerate() {
        for (t, row) in t_sel.iter_mut().enumerate() {
            row[i] = match thr {
                None => true,
                Some(v) => t < iou_thrs.len() && iou_thrs[t] == v,
            };
        }
        for (a, m) in selected_pairs(a_n, m_n, area_lbls, max_dets, lbl, md) {
            cell_sel[a * m_n + m][i] = true;
        }
    }
    let mut vals: Vec<Vec<f64>> = vec![Vec::new(); 12];
    let am = a_n * m_n;
    for t in 0..t_n {
        let ts = &t_sel[t];
        if !ts.iter().any(|&b| b) {
            continue;
        }
        for (i, &(ap, ..)) in specs.iter().enumerate() {
            if !ts[i] {
                continue;
            }
            let cells: Vec<usize> = (0..am).filter(|&c| cell_sel[c][i]).collect();
            if cells.is_empty() {
                continue;
            }
            let v = &mut vals[i];
            if ap {
                let block = &precision[t * r_n * k_n * am..(t + 1) * r_n * k_n * am];
                for rk in block.chunks_exact(am) {
                    for &c in &cells {
                        if rk[c] > -1.0 {
                            v.push(rk[c]);
                        }
                    }
                }
            } else {
                let block = &recall[t * k_n * am..(t + 1) * k_n * am];
                for kk in block.chunks_exact(am) {
                    for &c in &cells {
                        if kk[c] > -1.0 {
                            v.push(kk[c]);
                        }
                    }
                }
            }
        }
    }
    let mut stats = [0.0; 12];
    for (s, v) in stats.iter_mut().zip(vals.iter()) {
        *s = mean_or_minus_one(v);
    }
    Ok(stats)
}

/// The (area, maxDet) index pairs numpy's `s[..., aind, mind]` selects.
fn selected_pairs(
    a_n: usize,
    m_n: usize,
    area_lbls: &[String],
    max_dets: &[usize],
    area_lbl: &str,
    max_det: usize,
) -> Vec<(usize, usize)> {
    let aind: Vec<usize> = (0..a_n.min(area_lbls.len()))
        .filter(|&a| area_lbls[a] == area_lbl)
        .collect();
    let mind: Vec<usize> = (0..m_n.min(max_dets.len()))
        .filter(|&m| max_dets[m] == max_det)
        .collect();
    if aind.len() == mind.len() {
        aind.into_iter().zip(mind).collect()
    } else if aind.len() == 1 {
        mind.iter().map(|&m| (aind[0], m)).collect()
    } else if mind.len() == 1 {
        aind.iter().map(|&a| (a, mind[0])).collect()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_is_numpy_order() {
        let v: Vec<f64> = (0..300).map(|i| 0.1 * i as f64).collect();
        let naive: f64 = v.iter().sum();
        assert!((pairwise_sum(&v) - naive).abs() < 1e-9);
        assert_eq!(pairwise_sum(&[1.0, 2.0]), 3.0);
        assert_eq!(mean_or_minus_one(&[]), -1.0);
    }

    #[test]
    fn summarizes_a_perfect_result() {
        let shape = [2, 3, 1, 4, 3];
        let precision = vec![1.0; 2 * 3 * 4 * 3];
        let recall = vec![1.0; 2 * 4 * 3];
        let lbls: Vec<String> = ["all", "small", "medium", "large"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let stats = summarize(
            &precision,
            &recall,
            shape,
            &[0.5, 0.75],
            &lbls,
            &[1, 10, 100],
        )
        .unwrap();
        assert_eq!(stats, [1.0; 12]);
        // maxDets without 100: stats[0] is -1 as in pycocotools.
        let stats = summarize(
            &precision,
            &recall,
            shape,
            &[0.5, 0.75],
            &lbls,
            &[1, 10, 50],
        )
        .unwrap();
        assert_eq!(stats[0], -1.0);
        assert_eq!(stats[1], 1.0);
    }
}
