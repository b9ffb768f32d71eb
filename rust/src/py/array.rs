//! The one checked array extractor of the glue: every binding takes its
//! numpy arguments through [`array`], which checks the dtype and the shape
//! and yields a C-order slice (borrowed when the array is C-contiguous, a
//! copy in logical order otherwise: Fortran order, strided views). Every
//! message names the argument, what was received and what was expected.

use numpy::{
    Element, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::error::to_pyerr;
use crate::error::Error;

/// One dimension of an expected shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// Any length; `name` is how the message writes it (`N`).
    Any(&'static str),
    /// Exactly this length.
    Is(usize),
}

/// `(5, 3)`-style rendering of a shape, like Python's tuple repr.
pub fn fmt_shape(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// The expected shape as the message writes it: `(N, 4)`.
pub fn fmt_spec(spec: &[Dim]) -> String {
    let dims: Vec<String> = spec
        .iter()
        .map(|d| match d {
            Dim::Any(name) => (*name).to_owned(),
            Dim::Is(n) => n.to_string(),
        })
        .collect();
    match dims.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", dims.join(", ")),
    }
}

/// The dtype of `obj` for a message (`float16`), or `<list>` for a non-array.
pub fn describe(obj: &Bound<'_, PyAny>) -> String {
    match obj.cast::<PyUntypedArray>() {
        Ok(a) => a.dtype().to_string(),
        Err(_) => obj
            .get_type()
            .name()
            .map(|n| format!("<{n}>"))
            .unwrap_or_else(|_| "<unknown>".to_owned()),
    }
}

/// The `TypeError` for `obj` not being a numpy array of `expected`.
pub fn dtype_error(arg: &'static str, obj: &Bound<'_, PyAny>, expected: &str) -> PyErr {
    let got = describe(obj);
    let expected = if obj.cast::<PyUntypedArray>().is_ok() {
        expected.to_owned()
    } else {
        format!("a numpy array of {expected}")
    };
    to_pyerr(Error::DType { arg, got, expected })
}

/// A checked numpy argument: its shape and a C-order slice of its values.
pub struct Checked<'py, T: Element> {
    array: PyReadonlyArrayDyn<'py, T>,
    copy: Option<Vec<T>>,
}

impl<T: Element> Checked<'_, T> {
    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        self.array.shape()
    }

    /// The values in C (row-major) order.
    pub fn as_slice(&self) -> &[T] {
        match &self.copy {
            Some(values) => values,
            // Only C-contiguous arrays are kept without a copy.
            None => self.array.as_slice().unwrap_or(&[]),
        }
    }
}

/// Checks that `shape` matches `spec`.
pub fn check_shape(arg: &'static str, shape: &[usize], spec: &[Dim]) -> PyResult<()> {
    let ok = shape.len() == spec.len()
        && shape.iter().zip(spec).all(|(&d, s)| match s {
            Dim::Any(_) => true,
            Dim::Is(n) => d == *n,
        });
    if ok {
        Ok(())
    } else {
        Err(to_pyerr(Error::shape(
            arg,
            fmt_shape(shape),
            fmt_spec(spec),
        )))
    }
}

/// `obj` as a numpy array of `T` with a shape matching `spec`.
///
/// # Errors
/// `TypeError` for another dtype or a non-array, `ValueError` for another
/// shape (or an array that cannot be read), each naming `arg`.
pub fn array<'py, T: Element + Clone>(
    obj: &Bound<'py, PyAny>,
    arg: &'static str,
    spec: &[Dim],
) -> PyResult<Checked<'py, T>> {
    let array = readonly::<T>(obj, arg)?;
    check_shape(arg, array.shape(), spec)?;
    Ok(in_c_order(array))
}

/// `obj` as a numpy array of `T` of shape `(n,)`, the length of `other`.
///
/// # Errors
/// As [`array`]; the shape message says `expected (n,) to match other`.
pub fn matching<'py, T: Element + Clone>(
    obj: &Bound<'py, PyAny>,
    arg: &'static str,
    n: usize,
    other: &'static str,
) -> PyResult<Checked<'py, T>> {
    let array = readonly::<T>(obj, arg)?;
    if array.shape() != [n] {
        let expected = format!("({n},) to match {other}");
        return Err(to_pyerr(Error::shape(
            arg,
            fmt_shape(array.shape()),
            expected,
        )));
    }
    Ok(in_c_order(array))
}

/// As [`array`] for an optional argument (`None` passes through).
pub fn optional<'py, T: Element + Clone>(
    obj: Option<&Bound<'py, PyAny>>,
    arg: &'static str,
    spec: &[Dim],
) -> PyResult<Option<Checked<'py, T>>> {
    match obj {
        Some(o) if !o.is_none() => array(o, arg, spec).map(Some),
        _ => Ok(None),
    }
}

fn readonly<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    arg: &'static str,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let typed = obj.cast::<PyArrayDyn<T>>().map_err(|_| {
        let expected = T::get_dtype(obj.py()).to_string();
        dtype_error(arg, obj, &expected)
    })?;
    typed
        .try_readonly()
        .map_err(|e| to_pyerr(Error::value(arg, e.to_string())))
}

/// Borrows a C-contiguous array; copies any other layout in logical order.
fn in_c_order<T: Element + Clone>(array: PyReadonlyArrayDyn<'_, T>) -> Checked<'_, T> {
    let copy = if array.is_c_contiguous() && array.as_slice().is_ok() {
        None
    } else {
        Some(array.as_array().iter().cloned().collect())
    };
    Checked { array, copy }
}
