//! Binding of [`crate::coco`]: COCO files in, numpy columns out; evaluation
//! records in, precision/recall/score arrays out. The GIL is released while
//! the core runs.

use std::path::Path;

use numpy::{
    Element, IntoPyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyFileNotFoundError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::coco::{self, json};
use crate::error::Error;

fn slice<'a, T: Element, D: numpy::ndarray::Dimension>(
    arr: &'a numpy::PyReadonlyArray<'_, T, D>,
    arg: &'static str,
) -> PyResult<&'a [T]> {
    arr.as_slice()
        .map_err(|_| super::error::to_pyerr(Error::value(arg, "must be C-contiguous")))
}

fn check_cols(
    arr: &PyReadonlyArray2<'_, impl Element>,
    arg: &'static str,
    cols: usize,
) -> PyResult<()> {
    let shape = arr.shape();
    if shape[1] != cols {
        return Err(super::error::to_pyerr(Error::shape(
            arg,
            format!("({}, {})", shape[0], shape[1]),
            format!("(N, {cols})"),
        )));
    }
    Ok(())
}

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
#[pyfunction]
fn coco_load_results<'py>(py: Python<'py>, path: &str) -> PyResult<Bound<'py, PyDict>> {
    let p = existing(path)?;
    let dt = super::run(py, || json::load_results(p))?;
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
    gt_id: PyReadonlyArray1<'py, i64>,
    gt_image_id: PyReadonlyArray1<'py, i64>,
    gt_category_id: PyReadonlyArray1<'py, i64>,
    gt_bbox: PyReadonlyArray2<'py, f64>,
    gt_area: PyReadonlyArray1<'py, f64>,
    gt_iscrowd: PyReadonlyArray1<'py, u8>,
    dt_id: PyReadonlyArray1<'py, i64>,
    dt_image_id: PyReadonlyArray1<'py, i64>,
    dt_category_id: PyReadonlyArray1<'py, i64>,
    dt_bbox: PyReadonlyArray2<'py, f64>,
    dt_area: PyReadonlyArray1<'py, f64>,
    dt_score: PyReadonlyArray1<'py, f64>,
    img_ids: PyReadonlyArray1<'py, i64>,
    cat_ids: Option<PyReadonlyArray1<'py, i64>>,
    iou_thrs: PyReadonlyArray1<'py, f64>,
    area_rng: PyReadonlyArray2<'py, f64>,
    max_det: usize,
    use_cats: bool,
    num_threads: usize,
) -> PyResult<Bound<'py, PyDict>> {
    check_cols(&gt_bbox, "gt bbox", 4)?;
    check_cols(&dt_bbox, "dt bbox", 4)?;
    check_cols(&area_rng, "areaRng", 2)?;
    let gt = coco::GroundTruth {
        id: slice(&gt_id, "gt id")?,
        image_id: slice(&gt_image_id, "gt image_id")?,
        category_id: slice(&gt_category_id, "gt category_id")?,
        bbox: slice(&gt_bbox, "gt bbox")?,
        area: slice(&gt_area, "gt area")?,
        iscrowd: slice(&gt_iscrowd, "gt iscrowd")?,
    };
    let dt = coco::Detections {
        id: slice(&dt_id, "dt id")?,
        image_id: slice(&dt_image_id, "dt image_id")?,
        category_id: slice(&dt_category_id, "dt category_id")?,
        bbox: slice(&dt_bbox, "dt bbox")?,
        area: slice(&dt_area, "dt area")?,
        score: slice(&dt_score, "dt score")?,
    };
    let img_ids = slice(&img_ids, "imgIds")?;
    let cat_ids = match &cat_ids {
        Some(c) => Some(slice(c, "catIds")?),
        None => None,
    };
    let rng: Vec<[f64; 2]> = slice(&area_rng, "areaRng")?
        .chunks_exact(2)
        .map(|c| [c[0], c[1]])
        .collect();
    let iou_thrs = slice(&iou_thrs, "iouThrs")?;
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
    dt_image: PyReadonlyArray1<'py, i64>,
    dt_category: PyReadonlyArray1<'py, i64>,
    dt_rank: PyReadonlyArray1<'py, i64>,
    dt_score: PyReadonlyArray1<'py, f64>,
    dt_flags: PyReadonlyArray2<'py, u8>,
    gt_category: PyReadonlyArray1<'py, i64>,
    gt_count: PyReadonlyArray2<'py, i64>,
    cat_ids: PyReadonlyArray1<'py, i64>,
    num_iou: usize,
    rec_thrs: PyReadonlyArray1<'py, f64>,
    max_dets: Vec<usize>,
    num_threads: usize,
    with_scores: bool,
) -> PyResult<Arrays<'py>> {
    let num_areas = gt_count.shape()[1];
    if num_iou == 0 || dt_flags.shape()[1] != num_areas * num_iou {
        return Err(super::error::to_pyerr(Error::shape(
            "dt_flags",
            format!("({}, {})", dt_flags.shape()[0], dt_flags.shape()[1]),
            format!("(N, {})", num_areas * num_iou),
        )));
    }
    let rec = coco::Records {
        dt_image: slice(&dt_image, "dt_image")?,
        dt_category: slice(&dt_category, "dt_category")?,
        dt_rank: slice(&dt_rank, "dt_rank")?,
        dt_score: slice(&dt_score, "dt_score")?,
        dt_flags: slice(&dt_flags, "dt_flags")?,
        gt_category: slice(&gt_category, "gt_category")?,
        gt_count: slice(&gt_count, "gt_count")?,
    };
    let cat_ids = slice(&cat_ids, "catIds")?;
    let rec_thrs = slice(&rec_thrs, "recThrs")?;
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
    precision: PyReadonlyArrayDyn<'_, f64>,
    recall: PyReadonlyArrayDyn<'_, f64>,
    iou_thrs: PyReadonlyArray1<'_, f64>,
    area_lbls: Vec<String>,
    max_dets: Vec<usize>,
) -> PyResult<Vec<f64>> {
    let ps = precision.shape().to_vec();
    let rs = recall.shape().to_vec();
    if ps.len() != 5 || rs.len() != 4 || rs != [ps[0], ps[2], ps[3], ps[4]] {
        return Err(super::error::to_pyerr(Error::shape(
            "precision/recall",
            format!("{ps:?} / {rs:?}"),
            "[T, R, K, A, M] / [T, K, A, M]",
        )));
    }
    let shape = [ps[0], ps[1], ps[2], ps[3], ps[4]];
    let p = slice(&precision, "precision")?;
    let r = slice(&recall, "recall")?;
    let thrs = slice(&iou_thrs, "iouThrs")?;
    let stats = super::run(py, || {
        coco::summarize(p, r, shape, thrs, &area_lbls, &max_dets)
    })?;
    Ok(stats.to_vec())
}

/// Up to 20 distinct `ids` not in `allowed` (first-seen order).
#[pyfunction]
fn coco_missing_ids<'py>(
    py: Python<'py>,
    ids: PyReadonlyArray1<'py, i64>,
    allowed: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, numpy::PyArray1<i64>>> {
    let ids = slice(&ids, "ids")?;
    let allowed = slice(&allowed, "allowed")?;
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
