//! PyO3 glue: one file per op. Each binding extracts and checks its arrays,
//! then calls [`run`] which releases the GIL, runs the pure-Rust core and maps
//! its error. No algorithm lives here.

pub mod assign;
pub mod coco;
pub mod error;
pub mod nms;

use pyo3::prelude::*;

use crate::error::Result;

/// Runs `work` with the GIL released and converts the core's error into the
/// matching Python exception (the `enter_polars` pattern).
pub fn run<T: Send>(py: Python<'_>, work: impl FnOnce() -> Result<T> + Send) -> PyResult<T> {
    py.detach(work).map_err(error::to_pyerr)
}
