//! Binding of [`crate::coco`]: COCO files in, numpy columns out; evaluation
//! records in, precision/recall/score arrays out. The GIL is released while
//! the core runs.

use std::path::Path;

use numpy::{IntoPyArray, PyArrayDyn, PyArrayMethods};
use pyo3::exceptions::PyFileNotFoundError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::array::{array, matching, optional, Dim};
use crate::coco::{self, json};
use crate::error::Error;

fn existing(path: &str) -> PyResult<&Path> {
    let p = Path::new(path);
    if !p.exists() {
        return Err(PyFileNotFoundError::new_err((
            2,
            "No such file or directory",
            path.to_string(),
        )));
    }
    Ok(p)
}

fn annotations_into_dict<'py>(
    py: Python<'py>,
    a: json::Annotations,
    with_score: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let n = a.image_id.len();
    d.set_item("id", a.id.into_pyarray(py))?;
    d.set_item("image_id", a.image_id.into_pyarray(py))?;
    d.set_item("category_id", a.category_id.into_pyarray(py))?;
    d.set_item("bbox", a.bbox.into_pyarray(py).reshape([n, 4])?)?;
    d.set_item("area", a.area.into_pyarray(py))?;
    d.set_item("iscrowd", a.iscrowd.into_pyarray(py))?;
    if with_score {
        d.set_item("score", a.score.into_pyarray(py))?;
    }
    if !a.image_names.is_empty() {
        d.set_item("image_names", a.image_names)?;
    }
    Ok(d)
}

/// Reads a COCO ground-truth file into columns: `image_ids`, `categories`
/// (list of dicts), and per annotation `id`, `image_id`, `category_id`,
/// `bbox` (N, 4) xywh, `area`, `iscrowd`.
#[pyfunction]
fn coco_load_ground_truth<'py>(py: Python<'py>, path: &str) -> PyResult<Bound<'py, PyDict>> {
    let p = existing(path)?;
    let gt = super::run(py, || json::load_ground_truth(p))?;
    let d = annotations_into_dict(py, gt.annotations, false)?;
    d.set_item("image_ids", gt.image_ids.into_pyarray(py))?;
    let cats = PyList::empty(py);
    for c in gt.categories {
        let cd = PyDict::new(py);
        cd.set_item("id", c.id)?;
        cd.set_item("name", c.name)?;
        if let Some(s) = c.supercategory {
            cd.set_item("supercategory", s)?;
        }
        cats.append(cd)?;
    }
    d.set_item("categories", cats)?;
    Ok(d)
}

/// Reads a COCO result file (list of detections) into columns with `loadRes`'
/// semantics: `id` from 1, `area = w * h`, `iscrowd = 0`, plus `score`.
/// Large files are parsed on up to `num_threads` workers (0 = the available
/// cores capped by `AUTOTIMM_NUM_THREADS`).
#[pyfunction]
#[pyo3(signature = (path, num_threads = 0))]
fn coco_load_results<'py>(
    py: Python<'py>,
    path: &str,
    num_threads: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let p = existing(path)?;
    let dt = super::run(py, || json::load_results(p, num_threads))?;
    annotations_into_dict(py, dt, true)
}

