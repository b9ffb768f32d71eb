//! Batch-normalisation statistics and gradient sums of channels-last (NHWC)
//! float32 activations, accumulated in float64. Pure Rust: slices in, `Vec` out.
//!
//! # Why it exists
//!
//! PyTorch's CPU BatchNorm accumulates NHWC statistics and gradient sums in
//! float32, element after element, so their relative error grows with the
//! number of values per channel (1e-5 to 1e-4 on a detector's first layers),
//! while its NCHW kernel sums pairwise (about 1e-7). Here every sum runs in
//! float64 over fixed chunks of rows, so the results are as precise as NCHW's
//! or better, and do not depend on the number of threads.
//!
//! # Layout
//!
//! `x` is `rows × channels` values in row-major order: an NHWC tensor with
//! `rows = N·H·W`. Each pass reads the values once, row by row, so the inner
//! loop runs over contiguous channels and vectorises.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::parallel;

/// Rows of values per chunk (about this many values: fewer rows for wide
/// layers). The chunks, and so the order of every sum, are fixed by the
/// shape alone.
const CHUNK_VALUES: usize = 1 << 15;

/// Below this many values (or with one thread) a call stays on the calling thread.
const PARALLEL_MIN_VALUES: usize = 1 << 16;

/// Per-channel mean and biased variance, float64.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
}

/// Per-channel sums of the gradient `g` of BatchNorm's output: `sum_grad[c] =
/// Σ g` and `sum_grad_centered[c] = Σ g·(x − mean[c])`, float64. They are the
/// bias and (times `invstd`) the weight gradients.
#[derive(Debug, Clone, PartialEq)]
pub struct GradSums {
    pub sum_grad: Vec<f64>,
    pub sum_grad_centered: Vec<f64>,
}

fn check_rows(arg: &'static str, len: usize, channels: usize) -> Result<usize> {
    if channels == 0 {
        return Err(Error::value("channels", "must be positive, got 0"));
    }
    if len % channels != 0 {
        return Err(Error::value(
            arg,
            format!("has {len} values, not a multiple of {channels} channels"),
        ));
    }
    Ok(len / channels)
}

fn check_channels<T>(arg: &'static str, values: &[T], channels: usize) -> Result<()> {
    if values.len() == channels {
        Ok(())
    } else {
        Err(Error::shape(
            arg,
            format!("({},)", values.len()),
            format!("({channels},) to match the channels"),
        ))
    }
}

/// Two per-channel float64 sums over `len` values (`rows × channels`): runs
/// `per_chunk` on the value range of every chunk of whole rows with a fresh
/// pair of accumulators, and adds the chunks' pairs in chunk order (so the
/// result does not depend on the threads).
fn paired_sums(
    len: usize,
    channels: usize,
    num_threads: usize,
    per_chunk: impl Fn(std::ops::Range<usize>, &mut [f64], &mut [f64]) + Sync,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let rows = len / channels;
    let rows_per_chunk = (CHUNK_VALUES / channels).max(1);
    let chunks = rows.div_ceil(rows_per_chunk);
    let run = |i: usize| {
        let start = i * rows_per_chunk;
        let end = (start + rows_per_chunk).min(rows);
        let mut acc = vec![0.0f64; 2 * channels];
        let (first, second) = acc.split_at_mut(channels);
        per_chunk(start * channels..end * channels, first, second);
        acc
    };
    // One worker: the calling thread (already outside the GIL) does the work.
    let serial = len < PARALLEL_MIN_VALUES || parallel::resolve(num_threads) == 1;
    let partials: Vec<Vec<f64>> = if serial {
        (0..chunks).map(run).collect()
    } else {
        parallel::with_threads(num_threads, || {
            (0..chunks).into_par_iter().map(run).collect()
        })?
    };
    let mut total = vec![0.0f64; 2 * channels];
    for partial in &partials {
        for (t, p) in total.iter_mut().zip(partial) {
            *t += p;
        }
    }
    let second = total.split_off(channels);
    Ok((total, second))
}

