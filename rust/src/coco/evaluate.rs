//! Per image and category evaluation (`COCOeval.evaluateImg` for bbox).

use rayon::prelude::*;

use super::by_score_desc;
use super::index::IdIndex;
use crate::alloc;
use crate::error::{Error, Result};
use crate::parallel::with_threads;

/// Record flag of a detection at one (area range, IoU threshold).
pub const FALSE_POSITIVE: u8 = 0;
/// Matched to a non-ignored ground truth.
pub const TRUE_POSITIVE: u8 = 1;
/// Matched to an ignored ground truth, or unmatched and outside the area range.
pub const IGNORED: u8 = 2;

/// Ground-truth annotations, one entry per annotation (file order).
/// `bbox` is `[x, y, w, h]` flattened (length `4 * n`).
#[derive(Debug, Clone, Copy)]
pub struct GroundTruth<'a> {
    pub id: &'a [i64],
    pub image_id: &'a [i64],
    pub category_id: &'a [i64],
    pub bbox: &'a [f64],
    pub area: &'a [f64],
    pub iscrowd: &'a [u8],
}

/// Detections, one entry per detection (file order). `area` is the area used
/// for the area-range test of unmatched detections (`w * h` after `loadRes`).
#[derive(Debug, Clone, Copy)]
pub struct Detections<'a> {
    pub id: &'a [i64],
    pub image_id: &'a [i64],
    pub category_id: &'a [i64],
    pub bbox: &'a [f64],
    pub area: &'a [f64],
    pub score: &'a [f64],
}

/// What `evaluate` needs of the parameters.
#[derive(Debug, Clone, Copy)]
pub struct EvalParams<'a> {
    pub iou_thrs: &'a [f64],
    pub area_rng: &'a [[f64; 2]],
    /// The largest `maxDets` value: detections kept per image and category.
    pub max_det: usize,
    pub use_cats: bool,
}

/// Per-detection and per-bucket records of an evaluation.
///
/// Detection rows are grouped by image (in `img_ids` order), then category (in
/// category order), then score rank. `dt_flags` holds `A * T` flags per row
/// (area-major). Ground-truth rows hold, per (image, category) bucket with at
/// least one ground truth, the number of non-ignored ground truths per area.
/// With `use_cats = false` the category of every row is `-1`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    pub num_areas: usize,
    pub num_iou: usize,
    pub dt_image: Vec<i64>,
    pub dt_category: Vec<i64>,
    pub dt_rank: Vec<i64>,
    pub dt_score: Vec<f64>,
    pub dt_flags: Vec<u8>,
    pub gt_image: Vec<i64>,
    pub gt_category: Vec<i64>,
    pub gt_count: Vec<i64>,
}

impl Evaluation {
    fn append(&mut self, other: Evaluation) {
        self.dt_image.extend(other.dt_image);
        self.dt_category.extend(other.dt_category);
        self.dt_rank.extend(other.dt_rank);
        self.dt_score.extend(other.dt_score);
        self.dt_flags.extend(other.dt_flags);
        self.gt_image.extend(other.gt_image);
        self.gt_category.extend(other.gt_category);
        self.gt_count.extend(other.gt_count);
    }
}

fn check_len(arg: &'static str, len: usize, n: usize, per: usize) -> Result<()> {
    if len != n * per {
        let expected = if per == 1 {
            format!("({n},)")
        } else {
            format!("({n}, {per})")
        };
        let got = if per == 1 {
            format!("({len},)")
        } else {
            format!("({}, {per}) [{len} values]", len / per)
        };
        return Err(Error::shape(arg, got, expected));
    }
    Ok(())
}

impl GroundTruth<'_> {
    pub fn len(&self) -> usize {
        self.id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    fn validate(&self) -> Result<()> {
        let n = self.len();
        check_len("gt image_id", self.image_id.len(), n, 1)?;
        check_len("gt category_id", self.category_id.len(), n, 1)?;
        check_len("gt bbox", self.bbox.len(), n, 4)?;
        check_len("gt area", self.area.len(), n, 1)?;
        check_len("gt iscrowd", self.iscrowd.len(), n, 1)
    }
}

impl Detections<'_> {
    pub fn len(&self) -> usize {
        self.id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    fn validate(&self) -> Result<()> {
        let n = self.len();
        check_len("dt image_id", self.image_id.len(), n, 1)?;
        check_len("dt category_id", self.category_id.len(), n, 1)?;
        check_len("dt bbox", self.bbox.len(), n, 4)?;
        check_len("dt area", self.area.len(), n, 1)?;
        check_len("dt score", self.score.len(), n, 1)
    }
}