/// Per image and category evaluation; returns the records as numpy arrays
/// (`dt_image`, `dt_category`, `dt_rank`, `dt_score`, `dt_flags` (n, A*T)
/// uint8, `gt_image`, `gt_category`, `gt_count` (m, A)).
#[pyfunction]
#[pyo3(signature = (
    gt_id, gt_image_id, gt_category_id, gt_bbox, gt_area, gt_iscrowd,
    dt_id, dt_image_id, dt_category_id, dt_bbox, dt_area, dt_score,
    img_ids, cat_ids, iou_thrs, area_rng, max_det, use_cats, num_threads = 0
))]
#[allow(clippy::too_many_arguments)]
fn coco_evaluate<'py>(
    py: Python<'py>,
    gt_id: &Bound<'py, PyAny>,
    gt_image_id: &Bound<'py, PyAny>,
    gt_category_id: &Bound<'py, PyAny>,
    gt_bbox: &Bound<'py, PyAny>,
    gt_area: &Bound<'py, PyAny>,
    gt_iscrowd: &Bound<'py, PyAny>,
    dt_id: &Bound<'py, PyAny>,
    dt_image_id: &Bound<'py, PyAny>,
    dt_category_id: &Bound<'py, PyAny>,
    dt_bbox: &Bound<'py, PyAny>,
    dt_area: &Bound<'py, PyAny>,
    dt_score: &Bound<'py, PyAny>,
    img_ids: &Bound<'py, PyAny>,
    cat_ids: Option<&Bound<'py, PyAny>>,
    iou_thrs: &Bound<'py, PyAny>,
    area_rng: &Bound<'py, PyAny>,
    max_det: usize,
    use_cats: bool,
    num_threads: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let any = |arg| [Dim::Any(arg)];
    let gt_id = array::<i64>(gt_id, "gt id", &any("M"))?;
    let m = gt_id.shape()[0];
    let gt_image_id = matching::<i64>(gt_image_id, "gt image_id", m, "gt id")?;
    let gt_category_id = matching::<i64>(gt_category_id, "gt category_id", m, "gt id")?;
    let gt_bbox = array::<f64>(gt_bbox, "gt bbox", &[Dim::Is(m), Dim::Is(4)])?;
    let gt_area = matching::<f64>(gt_area, "gt area", m, "gt id")?;
    let gt_iscrowd = matching::<u8>(gt_iscrowd, "gt iscrowd", m, "gt id")?;
    let dt_id = array::<i64>(dt_id, "dt id", &any("N"))?;
    let n = dt_id.shape()[0];
    let dt_image_id = matching::<i64>(dt_image_id, "dt image_id", n, "dt id")?;
    let dt_category_id = matching::<i64>(dt_category_id, "dt category_id", n, "dt id")?;
    let dt_bbox = array::<f64>(dt_bbox, "dt bbox", &[Dim::Is(n), Dim::Is(4)])?;
    let dt_area = matching::<f64>(dt_area, "dt area", n, "dt id")?;
    let dt_score = matching::<f64>(dt_score, "dt score", n, "dt id")?;
    let img_ids = array::<i64>(img_ids, "imgIds", &any("I"))?;
    let cat_ids = optional::<i64>(cat_ids, "catIds", &any("K"))?;
    let iou_thrs = array::<f64>(iou_thrs, "iouThrs", &any("T"))?;
    let area_rng = array::<f64>(area_rng, "areaRng", &[Dim::Any("A"), Dim::Is(2)])?;
    let gt = coco::GroundTruth {
        id: gt_id.as_slice(),
        image_id: gt_image_id.as_slice(),
        category_id: gt_category_id.as_slice(),
        bbox: gt_bbox.as_slice(),
        area: gt_area.as_slice(),
        iscrowd: gt_iscrowd.as_slice(),
    };
    let dt = coco::Detections {
        id: dt_id.as_slice(),
        image_id: dt_image_id.as_slice(),
        category_id: dt_category_id.as_slice(),
        bbox: dt_bbox.as_slice(),
        area: dt_area.as_slice(),
        score: dt_score.as_slice(),
    };
    let img_ids = img_ids.as_slice();
    let cat_ids = cat_ids.as_ref().map(|c| c.as_slice());
    let rng: Vec<[f64; 2]> = area_rng
        .as_slice()
        .chunks_exact(2)
        .map(|c| [c[0], c[1]])
        .collect();
    let iou_thrs = iou_thrs.as_slice();
    let params = coco::EvalParams {
        iou_thrs,
        area_rng: &rng,
        max_det,
        use_cats,
    };
    let e = super::run(py, || {
        coco::evaluate(&gt, &dt, img_ids, cat_ids, &params, num_threads)
    })?;
    let d = PyDict::new(py);
    let (n, m, at, a) = (
        e.dt_score.len(),
        e.gt_image.len(),
        e.num_areas * e.num_iou,
        e.num_areas,
    );
    d.set_item("dt_image", e.dt_image.into_pyarray(py))?;
    d.set_item("dt_category", e.dt_category.into_pyarray(py))?;
    d.set_item("dt_rank", e.dt_rank.into_pyarray(py))?;
    d.set_item("dt_score", e.dt_score.into_pyarray(py))?;
    d.set_item("dt_flags", e.dt_flags.into_pyarray(py).reshape([n, at])?)?;
    d.set_item("gt_image", e.gt_image.into_pyarray(py))?;
    d.set_item("gt_category", e.gt_category.into_pyarray(py))?;
    d.set_item("gt_count", e.gt_count.into_pyarray(py).reshape([m, a])?)?;
    Ok(d)
}

type Arrays<'py> = (
    Bound<'py, PyArrayDyn<f64>>,
    Bound<'py, PyArrayDyn<f64>>,
    Bound<'py, PyArrayDyn<f64>>,
);

