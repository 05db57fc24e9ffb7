//! The straightforward blur the fast kernel replaced, kept as the reference it is tested
//! (and benchmarked) against: the full `k`-tap kernel, reflect padding through an index
//! function, and one SAXPY per tap, each tap accumulated in order into f32. Self-contained,
//! so `benches/augment.rs` can include this file too.

/// The normalised 1-D Gaussian of `k` taps, as torchvision computes it.
pub fn gaussian_kernel(k: usize, sigma: f32) -> Vec<f32> {
    let half = (k as f32 - 1.0) * 0.5;
    let mut taps: Vec<f32> = (0..k)
        .map(|i| {
            let x = -half + i as f32;
            (-0.5 * (x / sigma) * (x / sigma)).exp()
        })
        .collect();
    let sum: f32 = taps.iter().sum();
    for t in &mut taps {
        *t /= sum;
    }
    taps
}

/// Reflects an index into `0..n` without repeating the edge (`-1 -> 1`), as torch's
/// "reflect" padding.
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let mut i = i;
    if i < 0 {
        i = -i;
    }
    if i >= n {
        i = 2 * (n - 1) - i;
    }
    i.clamp(0, n - 1) as usize
}

/// Blurs packed RGB `hwc` (`w x h`) with a `k x k` Gaussian of `sigma`, in place: the
/// horizontal pass into an f32 image, then the vertical pass, then round half to even.
pub fn gaussian_blur(hwc: &mut [u8], w: usize, h: usize, k: usize, sigma: f32) {
    assert_eq!(hwc.len(), w * h * 3, "buffer is not {w}x{h}x3");
    assert!(k % 2 == 1, "kernel size {k} must be odd");
    let taps = gaussian_kernel(k, sigma);
    let r = k / 2;
    let row_len = w * 3;
    let mut tmp = vec![0f32; w * h * 3];
    let mut padded = vec![0f32; (w + 2 * r) * 3];
    let mut acc = vec![0f32; row_len];
    for y in 0..h {
        let row = &hwc[y * row_len..(y + 1) * row_len];
        for (px, slot) in padded.chunks_exact_mut(3).enumerate() {
            let xi = reflect(px as isize - r as isize, w);
            for c in 0..3 {
                slot[c] = row[xi * 3 + c] as f32;
            }
        }
        let out = &mut tmp[y * row_len..(y + 1) * row_len];
        out.fill(0.0);
        for (t, &wt) in taps.iter().enumerate() {
            let src = &padded[t * 3..t * 3 + row_len];
            for (o, &v) in out.iter_mut().zip(src) {
                *o += wt * v;
            }
        }
    }
    for y in 0..h {
        acc.fill(0.0);
        for (t, &wt) in taps.iter().enumerate() {
            let yi = reflect(y as isize + t as isize - r as isize, h);
            let src = &tmp[yi * row_len..(yi + 1) * row_len];
            for (o, &v) in acc.iter_mut().zip(src) {
                *o += wt * v;
            }
        }
        for (dst, &v) in hwc[y * row_len..(y + 1) * row_len]
            .iter_mut()
            .zip(acc.iter())
        {
            *dst = v.round_ties_even().clamp(0.0, 255.0) as u8;
        }
    }
}