/// Per-channel mean and biased variance of `x` (`rows × channels`, row-major).
///
/// One pass sums `x − s` and `(x − s)²` in float64, with `s` the first row
/// (the shifted-data algorithm): the variance `E[(x − s)²] − (mean − s)²`
/// then cancels only as far as the first row lies from the mean, a few
/// standard deviations, whatever the mean itself. NaN and Inf propagate to
/// their channel, as in PyTorch.
///
/// # Errors
/// `channels` of 0, a length that is not a multiple of it, or no rows.
pub fn channel_moments(x: &[f32], channels: usize, num_threads: usize) -> Result<Moments> {
    let rows = check_rows("x", x.len(), channels)?;
    if rows == 0 {
        return Err(Error::value("x", "has no values per channel"));
    }
    let shift: Vec<f64> = x[..channels].iter().map(|&v| f64::from(v)).collect();
    let (sum, sum_sq) = paired_sums(x.len(), channels, num_threads, |span, sum, sum_sq| {
        with_avx2(|| shifted_sums(&x[span], &shift, sum, sum_sq));
    })?;
    let n = rows as f64;
    let mut mean = Vec::with_capacity(channels);
    let mut var = Vec::with_capacity(channels);
    for c in 0..channels {
        let offset = sum[c] / n;
        mean.push(shift[c] + offset);
        let v = sum_sq[c] / n - offset * offset;
        // max(0) absorbs a rounding below zero for a constant channel; NaN stays NaN.
        var.push(if v < 0.0 { 0.0 } else { v });
    }
    Ok(Moments { mean, var })
}

/// [`GradSums`] of the output gradient `grad` and the input `x` (both
/// `rows × channels`, row-major) around the per-channel `mean`.
///
/// # Errors
/// As [`channel_moments`], and `grad` or `mean` of another size.
pub fn grad_sums(
    grad: &[f32],
    x: &[f32],
    mean: &[f64],
    channels: usize,
    num_threads: usize,
) -> Result<GradSums> {
    check_rows("x", x.len(), channels)?;
    if grad.len() != x.len() {
        return Err(Error::shape(
            "grad",
            format!("{} values", grad.len()),
            format!("{} values, as many as x", x.len()),
        ));
    }
    check_channels("mean", mean, channels)?;
    let (sum_grad, sum_grad_centered) =
        paired_sums(x.len(), channels, num_threads, |span, sg, sgc| {
            with_avx2(|| centered_grad_sums(&grad[span.clone()], &x[span], mean, sg, sgc));
        })?;
    Ok(GradSums {
        sum_grad,
        sum_grad_centered,
    })
}

/// Runs `kernel` compiled for AVX2 when the CPU has it (the row loops below
/// are `inline(always)`, so they vectorise to its width), else as built.
#[inline(always)]
fn with_avx2<R>(kernel: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { avx2(kernel) };
        }
    }
    kernel()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<R>(kernel: impl FnOnce() -> R) -> R {
    kernel()
}

/// Adds `x − shift` and its square, row by row, into `sum` and `sum_sq`.
#[inline(always)]
fn shifted_sums(x: &[f32], shift: &[f64], sum: &mut [f64], sum_sq: &mut [f64]) {
    for row in x.chunks_exact(shift.len()) {
        for (((s, q), &v), &k) in sum.iter_mut().zip(sum_sq.iter_mut()).zip(row).zip(shift) {
            let d = f64::from(v) - k;
            *s += d;
            *q += d * d;
        }
    }
}

