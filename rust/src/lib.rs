//! `autotimm._native`: the Python module. This file only lists what is bound;
//! the algorithms live in pure-Rust modules, the glue in `py/`.

pub mod alloc;
pub mod assign;
pub mod batchnorm;
pub mod coco;
pub mod error;
pub mod nms;
pub mod parallel;

mod py;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py::nms::register(m)?;
    py::assign::register(m)?;
    py::batchnorm::register(m)?;
    py::coco::register(m)?;
    Ok(())
}