/// Positions of the annotations of each image (file order), by counting sort.
fn by_image(pos: &[u32], num_images: usize) -> (Vec<usize>, Vec<u32>) {
    let mut start = vec![0usize; num_images + 1];
    for &p in pos {
        if p != u32::MAX {
            start[p as usize + 1] += 1;
        }
    }
    for i in 0..num_images {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut items = vec![0u32; start[num_images]];
    for (j, &p) in pos.iter().enumerate() {
        if p != u32::MAX {
            items[fill[p as usize]] = j as u32;
            fill[p as usize] += 1;
        }
    }
    (start, items)
}

/// IoU of a detection and a ground truth box, exactly as pycocotools' `bbIou`.
#[inline]
fn bb_iou(d: &[f64], g: &[f64], crowd: bool) -> f64 {
    let da = d[2] * d[3];
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let u = if crowd { da } else { da + g[2] * g[3] - i };
    i / u
}

struct Ctx<'a> {
    gt: &'a GroundTruth<'a>,
    dt: &'a Detections<'a>,
    p: &'a EvalParams<'a>,
    /// The smallest starting `best` over the thresholds: an IoU below it can
    /// never produce a match.
    min_start: f64,
}

/// Buffers reused across the buckets of one image.
#[derive(Default)]
struct Scratch {
    order: Vec<u32>,
    ious: Vec<f64>,
    gt_ig: Vec<bool>,
    sorted: Vec<usize>,
    gtm: Vec<i64>,
    dtm: Vec<i64>,
    dt_ig: Vec<bool>,
}

/// pycocotools' starting `best` for threshold `t`: `min([t, 1 - 1e-10])`.
#[inline]
fn start_for(thr: f64) -> f64 {
    let cap = 1.0 - 1e-10;
    if cap < thr {
        cap
    } else {
        thr
    }
}

