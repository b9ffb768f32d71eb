//! Binding of [`crate::batchnorm`]: float64 sums of channels-last BatchNorm on
//! float32 `(rows, C)` arrays (an NHWC tensor viewed as rows).

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;

use super::array::{array, matching, Dim};
use crate::batchnorm as core;

const ROWS: [Dim; 2] = [Dim::Any("rows"), Dim::Any("C")];

type Pair<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>);

/// Per-channel mean and biased variance of `x` `(rows, C)` float32, summed in
/// float64. Returns `(mean [C], var [C])` float64.
#[pyfunction]
#[pyo3(signature = (x, num_threads=0))]
fn batch_norm_moments<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    num_threads: usize,
) -> PyResult<Pair<'py>> {
    let x = array::<f32>(x, "x", &ROWS)?;
    let channels = x.shape()[1];
    let x = x.as_slice();
    let m = super::run(py, || core::channel_moments(x, channels, num_threads))?;
    Ok((m.mean.into_pyarray(py), m.var.into_pyarray(py)))
}

/// Per-channel `Σ g` and `Σ g·(x − mean)` of `grad` and `x` `(rows, C)`
/// float32 around the batch's `mean` `[C]` float64, summed in float64: the
/// bias gradient and (times `invstd`) the weight gradient of BatchNorm.
/// Returns `(sum_grad [C], sum_grad_centered [C])` float64.
#[pyfunction]
#[pyo3(signature = (grad, x, mean, num_threads=0))]
fn batch_norm_grad_sums<'py>(
    py: Python<'py>,
    grad: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    mean: &Bound<'py, PyAny>,
    num_threads: usize,
) -> PyResult<Pair<'py>> {
    let x = array::<f32>(x, "x", &ROWS)?;
    let (rows, channels) = (x.shape()[0], x.shape()[1]);
    let grad = array::<f32>(grad, "grad", &[Dim::Is(rows), Dim::Is(channels)])?;
    let mean = matching::<f64>(mean, "mean", channels, "the channels of x")?;
    let (x, grad, mean) = (x.as_slice(), grad.as_slice(), mean.as_slice());
    let sums = super::run(py, || core::grad_sums(grad, x, mean, channels, num_threads))?;
    Ok((
        sums.sum_grad.into_pyarray(py),
        sums.sum_grad_centered.into_pyarray(py),
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(batch_norm_moments, m)?)?;
    m.add_function(wrap_pyfunction!(batch_norm_grad_sums, m)?)
}
