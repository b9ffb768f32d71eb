//! Checked allocation for buffers sized from user input: a size that
//! overflows or that the allocator refuses becomes [`Error::Memory`] naming
//! the input, instead of an abort of the whole process.

use crate::error::{Error, Result};

/// The product of `dims` (a buffer's element count), or [`Error::Memory`]
/// naming `arg` if it overflows `usize`.
pub fn product(arg: &'static str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::Memory {
            arg,
            what: format!("a buffer of {dims:?} elements (the size overflows)"),
        })
}

/// Reserves room for `additional` more elements in `v`, or [`Error::Memory`]
/// naming `arg`.
pub fn reserve<T>(arg: &'static str, v: &mut Vec<T>, additional: usize) -> Result<()> {
    v.try_reserve(additional).map_err(|_| Error::Memory {
        arg,
        what: format!(
            "{additional} more elements of {} bytes",
            std::mem::size_of::<T>()
        ),
    })
}

/// A `Vec` of `len` copies of `value`, or [`Error::Memory`] naming `arg` if
/// the memory cannot be reserved.
pub fn filled<T: Clone>(arg: &'static str, len: usize, value: T) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::Memory {
        arg,
        what: format!(
            "{len} elements of {} bytes ({:.1} GiB)",
            std::mem::size_of::<T>(),
            len as f64 * std::mem::size_of::<T>() as f64 / (1u64 << 30) as f64
        ),
    })?;
    v.resize(len, value);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_cannot_be_allocated() {
        assert_eq!(filled("x", 3, 1u8).unwrap(), vec![1, 1, 1]);
        assert!(matches!(
            filled("x", usize::MAX / 2, 0u64),
            Err(Error::Memory { arg: "x", .. })
        ));
        assert_eq!(product("x", &[2, 3, 4]).unwrap(), 24);
        let mut v = vec![1u8];
        reserve("x", &mut v, 10).unwrap();
        assert!(reserve("x", &mut v, usize::MAX / 2).is_err());
        let e = product("feature_sizes", &[1 << 40, 1 << 40]).unwrap_err();
        assert!(
            e.to_string().starts_with("feature_sizes: cannot allocate"),
            "{e}"
        );
    }
}
