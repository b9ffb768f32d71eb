//! Binding of [`crate::assign`].

use numpy::ndarray::{Array2, Array3};
use numpy::{IntoPyArray, PyArray2, PyArray3};
use pyo3::prelude::*;

use super::array::{array, matching, Dim};
use crate::assign::{self, Level, Options};
use crate::error::Error;

type TargetArrays<'py> = (
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray3<f32>>,
    Bound<'py, PyArray2<f32>>,
);

/// FCOS targets of a batch: `boxes [N, 4]` float32 of all images concatenated,
/// `labels [N]` int64, `counts [B]` int64 boxes per image; one level per
/// stride. Returns `cls [B, P]` int64, `reg [B, P, 4]` float32, `ctr [B, P]` float32.
#[pyfunction]
#[pyo3(signature = (
    boxes,
    labels,
    counts,
    strides,
    feature_sizes,
    regress_ranges,
    center_sampling_radius=None,
    num_classes=None,
    num_threads=0,
))]
#[allow(clippy::too_many_arguments)]
fn fcos_targets<'py>(
    py: Python<'py>,
    boxes: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    counts: &Bound<'py, PyAny>,
    strides: Vec<u32>,
    feature_sizes: Vec<(usize, usize)>,
    regress_ranges: Vec<(f64, f64)>,
    center_sampling_radius: Option<f64>,
    num_classes: Option<i64>,
    num_threads: usize,
) -> PyResult<TargetArrays<'py>> {
    let to_py = super::error::to_pyerr;
    let boxes = array::<f32>(boxes, "boxes", &[Dim::Any("N"), Dim::Is(4)])?;
    let labels = matching::<i64>(labels, "labels", boxes.shape()[0], "boxes")?;
    let counts = array::<i64>(counts, "counts", &[Dim::Any("B")])?;
    if feature_sizes.len() != strides.len() {
        let msg = format!(
            "has {} levels but strides has {}",
            feature_sizes.len(),
            strides.len()
        );
        return Err(to_py(Error::value("feature_sizes", msg)));
    }
    if regress_ranges.len() != strides.len() {
        let msg = format!(
            "has {} levels but strides has {}",
            regress_ranges.len(),
            strides.len()
        );
        return Err(to_py(Error::value("regress_ranges", msg)));
    }
    let (boxes, labels, counts) = (boxes.as_slice(), labels.as_slice(), counts.as_slice());
    let levels: Vec<Level> = strides
        .iter()
        .zip(&feature_sizes)
        .zip(&regress_ranges)
        .map(|((&stride, &(height, width)), &(lo, hi))| Level {
            stride,
            height,
            width,
            // Rounded to float32 as torch rounds a Python float compared with a float32 tensor.
            lo: lo as f32,
            hi: hi as f32,
        })
        .collect();
    let options = Options {
        center_sampling_radius,
        num_classes,
        num_threads,
    };
    let t = super::run(py, || {
        assign::fcos_targets(boxes, labels, counts, &levels, &options)
    })?;
    let shape_err = |_| to_py(Error::value("feature_sizes", "inconsistent output shape"));
    let (b, p) = (t.num_images, t.num_points);
    let cls = Array2::from_shape_vec((b, p), t.cls).map_err(shape_err)?;
    let reg = Array3::from_shape_vec((b, p, 4), t.reg).map_err(shape_err)?;
    let ctr = Array2::from_shape_vec((b, p), t.ctr).map_err(shape_err)?;
    Ok((
        cls.into_pyarray(py),
        reg.into_pyarray(py),
        ctr.into_pyarray(py),
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fcos_targets, m)?)
}
