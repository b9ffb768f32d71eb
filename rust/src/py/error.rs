//! The one mapping from the core's [`Error`] to Python exceptions.

use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::PyErr;

use crate::error::Error;

pub fn to_pyerr(err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::DType { .. } => PyTypeError::new_err(msg),
        Error::Io { .. } => PyOSError::new_err(msg),
        Error::Shape { .. } | Error::Value { .. } | Error::Parse { .. } => {
            PyValueError::new_err(msg)
        }
    }
}
