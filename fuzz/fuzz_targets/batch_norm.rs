//! `channel_moments` and `grad_sums` on arbitrary float32 values (NaN and
//! infinities included), channel counts and thread counts: an error or
//! per-channel results of the right length, never a panic. With finite inputs
//! the variance is finite and never negative, and the mean lies within each
//! channel's range.
#![no_main]

use _native::batchnorm::{channel_moments, grad_sums};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let channels = usize::from(data[0] % 9);
    let threads = usize::from(data[1] % 3);
    let values: Vec<f32> = data[2..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let half = values.len() / 2;
    let (x, grad) = (&values[..half], &values[half..2 * half]);
    let Ok(m) = channel_moments(x, channels, threads) else {
        return;
    };
    assert_eq!(m.mean.len(), channels);
    assert_eq!(m.var.len(), channels);
    for c in 0..channels {
        let column: Vec<f32> = x.iter().skip(c).step_by(channels).copied().collect();
        if column.iter().all(|v| v.is_finite()) {
            let lo = column.iter().fold(f64::INFINITY, |a, &v| a.min(f64::from(v)));
            let hi = column.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v)));
            let slack = (hi - lo) * 1e-9;
            assert!(m.mean[c] >= lo - slack && m.mean[c] <= hi + slack, "mean out of range");
            assert!(m.var[c] >= 0.0 && m.var[c].is_finite(), "variance {}", m.var[c]);
        }
    }
    let sums = grad_sums(grad, x, &m.mean, channels, threads);
    if let Ok(s) = sums {
        assert_eq!(s.sum_grad.len(), channels);
        assert_eq!(s.sum_grad_centered.len(), channels);
    }
});
