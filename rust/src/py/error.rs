//! The one mapping from the core's [`Error`] to Python exceptions.

use pyo3::exceptions::{PyMemoryError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::PyErr;

use crate::error::Error;

pub fn to_pyerr(err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::DType { .. } => PyTypeError::new_err(msg),
        Error::Io { .. } => PyOSError::new_err(msg),
        Error::Memory { .. } => PyMemoryError::new_err(msg),
        Error::Shape { .. } | Error::Value { .. } | Error::Parse { .. } => {
            PyValueError::new_err(msg)
        }
    }
}

/// A `RuntimeError` for a panic of the core (a bug), with its message.
pub fn panic_to_pyerr(payload: &(dyn std::any::Any + Send)) -> PyErr {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    PyRuntimeError::new_err(format!("internal error in autotimm's native core: {what}"))
}
