//! PyO3 glue: one file per op. Each binding extracts and checks its arrays,
//! then calls [`run`] which releases the GIL, runs the pure-Rust core and maps
//! its error. No algorithm lives here.

pub mod array;
pub mod assign;
pub mod batchnorm;
pub mod coco;
pub mod error;
pub mod nms;

use pyo3::prelude::*;

use crate::error::Result;

/// Runs `work` with the GIL released and converts the core's error into the
/// matching Python exception (the `enter_polars` pattern).
///
/// The core returns errors for every input it refuses; a panic would be a
/// bug. As a last line it is caught here and raised as `RuntimeError`, so
/// that no `PanicException` (which `except Exception` misses) reaches Python.
pub fn run<T: Send>(py: Python<'_>, work: impl FnOnce() -> Result<T> + Send) -> PyResult<T> {
    match py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))) {
        Ok(result) => result.map_err(error::to_pyerr),
        Err(payload) => Err(error::panic_to_pyerr(payload.as_ref())),
    }
}