/// Accumulates evaluation records into `(precision, recall, scores)` with
/// pycocotools' shapes `[T, R, K, A, M]`, `[T, K, A, M]`, `[T, R, K, A, M]`.
#[pyfunction]
#[pyo3(signature = (
    dt_image, dt_category, dt_rank, dt_score, dt_flags, gt_category, gt_count,
    cat_ids, num_iou, rec_thrs, max_dets, num_threads = 0, with_scores = true
))]
#[allow(clippy::too_many_arguments)]
fn coco_accumulate<'py>(
    py: Python<'py>,
    dt_image: &Bound<'py, PyAny>,
    dt_category: &Bound<'py, PyAny>,
    dt_rank: &Bound<'py, PyAny>,
    dt_score: &Bound<'py, PyAny>,
    dt_flags: &Bound<'py, PyAny>,
    gt_category: &Bound<'py, PyAny>,
    gt_count: &Bound<'py, PyAny>,
    cat_ids: &Bound<'py, PyAny>,
    num_iou: usize,
    rec_thrs: &Bound<'py, PyAny>,
    max_dets: Vec<usize>,
    num_threads: usize,
    with_scores: bool,
) -> PyResult<Arrays<'py>> {
    let dt_score = array::<f64>(dt_score, "dt_score", &[Dim::Any("N")])?;
    let n = dt_score.shape()[0];
    let dt_image = matching::<i64>(dt_image, "dt_image", n, "dt_score")?;
    let dt_category = matching::<i64>(dt_category, "dt_category", n, "dt_score")?;
    let dt_rank = matching::<i64>(dt_rank, "dt_rank", n, "dt_score")?;
    let gt_count = array::<i64>(gt_count, "gt_count", &[Dim::Any("M"), Dim::Any("A")])?;
    let (m, num_areas) = (gt_count.shape()[0], gt_count.shape()[1]);
    let gt_category = matching::<i64>(gt_category, "gt_category", m, "gt_count")?;
    if num_iou == 0 {
        return Err(super::error::to_pyerr(Error::value(
            "iouThrs",
            "is empty; at least one IoU threshold is needed",
        )));
    }
    let flag_cols = num_areas.checked_mul(num_iou).ok_or_else(|| {
        super::error::to_pyerr(Error::value("num_iou", format!("{num_iou} overflows")))
    })?;
    let dt_flags = array::<u8>(dt_flags, "dt_flags", &[Dim::Is(n), Dim::Is(flag_cols)])?;
    let cat_ids = array::<i64>(cat_ids, "catIds", &[Dim::Any("K")])?;
    let rec_thrs = array::<f64>(rec_thrs, "recThrs", &[Dim::Any("R")])?;
    let rec = coco::Records {
        dt_image: dt_image.as_slice(),
        dt_category: dt_category.as_slice(),
        dt_rank: dt_rank.as_slice(),
        dt_score: dt_score.as_slice(),
        dt_flags: dt_flags.as_slice(),
        gt_category: gt_category.as_slice(),
        gt_count: gt_count.as_slice(),
    };
    let cat_ids = cat_ids.as_slice();
    let rec_thrs = rec_thrs.as_slice();
    let acc = super::run(py, || {
        coco::accumulate_with(
            &rec,
            cat_ids,
            num_iou,
            num_areas,
            rec_thrs,
            &max_dets,
            num_threads,
            with_scores,
        )
    })?;
    let [t, r, k, a, m] = acc.shape;
    Ok((
        acc.precision
            .into_pyarray(py)
            .reshape(vec![t, r, k, a, m])?,
        acc.recall.into_pyarray(py).reshape(vec![t, k, a, m])?,
        acc.scores.into_pyarray(py).reshape(if with_scores {
            vec![t, r, k, a, m]
        } else {
            vec![0; 5]
        })?,
    ))
}

/// The 12 summary statistics of `COCOeval.summarize` from `precision`
/// `[T, R, K, A, M]` and `recall` `[T, K, A, M]`.
#[pyfunction]
fn coco_summarize(
    py: Python<'_>,
    precision: &Bound<'_, PyAny>,
    recall: &Bound<'_, PyAny>,
    iou_thrs: &Bound<'_, PyAny>,
    area_lbls: Vec<String>,
    max_dets: Vec<usize>,
) -> PyResult<Vec<f64>> {
    let any = |arg| Dim::Any(arg);
    let precision = array::<f64>(
        precision,
        "precision",
        &[any("T"), any("R"), any("K"), any("A"), any("M")],
    )?;
    let ps = precision.shape().to_vec();
    let recall = array::<f64>(
        recall,
        "recall",
        &[
            Dim::Is(ps[0]),
            Dim::Is(ps[2]),
            Dim::Is(ps[3]),
            Dim::Is(ps[4]),
        ],
    )?;
    let iou_thrs = array::<f64>(iou_thrs, "iouThrs", &[any("T")])?;
    let shape = [ps[0], ps[1], ps[2], ps[3], ps[4]];
    let (p, r, thrs) = (precision.as_slice(), recall.as_slice(), iou_thrs.as_slice());
    let stats = super::run(py, || {
        coco::summarize(p, r, shape, thrs, &area_lbls, &max_dets)
    })?;
    Ok(stats.to_vec())
}

/// Up to 20 distinct `ids` not in `allowed` (first-seen order).
#[pyfunction]
fn coco_missing_ids<'py>(
    py: Python<'py>,
    ids: &Bound<'py, PyAny>,
    allowed: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, numpy::PyArray1<i64>>> {
    let ids = array::<i64>(ids, "ids", &[Dim::Any("N")])?;
    let allowed = array::<i64>(allowed, "allowed", &[Dim::Any("M")])?;
    let (ids, allowed) = (ids.as_slice(), allowed.as_slice());
    let missing = super::run(py, || Ok(coco::missing_ids(ids, allowed)))?;
    Ok(missing.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(coco_missing_ids, m)?)?;
    m.add_function(wrap_pyfunction!(coco_load_ground_truth, m)?)?;
    m.add_function(wrap_pyfunction!(coco_load_results, m)?)?;
    m.add_function(wrap_pyfunction!(coco_evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(coco_accumulate, m)?)?;
    m.add_function(wrap_pyfunction!(coco_summarize, m)?)?;
    Ok(())
}
