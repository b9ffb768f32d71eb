//! `COCOeval.accumulate`: interpolated precision, recall and scores.

use rayon::prelude::*;

use super::evaluate::{FALSE_POSITIVE, TRUE_POSITIVE};
use super::index::IdIndex;
use super::EPS;
use crate::alloc;
use crate::error::{Error, Result};
use crate::parallel::with_threads;

/// Evaluation records to accumulate (see [`super::Evaluation`]); rows may come
/// from several evaluations (batches, processes) in any order: detections are
/// ordered by (image, rank) within each category before accumulating, which
/// is pycocotools' order when image ids follow `params.imgIds`.
#[derive(Debug, Clone, Copy)]
pub struct Records<'a> {
    pub dt_image: &'a [i64],
    pub dt_category: &'a [i64],
    pub dt_rank: &'a [i64],
    pub dt_score: &'a [f64],
    /// `[n, A, T]` flags.
    pub dt_flags: &'a [u8],
    pub gt_category: &'a [i64],
    /// `[m, A]` non-ignored ground-truth counts.
    pub gt_count: &'a [i64],
}

/// `precision` and `scores` are `[T, R, K, A, M]`, `recall` is `[T, K, A, M]`,
/// C order, `-1` where a category has no non-ignored ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Accumulation {
    pub shape: [usize; 5],
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub scores: Vec<f64>,
}

/// A u64 whose ascending order is `np.argsort(-score)`'s: descending score,
/// -0.0 equal to 0.0, NaN last.
#[inline]
fn score_key(s: f64) -> u64 {
    if s.is_nan() {
        return u64::MAX;
    }
    let s = if s == 0.0 { 0.0 } else { s };
    let bits = s.to_bits();
    let ord = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    !ord
}

struct Local {
    precision: Vec<f64>, // [T, R, A, M]
    recall: Vec<f64>,    // [T, A, M]
    scores: Vec<f64>,    // [T, R, A, M]
}

/// Accumulates records over the categories `cat_ids` (rows of other categories
/// are skipped). `num_iou`/`num_areas` describe the flags; `max_dets` must be
/// sorted ascending like pycocotools' (it sorts them in `evaluate`).
pub fn accumulate(
    rec: &Records<'_>,
    cat_ids: &[i64],
    num_iou: usize,
    num_areas: usize,
    rec_thrs: &[f64],
    max_dets: &[usize],
    num_threads: usize,
) -> Result<Accumulation> {
    accumulate_with(
        rec,
        cat_ids,
        num_iou,
        num_areas,
        rec_thrs,
        max_dets,
        num_threads,
        true,
    )
}

