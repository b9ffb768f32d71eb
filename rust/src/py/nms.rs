//! Binding of [`crate::nms`]: `nms` and `batched_nms` on float32 or float64
//! numpy arrays (boxes and scores of the same dtype), int64 class ids.

use numpy::{IntoPyArray, PyArray1, PyArrayDyn};
use pyo3::prelude::*;

use super::array::{array, dtype_error, matching, Checked, Dim};
use crate::nms as core;

const BOXES: [Dim; 2] = [Dim::Any("N"), Dim::Is(4)];

/// Boxes and scores of one float dtype, checked for shape.
enum Pair<'py> {
    F32(Checked<'py, f32>, Checked<'py, f32>),
    F64(Checked<'py, f64>, Checked<'py, f64>),
}

fn float_pair<'py>(
    boxes: &Bound<'py, PyAny>,
    scores: &Bound<'py, PyAny>,
) -> PyResult<(Pair<'py>, usize)> {
    if boxes.cast::<PyArrayDyn<f32>>().is_ok() {
        let b = array::<f32>(boxes, "boxes", &BOXES)?;
        let n = b.shape()[0];
        if scores.cast::<PyArrayDyn<f32>>().is_err() {
            return Err(dtype_error(
                "scores",
                scores,
                "float32 (the dtype of boxes)",
            ));
        }
        let s = matching::<f32>(scores, "scores", n, "boxes")?;
        Ok((Pair::F32(b, s), n))
    } else if boxes.cast::<PyArrayDyn<f64>>().is_ok() {
        let b = array::<f64>(boxes, "boxes", &BOXES)?;
        let n = b.shape()[0];
        if scores.cast::<PyArrayDyn<f64>>().is_err() {
            return Err(dtype_error(
                "scores",
                scores,
                "float64 (the dtype of boxes)",
            ));
        }
        let s = matching::<f64>(scores, "scores", n, "boxes")?;
        Ok((Pair::F64(b, s), n))
    } else {
        Err(dtype_error("boxes", boxes, "float32 or float64"))
    }
}

/// Greedy NMS: `boxes` float32/float64 `(N, 4)` xyxy, `scores` `(N,)` of the
/// same dtype. Returns int64 kept indices in decreasing score order.
#[pyfunction]
#[pyo3(signature = (boxes, scores, iou_threshold))]
fn nms<'py>(
    py: Python<'py>,
    boxes: &Bound<'py, PyAny>,
    scores: &Bound<'py, PyAny>,
    iou_threshold: f64,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let (pair, _) = float_pair(boxes, scores)?;
    let keep = match &pair {
        Pair::F32(b, s) => {
            let (b, s) = (b.as_slice(), s.as_slice());
            super::run(py, || core::nms(b, s, iou_threshold))?
        }
        Pair::F64(b, s) => {
            let (b, s) = (b.as_slice(), s.as_slice());
            super::run(py, || core::nms(b, s, iou_threshold))?
        }
    };
    Ok(keep.into_pyarray(py))
}

/// Per-class NMS: as [`nms`] plus `idxs` int64 `(N,)` class ids; boxes of
/// different classes never suppress each other. `num_threads` caps the worker
/// threads for large inputs (0 = the available cores capped by
/// `AUTOTIMM_NUM_THREADS`). With `by_index` the kept indices come in
/// ascending index order instead of score order.
#[pyfunction]
#[pyo3(signature = (boxes, scores, idxs, iou_threshold, num_threads = 1, by_index = false))]
#[allow(clippy::too_many_arguments)]
fn batched_nms<'py>(
    py: Python<'py>,
    boxes: &Bound<'py, PyAny>,
    scores: &Bound<'py, PyAny>,
    idxs: &Bound<'py, PyAny>,
    iou_threshold: f64,
    num_threads: usize,
    by_index: bool,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let (pair, n) = float_pair(boxes, scores)?;
    let idxs = matching::<i64>(idxs, "idxs", n, "boxes")?;
    let c = idxs.as_slice();
    let keep = match &pair {
        Pair::F32(b, s) => {
            let (b, s) = (b.as_slice(), s.as_slice());
            super::run(py, || {
                core::batched_nms(b, s, c, iou_threshold, num_threads)
            })?
        }
        Pair::F64(b, s) => {
            let (b, s) = (b.as_slice(), s.as_slice());
            super::run(py, || {
                core::batched_nms(b, s, c, iou_threshold, num_threads)
            })?
        }
    };
    let keep = if by_index {
        py.detach(|| core::ascending(&keep, n))
    } else {
        keep
    };
    Ok(keep.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(nms, m)?)?;
    m.add_function(wrap_pyfunction!(batched_nms, m)?)?;
    Ok(())
}