/// Adds `g` and `g·(x − mean)`, row by row, into `sum_grad` and `sum_centered`.
#[inline(always)]
fn centered_grad_sums(
    grad: &[f32],
    x: &[f32],
    mean: &[f64],
    sum_grad: &mut [f64],
    sum_centered: &mut [f64],
) {
    let channels = mean.len();
    for (g_row, x_row) in grad.chunks_exact(channels).zip(x.chunks_exact(channels)) {
        let per_channel = sum_grad
            .iter_mut()
            .zip(sum_centered.iter_mut())
            .zip(g_row)
            .zip(x_row)
            .zip(mean);
        for ((((s, c), &g), &v), &m) in per_channel {
            let g = f64::from(g);
            *s += g;
            *c += g * (f64::from(v) - m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    #[test]
    fn moments_of_a_small_batch() {
        // 3 rows, 2 channels: channel 0 = 1, 2, 3; channel 1 = 5, 5, 5.
        let x = [1.0, 5.0, 2.0, 5.0, 3.0, 5.0];
        let m = channel_moments(&x, 2, 1).unwrap();
        assert_eq!(m.mean, vec![2.0, 5.0]);
        assert!((m.var[0] - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(m.var[1], 0.0);
    }

    #[test]
    fn moments_keep_precision_far_from_zero() {
        // A mean 1000 times the standard deviation, over 2^20 values.
        let channels = 4;
        let x: Vec<f32> = values(1 << 20, 3).iter().map(|v| 1000.0 + v).collect();
        let m = channel_moments(&x, channels, 2).unwrap();
        for c in 0..channels {
            let col: Vec<f64> = x
                .iter()
                .skip(c)
                .step_by(channels)
                .map(|&v| f64::from(v))
                .collect();
            let mean = col.iter().sum::<f64>() / col.len() as f64;
            let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / col.len() as f64;
            assert!((m.mean[c] - mean).abs() / mean < 1e-12);
            assert!(
                (m.var[c] - var).abs() / var < 1e-12,
                "{} vs {}",
                m.var[c],
                var
            );
        }
    }

    #[test]
    fn results_do_not_depend_on_the_threads() {
        let x = values(3 * 100_003, 7);
        let g = values(3 * 100_003, 8);
        let a = channel_moments(&x, 3, 1).unwrap();
        let b = channel_moments(&x, 3, 2).unwrap();
        assert_eq!(a, b);
        let sa = grad_sums(&g, &x, &a.mean, 3, 1).unwrap();
        let sb = grad_sums(&g, &x, &a.mean, 3, 4).unwrap();
        assert_eq!(sa, sb);
    }

    #[test]
    fn grad_sums_match_the_formula() {
        let (rows, channels) = (50, 3);
        let x = values(rows * channels, 1);
        let g = values(rows * channels, 2);
        let mean = [0.25, -1.0, 3.0];
        let sums = grad_sums(&g, &x, &mean, channels, 1).unwrap();
        for (c, m) in mean.iter().enumerate() {
            let (mut sg, mut sgc) = (0.0f64, 0.0f64);
            for r in 0..rows {
                let i = r * channels + c;
                sg += f64::from(g[i]);
                sgc += f64::from(g[i]) * (f64::from(x[i]) - m);
            }
            assert!((sums.sum_grad[c] - sg).abs() < 1e-12);
            assert!((sums.sum_grad_centered[c] - sgc).abs() < 1e-12);
        }
    }

    #[test]
    fn nan_stays_in_its_channel() {
        let x = [1.0, f32::NAN, 2.0, 1.0];
        let m = channel_moments(&x, 2, 1).unwrap();
        assert_eq!(m.mean[0], 1.5);
        assert!(m.mean[1].is_nan() && m.var[1].is_nan());
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(channel_moments(&[1.0, 2.0, 3.0], 2, 1).is_err());
        assert!(channel_moments(&[1.0], 0, 1).is_err());
        assert!(channel_moments(&[], 2, 1).is_err());
        assert!(grad_sums(&[1.0], &[1.0, 2.0], &[0.0, 0.0], 2, 1).is_err());
        assert!(grad_sums(&[1.0, 2.0], &[1.0, 2.0], &[0.0], 2, 1).is_err());
    }
}
