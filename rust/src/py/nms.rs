//! Binding of [`crate::nms`].

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::error::Error;
use crate::nms;

#[pyfunction]
#[pyo3(name = "nms_f32")]
fn nms_f32<'py>(
    py: Python<'py>,
    boxes: PyReadonlyArray2<'py, f32>,
    scores: PyReadonlyArray1<'py, f32>,
    iou_threshold: f64,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let boxes = boxes
        .as_slice()
        .map_err(|_| Error::value("boxes", "must be C-contiguous"))
        .map_err(super::error::to_pyerr)?;
    let scores = scores
        .as_slice()
        .map_err(|_| Error::value("scores", "must be C-contiguous"))
        .map_err(super::error::to_pyerr)?;
    let keep = super::run(py, || nms::nms(boxes, scores, iou_threshold))?;
    Ok(keep.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(nms_f32, m)?)
}