/// Evaluates one (image, category) bucket and appends its records.
fn evaluate_bucket(
    ctx: &Ctx<'_>,
    image: i64,
    category: i64,
    gts: &[u32],
    dts: &[u32],
    sc: &mut Scratch,
    out: &mut Evaluation,
) {
    let (gt, dt, p) = (ctx.gt, ctx.dt, ctx.p);
    let order = &mut sc.order;
    order.clear();
    order.extend_from_slice(dts);
    order.sort_by(|&a, &b| by_score_desc(dt.score[a as usize], dt.score[b as usize]));
    order.truncate(p.max_det);
    let nd = order.len();
    let ng = gts.len();
    if nd == 0 && ng == 0 {
        return;
    }
    let na = p.area_rng.len();
    let nt = p.iou_thrs.len();
    let at = na * nt;

    // IoU [D, G] in file order of the ground truth.
    let ious = &mut sc.ious;
    ious.clear();
    ious.resize(nd * ng, 0.0);
    let mut can_match = false;
    for (di, &d) in order.iter().enumerate() {
        let db = &dt.bbox[4 * d as usize..4 * d as usize + 4];
        for (gi, &g) in gts.iter().enumerate() {
            let gb = &gt.bbox[4 * g as usize..4 * g as usize + 4];
            let v = bb_iou(db, gb, gt.iscrowd[g as usize] != 0);
            ious[di * ng + gi] = v;
            // a NaN IoU or threshold matches too, as in pycocotools' `<` test
            can_match |= v >= ctx.min_start || v.is_nan() || ctx.min_start.is_nan();
        }
    }

    let base = out.dt_flags.len();
    out.dt_flags.resize(base + nd * at, FALSE_POSITIVE);
    let flags = &mut out.dt_flags[base..];
    if ng > 0 {
        out.gt_image.push(image);
        out.gt_category.push(category);
    }

    let (gt_ig, sorted) = (&mut sc.gt_ig, &mut sc.sorted);
    let (gtm, dtm, dt_ig) = (&mut sc.gtm, &mut sc.dtm, &mut sc.dt_ig);
    gt_ig.clear();
    gt_ig.resize(ng, false);
    gtm.clear();
    gtm.resize(ng, 0);
    dtm.clear();
    dtm.resize(nd, 0);
    dt_ig.clear();
    dt_ig.resize(nd, false);
    for (a, rng) in p.area_rng.iter().enumerate() {
        let (lo, hi) = (rng[0], rng[1]);
        let mut npig = 0i64;
        for (gi, &g) in gts.iter().enumerate() {
            let ar = gt.area[g as usize];
            gt_ig[gi] = gt.iscrowd[g as usize] != 0 || ar < lo || ar > hi;
            npig += (!gt_ig[gi]) as i64;
        }
        if ng > 0 {
            out.gt_count.push(npig);
        }
        if !can_match {
            // Nothing reaches a threshold: every detection is a false
            // positive, or ignored when outside the area range.
            for (di, &d) in order.iter().enumerate() {
                let ar = dt.area[d as usize];
                if ar < lo || ar > hi {
                    let row = &mut flags[di * at + a * nt..di * at + (a + 1) * nt];
                    row.iter_mut().for_each(|f| *f = IGNORED);
                }
            }
            continue;
        }
        // Non-ignored first, file order kept (stable).
        sorted.clear();
        sorted.extend((0..ng).filter(|&gi| !gt_ig[gi]));
        sorted.extend((0..ng).filter(|&gi| gt_ig[gi]));
        for (t, &thr) in p.iou_thrs.iter().enumerate() {
            gtm.iter_mut().for_each(|v| *v = 0);
            dtm.iter_mut().for_each(|v| *v = 0);
            dt_ig.iter_mut().for_each(|v| *v = false);
            let start = start_for(thr);
            for di in 0..nd {
                let mut best = start;
                let mut m: Option<usize> = None;
                let row = &ious[di * ng..(di + 1) * ng];
                for (s, &gi) in sorted.iter().enumerate() {
                    let g = gts[gi] as usize;
                    if gtm[s] > 0 && gt.iscrowd[g] == 0 {
                        continue;
                    }
                    if let Some(ms) = m {
                        if !gt_ig[sorted[ms]] && gt_ig[gi] {
                            break;
                        }
                    }
                    let v = row[gi];
                    if v < best {
                        continue;
                    }
                    best = v;
                    m = Some(s);
                }
                if let Some(ms) = m {
                    let g = gts[sorted[ms]] as usize;
                    dt_ig[di] = gt_ig[sorted[ms]];
                    dtm[di] = gt.id[g];
                    gtm[ms] = dt.id[order[di] as usize];
                }
            }
            for di in 0..nd {
                let ar = dt.area[order[di] as usize];
                let ignored = dt_ig[di] || (dtm[di] == 0 && (ar < lo || ar > hi));
                flags[di * at + a * nt + t] = if ignored {
                    IGNORED
                } else if dtm[di] != 0 {
                    TRUE_POSITIVE
                } else {
                    FALSE_POSITIVE
                };
            }
        }
    }
    for (rank, &d) in order.iter().enumerate() {
        out.dt_image.push(image);
        out.dt_category.push(category);
        out.dt_rank.push(rank as i64);
        out.dt_score.push(dt.score[d as usize]);
    }
}

