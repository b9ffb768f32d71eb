//! FCOS target assignment on arbitrary boxes, labels, counts and levels (kept
//! small so every run stays in memory): an error or targets of the right
//! shape whose labels come from the input, never a panic.
#![no_main]

use _native::assign::{fcos_targets, Level, Options};
use libfuzzer_sys::fuzz_target;

fn f32_at(b: &[u8], i: usize) -> f32 {
    let at = |k: usize| b.get(i + k).copied().unwrap_or(0);
    f32::from_le_bytes([at(0), at(1), at(2), at(3)])
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let num_levels = 1 + usize::from(data[0] % 3);
    let mut levels = Vec::new();
    for k in 0..num_levels {
        let b = data[1 + k];
        levels.push(Level {
            stride: u32::from(b % 17),
            height: usize::from(b % 13),
            width: usize::from(b.rotate_left(3) % 11),
            lo: if k == 0 { -1.0 } else { 16.0 * k as f32 },
            hi: if k + 1 == num_levels {
                f32::INFINITY
            } else {
                16.0 * (k + 1) as f32
            },
        });
    }
    let num_images = usize::from(data[4] % 4);
    let radius = match data[5] % 4 {
        0 => None,
        1 => Some(1.5),
        2 => Some(f64::from(f32_at(data, 6))),
        _ => Some(0.0),
    };
    let num_classes = (data[6] % 2 == 0).then_some(i64::from(data[7] % 5));
    let body = &data[8..];
    // 16 bytes of box, one label byte per record.
    let n = body.len() / 17;
    let mut boxes = Vec::with_capacity(4 * n);
    let mut labels = Vec::with_capacity(n);
    for r in body.chunks_exact(17) {
        boxes.extend((0..4).map(|k| f32_at(r, 4 * k)));
        labels.push(i64::from(r[16] % 8) - 1);
    }
    let mut counts = vec![0i64; num_images];
    if let Some(first) = counts.first_mut() {
        *first = n as i64;
    }
    for threads in [1, 2] {
        let options = Options {
            center_sampling_radius: radius,
            num_classes,
            num_threads: threads,
        };
        if let Ok(t) = fcos_targets(&boxes, &labels, &counts, &levels, &options) {
            let total = t.num_images * t.num_points;
            assert_eq!(t.num_images, num_images);
            assert_eq!(t.cls.len(), total);
            assert_eq!(t.reg.len(), 4 * total);
            assert_eq!(t.ctr.len(), total);
            assert!(t.cls.iter().all(|c| *c == -1 || labels.contains(c)));
        }
    }
});
