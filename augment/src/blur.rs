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
    let r = (k / 2) as isize;
    scratch.clear();
    scratch.resize(w * h * 3, 0.0);
    // Horizontal pass into scratch.
    for y in 0..h {
        let row = &hwc[y * w * 3..(y + 1) * w * 3];
        for x in 0..w {
            for c in 0..3 {
                let mut acc = 0.0f32;
                for (t, &wt) in taps.iter().enumerate() {
                    let xi = reflect(x as isize + t as isize - r, w);
                    acc += wt * row[xi * 3 + c] as f32;
                }
                scratch[(y * w + x) * 3 + c] = acc;
            }
        }
    }
    // Vertical pass back into the image, rounding half to even as torch.round does.
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let mut acc = 0.0f32;
                for (t, &wt) in taps.iter().enumerate() {
                    let yi = reflect(y as isize + t as isize - r, h);
                    acc += wt * scratch[(yi * w + x) * 3 + c];
                }
                hwc[(y * w + x) * 3 + c] = acc.round_ties_even().clamp(0.0, 255.0) as u8;
            }
        }
    }
}
