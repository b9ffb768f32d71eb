//! The core's error type. Pure Rust: `py/error.rs` maps it to Python exceptions.

use std::fmt;

/// Everything the native core can reject. Each variant names the argument (or
/// file) at fault so the message tells the user what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An array has the wrong shape: `boxes has shape (5, 3); expected (N, 4)`.
    Shape {
        arg: &'static str,
        got: String,
        expected: String,
    },
    /// An array has the wrong element type (maps to `TypeError`).
    DType {
        arg: &'static str,
        got: String,
        expected: String,
    },
    /// A value is out of its domain: NaN, negative size, unknown id, ...
    Value { arg: &'static str, msg: String },
    /// An allocation sized from `arg` cannot be made (maps to `MemoryError`).
    Memory { arg: &'static str, what: String },
    /// A file or document could not be parsed; `source` names the file.
    Parse { source: String, msg: String },
    /// A file could not be read.
    Io { path: String, msg: String },
}

impl Error {
    pub fn shape(arg: &'static str, got: impl Into<String>, expected: impl Into<String>) -> Self {
        Error::Shape {
            arg,
            got: got.into(),
            expected: expected.into(),
        }
    }

    pub fn value(arg: &'static str, msg: impl Into<String>) -> Self {
        Error::Value {
            arg,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape { arg, got, expected } => {
                write!(f, "{arg} has shape {got}; expected {expected}")
            }
            Error::DType { arg, got, expected } => {
                write!(f, "{arg} has dtype {got}; expected {expected}")
            }
            Error::Value { arg, msg } => write!(f, "{arg}: {msg}"),
            Error::Memory { arg, what } => write!(f, "{arg}: cannot allocate {what}"),
            Error::Parse { source, msg } => write!(f, "{source}: {msg}"),
            Error::Io { path, msg } => write!(f, "{path}: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_argument() {
        let e = Error::shape("boxes", "(5, 3)", "(N, 4)");
        assert_eq!(e.to_string(), "boxes has shape (5, 3); expected (N, 4)");
        let e = Error::value("iou_threshold", "must be finite, got NaN");
        assert_eq!(e.to_string(), "iou_threshold: must be finite, got NaN");
    }
}