/// Runs the per image and category evaluation of pycocotools' `COCOeval`.
///
/// `img_ids` are the images to evaluate, in accumulation order (pycocotools:
/// sorted unique). `cat_ids` are the categories (pooled in this order when
/// `use_cats` is false); `None` means every category present in `gt` or `dt`,
/// sorted. Annotations of other images or categories are skipped.
pub fn evaluate(
    gt: &GroundTruth<'_>,
    dt: &Detections<'_>,
    img_ids: &[i64],
    cat_ids: Option<&[i64]>,
    p: &EvalParams<'_>,
    num_threads: usize,
) -> Result<Evaluation> {
    gt.validate()?;
    dt.validate()?;
    // The largest buffer holds up to one row of A * T flags per detection:
    // refuse parameters that make it unallocatable before any work.
    let row = alloc::product("iouThrs/areaRng", &[p.area_rng.len(), p.iou_thrs.len()])?;
    let bound = alloc::product("iouThrs/areaRng", &[dt.image_id.len(), row])?;
    alloc::reserve("iouThrs/areaRng", &mut Vec::<u8>::new(), bound)?;
    let cats: Vec<i64> = match cat_ids {
        Some(c) => c.to_vec(),
        None => {
            let mut c: Vec<i64> = gt
                .category_id
                .iter()
                .chain(dt.category_id.iter())
                .copied()
                .collect();
            c.sort_unstable();
            c.dedup();
            c
        }
    };
    let img_index = IdIndex::new(img_ids);
    let cat_index = IdIndex::new(&cats);
    let locate = |image_id: &[i64], category_id: &[i64]| -> (Vec<u32>, Vec<u32>) {
        let mut img_pos = Vec::with_capacity(image_id.len());
        let mut cat_pos = Vec::with_capacity(image_id.len());
        for (&i, &c) in image_id.iter().zip(category_id) {
            match (img_index.get(i), cat_index.get(c)) {
                (Some(ip), Some(cp)) => {
                    img_pos.push(ip);
                    cat_pos.push(cp);
                }
                _ => {
                    img_pos.push(u32::MAX);
                    cat_pos.push(u32::MAX);
                }
            }
        }
        (img_pos, cat_pos)
    };
    let (gt_img, gt_cat) = locate(gt.image_id, gt.category_id);
    let (dt_img, dt_cat) = locate(dt.image_id, dt.category_id);
    let (gt_start, gt_items) = by_image(&gt_img, img_ids.len());
    let (dt_start, dt_items) = by_image(&dt_img, img_ids.len());
    let min_start = if p.iou_thrs.iter().any(|t| t.is_nan()) {
        f64::NAN
    } else {
        p.iou_thrs
            .iter()
            .map(|&t| start_for(t))
            .fold(f64::INFINITY, f64::min)
    };
    let ctx = Ctx {
        gt,
        dt,
        p,
        min_start,
    };

    let per_image = |i: usize| -> Evaluation {
        let mut out = Evaluation::default();
        let mut sc = Scratch::default();
        let mut g: Vec<u32> = gt_items[gt_start[i]..gt_start[i + 1]].to_vec();
        let mut d: Vec<u32> = dt_items[dt_start[i]..dt_start[i + 1]].to_vec();
        if g.is_empty() && d.is_empty() {
            return out;
        }
        g.sort_by_key(|&j| gt_cat[j as usize]);
        d.sort_by_key(|&j| dt_cat[j as usize]);
        let image = img_ids[i];
        if !p.use_cats {
            evaluate_bucket(&ctx, image, -1, &g, &d, &mut sc, &mut out);
            return out;
        }
        let (mut gi, mut di) = (0usize, 0usize);
        while gi < g.len() || di < d.len() {
            let gc = g.get(gi).map_or(u32::MAX, |&j| gt_cat[j as usize]);
            let dc = d.get(di).map_or(u32::MAX, |&j| dt_cat[j as usize]);
            let c = gc.min(dc);
            let g_end = gi
                + g[gi..]
                    .iter()
                    .take_while(|&&j| gt_cat[j as usize] == c)
                    .count();
            let d_end = di
                + d[di..]
                    .iter()
                    .take_while(|&&j| dt_cat[j as usize] == c)
                    .count();
            evaluate_bucket(
                &ctx,
                image,
                cats[c as usize],
                &g[gi..g_end],
                &d[di..d_end],
                &mut sc,
                &mut out,
            );
            gi = g_end;
            di = d_end;
        }
        out
    };

    let parts: Vec<Evaluation> = if img_ids.len() >= 8 && num_threads != 1 {
        with_threads(num_threads, || {
            (0..img_ids.len())
                .into_par_iter()
                .with_min_len(16)
                .map(per_image)
                .collect()
        })?
    } else {
        (0..img_ids.len()).map(per_image).collect()
    };
    let mut out = Evaluation {
        num_areas: p.area_rng.len(),
        num_iou: p.iou_thrs.len(),
        ..Default::default()
    };
    let nd: usize = parts.iter().map(|e| e.dt_score.len()).sum();
    let ng: usize = parts.iter().map(|e| e.gt_image.len()).sum();
    let flags = alloc::product("iouThrs/areaRng", &[nd, out.num_areas, out.num_iou])?;
    alloc::reserve("dt", &mut out.dt_image, nd)?;
    alloc::reserve("dt", &mut out.dt_category, nd)?;
    alloc::reserve("dt", &mut out.dt_rank, nd)?;
    alloc::reserve("dt", &mut out.dt_score, nd)?;
    alloc::reserve("iouThrs/areaRng", &mut out.dt_flags, flags)?;
    alloc::reserve("gt", &mut out.gt_image, ng)?;
    alloc::reserve("gt", &mut out.gt_category, ng)?;
    alloc::reserve("areaRng", &mut out.gt_count, ng * out.num_areas)?;
    for part in parts {
        out.append(part);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params<'a>(thrs: &'a [f64], rng: &'a [[f64; 2]]) -> EvalParams<'a> {
        EvalParams {
            iou_thrs: thrs,
            area_rng: rng,
            max_det: 100,
            use_cats: true,
        }
    }

    #[test]
    fn iou_matches_bbiou() {
        assert_eq!(
            bb_iou(&[0.0, 0.0, 2.0, 1.0], &[0.0, 0.0, 1.0, 1.0], false),
            0.5
        );
        // Crowd: intersection over the detection's area.
        assert_eq!(
            bb_iou(&[0.0, 0.0, 2.0, 1.0], &[0.0, 0.0, 1.0, 1.0], true),
            0.5
        );
        assert_eq!(
            bb_iou(&[0.0, 0.0, 1.0, 1.0], &[0.0, 0.0, 2.0, 2.0], true),
            1.0
        );
        assert_eq!(
            bb_iou(&[0.0, 0.0, 1.0, 1.0], &[1.0, 0.0, 1.0, 1.0], false),
            0.0
        );
        assert_eq!(
            bb_iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0], false),
            0.0
        );
    }

    #[test]
    fn matches_greedily_with_last_equal_gt_winning() {
        // Two identical GTs, one detection: the later GT (id 8) wins the tie.
        let gt = GroundTruth {
            id: &[7, 8],
            image_id: &[1, 1],
            category_id: &[3, 3],
            bbox: &[0.0, 0.0, 10.0, 10.0, 0.0, 0.0, 10.0, 10.0],
            area: &[100.0, 100.0],
            iscrowd: &[0, 0],
        };
        let dt = Detections {
            id: &[1, 2, 3],
            image_id: &[1, 1, 1],
            category_id: &[3, 3, 3],
            bbox: &[
                0.0, 0.0, 10.0, 10.0, 0.0, 0.0, 10.0, 10.0, 50.0, 50.0, 5.0, 5.0,
            ],
            area: &[100.0, 100.0, 25.0],
            score: &[0.5, 0.9, 0.5],
        };
        let thrs = [0.5];
        let rng = [[0.0, 1e10], [0.0, 50.0]];
        let e = evaluate(&gt, &dt, &[1], None, &params(&thrs, &rng), 1).unwrap();
        assert_eq!(e.dt_score, vec![0.9, 0.5, 0.5]);
        assert_eq!(e.dt_rank, vec![0, 1, 2]);
        // all: tp, tp, fp; small range [0, 50]: both GTs ignored -> matched
        // detections ignored, the unmatched 25-area detection a false positive.
        assert_eq!(e.dt_flags, vec![1, 2, 1, 2, 0, 0]);
        assert_eq!(e.gt_count, vec![2, 0]);
        assert_eq!(e.gt_category, vec![3]);
    }

    #[test]
    fn crowd_absorbs_many_detections() {
        let gt = GroundTruth {
            id: &[1],
            image_id: &[0],
            category_id: &[0],
            bbox: &[0.0, 0.0, 100.0, 100.0],
            area: &[10000.0],
            iscrowd: &[1],
        };
        let dt = Detections {
            id: &[1, 2],
            image_id: &[0, 0],
            category_id: &[0, 0],
            bbox: &[0.0, 0.0, 10.0, 10.0, 20.0, 20.0, 10.0, 10.0],
            area: &[100.0, 100.0],
            score: &[0.9, 0.8],
        };
        let thrs = [0.5];
        let rng = [[0.0, 1e10]];
        let e = evaluate(&gt, &dt, &[0], None, &params(&thrs, &rng), 1).unwrap();
        assert_eq!(e.dt_flags, vec![2, 2]);
        assert_eq!(e.gt_count, vec![0]);
    }

    #[test]
    fn rejects_inconsistent_lengths() {
        let gt = GroundTruth {
            id: &[1],
            image_id: &[0],
            category_id: &[0],
            bbox: &[0.0, 0.0, 1.0],
            area: &[1.0],
            iscrowd: &[0],
        };
        let dt = Detections {
            id: &[],
            image_id: &[],
            category_id: &[],
            bbox: &[],
            area: &[],
            score: &[],
        };
        let thrs = [0.5];
        let rng = [[0.0, 1e10]];
        let err = evaluate(&gt, &dt, &[0], None, &params(&thrs, &rng), 1).unwrap_err();
        assert!(err.to_string().contains("gt bbox"));
    }
}
