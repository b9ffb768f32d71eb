//! Evaluation parameters with pycocotools' defaults, bit for bit.

/// `numpy.linspace(start, stop, num)` (endpoint included), computed the way
/// numpy does it so the values match to the last bit (e.g. the 9th default IoU
/// threshold is 0.8999999999999999, not 0.9).
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut out: Vec<f64> = if step == 0.0 {
        (0..num).map(|i| (i as f64 / div) * delta + start).collect()
    } else {
        (0..num).map(|i| i as f64 * step + start).collect()
    };
    out[num - 1] = stop;
    out
}

/// The parameters of a bbox evaluation (pycocotools' `Params`).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub iou_thrs: Vec<f64>,
    pub rec_thrs: Vec<f64>,
    /// Sorted ascending, as `COCOeval.evaluate` sorts them.
    pub max_dets: Vec<usize>,
    pub area_rng: Vec<[f64; 2]>,
    pub area_lbl: Vec<String>,
    pub use_cats: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            iou_thrs: linspace(0.5, 0.95, 10),
            rec_thrs: linspace(0.0, 1.0, 101),
            max_dets: vec![1, 10, 100],
            area_rng: vec![[0.0, 1e10], [0.0, 1024.0], [1024.0, 9216.0], [9216.0, 1e10]],
            area_lbl: ["all", "small", "medium", "large"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            use_cats: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_thresholds_match_numpy() {
        let p = Params::default();
        assert_eq!(p.iou_thrs.len(), 10);
        assert_eq!(p.iou_thrs[0], 0.5);
        assert_eq!(p.iou_thrs[5], 0.75);
        assert_eq!(p.iou_thrs[8], 0.8999999999999999);
        assert_eq!(p.iou_thrs[9], 0.95);
        assert_eq!(p.rec_thrs.len(), 101);
        assert_eq!(p.rec_thrs[35], 0.35000000000000003);
        assert_eq!(p.rec_thrs[57], 0.5700000000000001);
        assert_eq!(p.rec_thrs[94], 0.9400000000000001);
        assert_eq!(p.rec_thrs[100], 1.0);
        assert_eq!(linspace(1.0, 1.0, 3), vec![1.0, 1.0, 1.0]);
        assert!(linspace(0.0, 1.0, 0).is_empty());
    }
}
