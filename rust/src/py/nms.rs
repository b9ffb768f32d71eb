//! Binding of [`crate::nms`]: `nms` and `batched_nms` on float32 or float64
//! numpy arrays (boxes and scores of the same dtype), int64 class ids.

use numpy::{
    IntoPyArray, PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::error::to_pyerr;
use crate::error::{Error, Result};
use crate::nms as core;

/// `(5, 3)`-style rendering of a shape, like Python's tuple repr.
fn fmt_shape(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// The dtype of `obj` for an error message (`float16`, or the type's name).
fn describe(obj: &Bound<'_, PyAny>) -> String {
    match obj.cast::<PyUntypedArray>() {
        Ok(a) => a.dtype().to_string(),
        Err(_) => obj
            .get_type()
            .name()
            .map(|n| format!("<{n}>"))
            .unwrap_or_else(|_| "<unknown>".to_owned()),
    }
}

fn dtype_error(arg: &'static str, obj: &Bound<'_, PyAny>, expected: &str) -> PyErr {
    to_pyerr(Error::DType {
        arg,
        got: describe(obj),
        expected: expected.to_owned(),
    })
}

fn check_shapes(boxes: &[usize], scores: &[usize]) -> Result<usize> {
    if boxes.len() != 2 || boxes[1] != 4 {
        return Err(Error::shape("boxes", fmt_shape(boxes), "(N, 4)"));
    }
    check_vector("scores", scores, boxes[0])?;
    Ok(boxes[0])
}

fn check_vector(arg: &'static str, shape: &[usize], n: usize) -> Result<()> {
    if shape != [n] {
        return Err(Error::shape(
            arg,
            fmt_shape(shape),
            format!("({n},) to match boxes"),
        ));
    }
    Ok(())
}

fn readonly<'py, T: numpy::Element>(
    arg: &'static str,
    array: &Bound<'py, PyArrayDyn<T>>,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    array
        .try_readonly()
        .map_err(|e| to_pyerr(Error::value(arg, e.to_string())))
}

fn contiguous<'a, T: numpy::Element>(
    arg: &'static str,
    array: &'a PyReadonlyArrayDyn<'_, T>,
) -> PyResult<&'a [T]> {
    // `as_slice` also accepts Fortran order, which would be read transposed.
    let c_order = array.is_c_contiguous();
    match array.as_slice() {
        Ok(slice) if c_order => Ok(slice),
        _ => Err(to_pyerr(Error::value(arg, "must be C-contiguous"))),
    }
}

/// Boxes and scores of one float dtype, checked for shape.
enum Pair<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>, PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>, PyReadonlyArrayDyn<'py, f64>),
}

fn float_pair<'py>(
    boxes: &Bound<'py, PyAny>,
    scores: &Bound<'py, PyAny>,
) -> PyResult<(Pair<'py>, usize)> {
    let pair = if let Ok(b) = boxes.cast::<PyArrayDyn<f32>>() {
        let s = scores
            .cast::<PyArrayDyn<f32>>()
            .map_err(|_| dtype_error("scores", scores, "float32 (the dtype of boxes)"))?;
        Pair::F32(readonly("boxes", b)?, readonly("scores", s)?)
    } else if let Ok(b) = boxes.cast::<PyArrayDyn<f64>>() {
        let s = scores
            .cast::<PyArrayDyn<f64>>()
            .map_err(|_| dtype_error("scores", scores, "float64 (the dtype of boxes)"))?;
        Pair::F64(readonly("boxes", b)?, readonly("scores", s)?)
    } else {
        return Err(dtype_error("boxes", boxes, "float32 or float64"));
    };
    let n = match &pair {
        Pair::F32(b, s) => check_shapes(b.shape(), s.shape()),
        Pair::F64(b, s) => check_shapes(b.shape(), s.shape()),
    }
    .map_err(to_pyerr)?;
    Ok((pair, n))
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
            let (b, s) = (contiguous("boxes", b)?, contiguous("scores", s)?);
            super::run(py, || core::nms(b, s, iou_threshold))?
        }
        Pair::F64(b, s) => {
            let (b, s) = (contiguous("boxes", b)?, contiguous("scores", s)?);
            super::run(py, || core::nms(b, s, iou_threshold))?
        }
    };
    Ok(keep.into_pyarray(py))
}

/// Per-class NMS: as [`nms`] plus `idxs` int64 `(N,)` class ids; boxes of
/// different classes never suppress each other. `num_threads` caps the worker
/// threads for large inputs (0 = all cores).
#[pyfunction]
#[pyo3(signature = (boxes, scores, idxs, iou_threshold, num_threads = 1))]
fn batched_nms<'py>(
    py: Python<'py>,
    boxes: &Bound<'py, PyAny>,
    scores: &Bound<'py, PyAny>,
    idxs: &Bound<'py, PyAny>,
    iou_threshold: f64,
    num_threads: usize,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let (pair, n) = float_pair(boxes, scores)?;
    let idxs_array = idxs
        .cast::<PyArrayDyn<i64>>()
        .map_err(|_| dtype_error("idxs", idxs, "int64"))?;
    let idxs_ro = readonly("idxs", idxs_array)?;
    check_vector("idxs", idxs_ro.shape(), n).map_err(to_pyerr)?;
    let c = contiguous("idxs", &idxs_ro)?;
    let keep = match &pair {
        Pair::F32(b, s) => {
            let (b, s) = (contiguous("boxes", b)?, contiguous("scores", s)?);
            super::run(py, || {
                core::batched_nms(b, s, c, iou_threshold, num_threads)
            })?
        }
        Pair::F64(b, s) => {
            let (b, s) = (contiguous("boxes", b)?, contiguous("scores", s)?);
            super::run(py, || {
                core::batched_nms(b, s, c, iou_threshold, num_threads)
            })?
        }
    };
    Ok(keep.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(nms, m)?)?;
    m.add_function(wrap_pyfunction!(batched_nms, m)?)?;
    Ok(())
}
