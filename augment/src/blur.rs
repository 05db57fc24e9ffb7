//! Gaussian blur, as torchvision's `gaussian_blur` (reflect padding, round to nearest even),
//! computed separably in f32.

use rand::Rng;

/// Random Gaussian blur settings (SimCLR: sigma in [0.1, 2.0], kernel about 10% of the
/// image side, p = 0.5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlurConfig {
    /// Range of sigma.
    pub sigma: (f32, f32),
    /// Kernel side as a fraction of the shorter image side (made odd, at least 3).
    pub kernel_fraction: f32,
    /// Probability of blurring.
    pub p: f64,
}

impl Default for BlurConfig {
    fn default() -> Self {
        BlurConfig {
            sigma: (0.1, 2.0),
            kernel_fraction: 0.1,
            p: 0.5,
        }
    }
}

impl BlurConfig {
    /// The odd kernel size for a `w x h` image, at most the side allows with reflection.
    pub fn kernel_size(&self, w: usize, h: usize) -> usize {
        let side = w.min(h);
        let mut k = ((self.kernel_fraction * side as f32) as usize).max(3);
        if k.is_multiple_of(2) {
            k += 1;
        }
        // Reflect padding needs k / 2 < side.
        while k > 1 && k / 2 >= side {
            k -= 2;
        }
        k
    }

    /// Blurs packed RGB `hwc` with probability `p`, using `scratch` (resized as needed, so
    /// reused buffers make it allocation-free). Draws two numbers from `rng`.
    pub fn apply(
        &self,
        hwc: &mut [u8],
        w: usize,
        h: usize,
        rng: &mut impl Rng,
        scratch: &mut Vec<f32>,
    ) -> bool {
        let blur = rng.gen_bool(self.p.clamp(0.0, 1.0));
        let sigma = if self.sigma.1 > self.sigma.0 {
            rng.gen_range(self.sigma.0..self.sigma.1)
        } else {
            self.sigma.0
        };
        let k = self.kernel_size(w, h);
        if blur && k >= 3 {
            gaussian_blur(hwc, w, h, k, sigma, scratch);
        }
        blur
    }
}

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
#[inline]
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

/// Blurs packed RGB `hwc` (`w x h`) with a `k x k` Gaussian of `sigma`, in place.
///
/// Both passes accumulate the taps in order into f32 (`out += w_t * src_t`, one tap at a
/// time over a whole row, so the compiler vectorises across the row); the result is the
/// same, bit for bit, as summing each output's taps in a scalar loop.
///
/// # Panics
/// If `hwc.len() != w * h * 3` or `k` is even.
pub fn gaussian_blur(
    hwc: &mut [u8],
    w: usize,
    h: usize,
    k: usize,
    sigma: f32,
    scratch: &mut Vec<f32>,
) {
    assert_eq!(hwc.len(), w * h * 3, "buffer is not {w}x{h}x3");
    assert!(k % 2 == 1, "kernel size {k} must be odd");
    let taps = gaussian_kernel(k, sigma);
    let r = k / 2;
    let row_len = w * 3;
    let padded_len = (w + 2 * r) * 3;
    scratch.clear();
    scratch.resize(w * h * 3 + padded_len + row_len, 0.0);
    let (tmp, rest) = scratch.split_at_mut(w * h * 3);
    let (padded, acc) = rest.split_at_mut(padded_len);
    // Horizontal pass: reflect-pad each row, then one SAXPY per tap.
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
    // Vertical pass: for each output row, one SAXPY per tap over the reflected source rows,
    // then round half to even as torch.round does.
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