/// [`accumulate`]; with `with_scores = false` the `scores` array is left
/// empty (a metric that reports only AP/AR does not need it).
#[allow(clippy::too_many_arguments)]
pub fn accumulate_with(
    rec: &Records<'_>,
    cat_ids: &[i64],
    num_iou: usize,
    num_areas: usize,
    rec_thrs: &[f64],
    max_dets: &[usize],
    num_threads: usize,
    with_scores: bool,
) -> Result<Accumulation> {
    let n = rec.dt_score.len();
    let at = num_areas * num_iou;
    for (arg, len) in [
        ("dt_image", rec.dt_image.len()),
        ("dt_category", rec.dt_category.len()),
        ("dt_rank", rec.dt_rank.len()),
    ] {
        if len != n {
            return Err(Error::shape(arg, format!("({len},)"), format!("({n},)")));
        }
    }
    if rec.dt_flags.len() != n * at {
        return Err(Error::shape(
            "dt_flags",
            format!("[{} values]", rec.dt_flags.len()),
            format!("({n}, {at})"),
        ));
    }
    let m_gt = rec.gt_category.len();
    if rec.gt_count.len() != m_gt * num_areas {
        return Err(Error::shape(
            "gt_count",
            format!("[{} values]", rec.gt_count.len()),
            format!("({m_gt}, {num_areas})"),
        ));
    }
    let (t_n, r_n, k_n, a_n, m_n) = (
        num_iou,
        rec_thrs.len(),
        cat_ids.len(),
        num_areas,
        max_dets.len(),
    );
    // The output is the largest buffer; every other size is a sub-product of
    // its dimensions (checked with empty ones counted as 1) or bounded by the
    // input's length.
    let dims = [t_n, r_n, k_n, a_n, m_n];
    alloc::product("recThrs/catIds/maxDets", &dims.map(|d| d.max(1)))?;
    let cells = alloc::product("recThrs/catIds/maxDets", &dims)?;
    let cat_index = IdIndex::new(cat_ids);

    let mut npig = vec![0i64; k_n * a_n];
    for (j, &c) in rec.gt_category.iter().enumerate() {
        if let Some(k) = cat_index.get(c) {
            for a in 0..a_n {
                npig[k as usize * a_n + a] += rec.gt_count[j * a_n + a];
            }
        }
    }

    // Detections grouped by category in one sequential pass (counting sort):
    // each category's scores, images, ranks and flag rows become contiguous.
    let kpos: Vec<u32> = rec
        .dt_category
        .iter()
        .map(|&c| cat_index.get(c).unwrap_or(u32::MAX))
        .collect();
    let mut start = vec![0usize; k_n + 1];
    for &k in &kpos {
        if k != u32::MAX {
            start[k as usize + 1] += 1;
        }
    }
    for k in 0..k_n {
        start[k + 1] += start[k];
    }
    let total = start[k_n];
    let mut fill = start.clone();
    let mut g_key = vec![0u64; total];
    let mut g_image = vec![0i64; total];
    let mut g_rank = vec![0i64; total];
    let mut g_score = vec![0f64; total];
    let mut g_flags = vec![0u8; total * at];
    for (j, &k) in kpos.iter().enumerate() {
        if k != u32::MAX {
            let d = fill[k as usize];
            fill[k as usize] += 1;
            let s = rec.dt_score[j];
            g_key[d] = score_key(s);
            g_image[d] = rec.dt_image[j];
            g_rank[d] = rec.dt_rank[j];
            g_score[d] = s;
            g_flags[d * at..(d + 1) * at].copy_from_slice(&rec.dt_flags[j * at..(j + 1) * at]);
        }
    }

    let thrs_ascending = rec_thrs.windows(2).all(|w| w[0] <= w[1]);
    let new_local = || Local {
        precision: vec![-1.0; t_n * r_n * a_n * m_n],
        recall: vec![-1.0; t_n * a_n * m_n],
        scores: vec![
            -1.0;
            if with_scores {
                t_n * r_n * a_n * m_n
            } else {
                0
            }
        ],
    };
    // Fills `local` for category k; false (and `local` untouched) when the
    // category has no non-ignored ground truth: its entries stay -1.
    let per_cat = |k: usize, local: &mut Local| -> bool {
        if (0..a_n).all(|a| npig[k * a_n + a] == 0) {
            return false;
        }
        local.precision.iter_mut().for_each(|v| *v = -1.0);
        local.recall.iter_mut().for_each(|v| *v = -1.0);
        local.scores.iter_mut().for_each(|v| *v = -1.0);
        let (lo, hi) = (start[k], start[k + 1]);
        let n_k = hi - lo;
        let (key, image, rank_c) = (&g_key[lo..hi], &g_image[lo..hi], &g_rank[lo..hi]);
        // pycocotools' order: images in id order, each image's detections in
        // rank order, then a stable sort by descending score. (image, rank)
        // is unique within a category, so one unstable sort on the triple
        // gives exactly that order.
        let mut perm: Vec<u32> = (0..n_k as u32).collect();
        perm.sort_unstable_by_key(|&i| (key[i as usize], image[i as usize], rank_c[i as usize]));
        let rank: Vec<i64> = perm.iter().map(|&i| rank_c[i as usize]).collect();
        let score: Vec<f64> = perm.iter().map(|&i| g_score[lo + i as usize]).collect();
        // flags as [A*T][n_k] in score order: transpose the category's rows
        // in input order (sequential reads), then permute each column (a few
        // KB, cache-resident).
        let mut flags = vec![0u8; at * n_k];
        if n_k > 0 && at > 0 {
            let mut cols = vec![0u8; at * n_k];
            for (i, row) in g_flags[lo * at..hi * at].chunks_exact(at).enumerate() {
                for (c, &f) in row.iter().enumerate() {
                    cols[c * n_k + i] = f;
                }
            }
            for (dst, src) in flags.chunks_exact_mut(n_k).zip(cols.chunks_exact(n_k)) {
                for (d, &i) in dst.iter_mut().zip(&perm) {
                    *d = src[i as usize];
                }
            }
        }
        let mut sub: Vec<u32> = Vec::with_capacity(n_k);
        // Per (m, a, t) only the positions where recall changes matter: the
        // first index with rc >= thr is 0 or a true positive, and between true
        // positives precision only decreases, so the interpolated (running
        // max) precision at any index is the max over later true positives.
        // `steps` holds (index, rc, pr) at index 0 and at every true positive;
        // fp at index q is q + 1 - tp - ignored.
        let mut steps: Vec<(u32, f64, f64)> = Vec::with_capacity(n_k + 1);
        for (m, &max_det) in max_dets.iter().enumerate() {
            sub.clear();
            sub.extend((0..n_k as u32).filter(|&i| rank[i as usize] < max_det as i64));
            let nd = sub.len();
            for a in 0..a_n {
                let np = npig[k * a_n + a];
                if np == 0 {
                    continue;
                }
                let npf = np as f64;
                for t in 0..t_n {
                    let col = &flags[(a * t_n + t) * n_k..(a * t_n + t + 1) * n_k];
                    steps.clear();
                    let (mut tp, mut ig) = (0u64, 0u64);
                    if nd > 0 && col[sub[0] as usize] != TRUE_POSITIVE {
                        steps.push((0, 0.0 / npf, 0.0));
                    }
                    for (q, &i) in sub.iter().enumerate() {
                        let f = col[i as usize];
                        if f == TRUE_POSITIVE {
                            tp += 1;
                            let fp = q as u64 + 1 - tp - ig;
                            let (tpf, fpf) = (tp as f64, fp as f64);
                            steps.push((q as u32, tpf / npf, tpf / (fpf + tpf + EPS)));
                        } else {
                            ig += (f != FALSE_POSITIVE) as u64;
                        }
                    }
                    local.recall[(t * a_n + a) * m_n + m] =
                        if nd > 0 { tp as f64 / npf } else { 0.0 };
                    // Envelope: running max from the right.
                    for s in (1..steps.len()).rev() {
                        if steps[s].2 > steps[s - 1].2 {
                            steps[s - 1].2 = steps[s].2;
                        }
                    }
                    let mut stopped = false;
                    let mut cursor = 0usize;
                    for (r, &thr) in rec_thrs.iter().enumerate() {
                        let at_r = ((t * r_n + r) * a_n + a) * m_n + m;
                        let (mut q, mut sc) = (0.0, 0.0);
                        if !stopped {
                            // searchsorted(rc, thr, "left"); a forward walk
                            // when the thresholds ascend
                            let s = if thrs_ascending {
                                while cursor < steps.len() && steps[cursor].1 < thr {
                                    cursor += 1;
                                }
                                cursor
                            } else {
                                steps.partition_point(|st| st.1 < thr)
                            };
                            if s < steps.len() {
                                q = steps[s].2;
                                sc = score[sub[steps[s].0 as usize] as usize];
                            } else {
                                stopped = true;
                            }
                        }
                        local.precision[at_r] = q;
                        if with_scores {
                            local.scores[at_r] = sc;
                        }
                    }
                }
            }
        }
        true
    };

    let mut out = Accumulation {
        shape: [t_n, r_n, k_n, a_n, m_n],
        precision: alloc::filled("precision", cells, -1.0)?,
        recall: alloc::filled("recall", t_n * k_n * a_n * m_n, -1.0)?,
        scores: alloc::filled("scores", if with_scores { cells } else { 0 }, -1.0)?,
    };
    let am = a_n * m_n;
    let scatter = |out: &mut Accumulation, k: usize, local: &Local| {
        for t in 0..t_n {
            let src = t * am;
            let dst = (t * k_n + k) * am;
            out.recall[dst..dst + am].copy_from_slice(&local.recall[src..src + am]);
            for r in 0..r_n {
                let src = (t * r_n + r) * am;
                let dst = ((t * r_n + r) * k_n + k) * am;
                out.precision[dst..dst + am].copy_from_slice(&local.precision[src..src + am]);
                if with_scores {
                    out.scores[dst..dst + am].copy_from_slice(&local.scores[src..src + am]);
                }
            }
        }
    };
    // Parallel over categories only when there is enough work to amortize it.
    // (each category also costs ~T*R*A*M output writes, whatever its size)
    let work = n + k_n * (t_n * r_n * a_n * m_n) / 8;
    if k_n > 1 && work >= 100_000 && num_threads != 1 {
        let locals: Vec<Option<Local>> = with_threads(num_threads, || {
            (0..k_n)
                .into_par_iter()
                .map(|k| {
                    let mut local = new_local();
                    per_cat(k, &mut local).then_some(local)
                })
                .collect()
        })?;
        for (k, local) in locals.iter().enumerate() {
            if let Some(local) = local {
                scatter(&mut out, k, local);
            }
        }
    } else {
        let mut local = new_local();
        for k in 0..k_n {
            if per_cat(k, &mut local) {
                scatter(&mut out, k, &local);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_key_orders_like_numpy() {
        let v = [
            0.5,
            f64::NAN,
            0.9,
            -0.0,
            0.0,
            -1.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by_key(|&i| score_key(v[i]));
        assert_eq!(idx, vec![6, 2, 0, 3, 4, 5, 7, 1]);
    }

    #[test]
    fn single_true_positive_has_pycocotools_epsilon() {
        let rec = Records {
            dt_image: &[0],
            dt_category: &[1],
            dt_rank: &[0],
            dt_score: &[0.9],
            dt_flags: &[TRUE_POSITIVE],
            gt_category: &[1],
            gt_count: &[1],
        };
        let acc = accumulate(&rec, &[1], 1, 1, &[0.0, 0.5, 1.0], &[100], 1).unwrap();
        assert_eq!(acc.shape, [1, 3, 1, 1, 1]);
        assert_eq!(acc.precision, vec![0.9999999999999998; 3]);
        assert_eq!(acc.recall, vec![1.0]);
        assert_eq!(acc.scores, vec![0.9; 3]);
        let lean = accumulate_with(&rec, &[1], 1, 1, &[0.0, 0.5, 1.0], &[100], 1, false).unwrap();
        assert_eq!(lean.precision, acc.precision);
        assert!(lean.scores.is_empty());
    }

    #[test]
    fn categories_without_ground_truth_stay_minus_one() {
        let rec = Records {
            dt_image: &[0, 0],
            dt_category: &[1, 2],
            dt_rank: &[0, 0],
            dt_score: &[0.9, 0.8],
            dt_flags: &[FALSE_POSITIVE, FALSE_POSITIVE],
            gt_category: &[1],
            gt_count: &[1],
        };
        let acc = accumulate(&rec, &[1, 2], 1, 1, &[0.0, 1.0], &[1, 100], 1).unwrap();
        // [T=1, R=2, K=2, A=1, M=2]
        assert_eq!(
            acc.precision,
            vec![0.0, 0.0, -1.0, -1.0, 0.0, 0.0, -1.0, -1.0]
        );
        assert_eq!(acc.recall, vec![0.0, 0.0, -1.0, -1.0]);
    }

    #[test]
    fn ground_truth_without_detections_and_no_areas() {
        let rec = Records {
            dt_image: &[],
            dt_category: &[],
            dt_rank: &[],
            dt_score: &[],
            dt_flags: &[],
            gt_category: &[4],
            gt_count: &[2],
        };
        let acc = accumulate(&rec, &[4], 1, 1, &[0.0, 1.0], &[10], 1).unwrap();
        assert_eq!(acc.precision, vec![0.0, 0.0]);
        assert_eq!(acc.recall, vec![0.0]);
        let none = Records {
            gt_count: &[],
            gt_category: &[],
            ..rec
        };
        let acc = accumulate(&none, &[4], 3, 0, &[0.0], &[10], 1).unwrap();
        assert!(acc.precision.is_empty());
    }

    #[test]
    fn rejects_bad_flag_shape() {
        let rec = Records {
            dt_image: &[0],
            dt_category: &[1],
            dt_rank: &[0],
            dt_score: &[0.9],
            dt_flags: &[0, 0],
            gt_category: &[],
            gt_count: &[],
        };
        assert!(accumulate(&rec, &[1], 1, 1, &[0.0], &[1], 1).is_err());
    }
}
