//! Gaussian blur, as torchvision's `gaussian_blur` (reflect padding, round to nearest even),
//! computed separably in f32.
//!
//! [`gaussian_blur`] is the kernel, [`BlurConfig`] the random wrapper. The kernel is about
//! 5x (sigma 2) to 10x (sigma 1) faster than the plain one it replaced (kept in
//! `blur/reference.rs` for the tests and benches), from:
//! - dropping taps too small to show (a 23-tap kernel of sigma 1.0 keeps 9; below sigma
//!   0.19 only the centre is left and the blur is the identity), within the bound that
//!   [`gaussian_blur`] states;
//! - pairing the symmetric taps: `w_t * (a[i - t] + a[i + t])`;
//! - blocks of 32 outputs held in registers while the taps go by, a vertical pass that walks
//!   32-float column strips so the rows it reads stay in L1, and cache-line aligned rows
//!   (in `blur/kernel.rs`).
//!
//! The passes are one body compiled twice, with AVX2 (picked at run time) and for the
//! baseline target; neither uses fused multiply-add, so both give the same bytes.

use rand::Rng;

mod kernel;
#[cfg(test)]
mod reference;

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

/// Largest change, in levels, that dropping a kernel's outer taps may make to one pass: the
/// dropped weight times 255 stays at or under this. See [`gaussian_blur`].
pub const TAIL_LEVELS: f32 = 1e-3;

/// The normalised 1-D Gaussian of `k` taps, as torchvision computes it.
pub fn gaussian_kernel(k: usize, sigma: f32) -> Vec<f32> {
    let mut taps = vec![0.0; k];
    fill_gaussian_kernel(&mut taps, sigma);
    taps
}

/// Writes the normalised Gaussian of `taps.len()` taps into `taps`, as torchvision computes
/// it: `exp(-0.5 (x / sigma)^2)` on the integer grid centred on the middle tap, over its sum.
fn fill_gaussian_kernel(taps: &mut [f32], sigma: f32) {
    let half = (taps.len() as f32 - 1.0) * 0.5;
    for (i, t) in taps.iter_mut().enumerate() {
        let x = -half + i as f32;
        *t = (-0.5 * (x / sigma) * (x / sigma)).exp();
    }
    let sum: f32 = taps.iter().sum();
    for t in taps {
        *t /= sum;
    }
}

/// Shrinks the half kernel `half` (`half[t]` is the weight at distance `t`) to the taps that
/// matter: drops outer taps while the dropped weight (both sides) times 255 stays at or under
/// [`TAIL_LEVELS`], then renormalises what is left if anything was dropped. Returns the new
/// radius; `half[..=radius]` holds the taps.
fn trim_kernel(half: &mut [f32]) -> usize {
    let full = half.len() - 1;
    let mut radius = full;
    let mut dropped = 0f64;
    while radius > 0 && (dropped + 2.0 * half[radius] as f64) * 255.0 <= TAIL_LEVELS as f64 {
        dropped += 2.0 * half[radius] as f64;
        radius -= 1;
    }
    if radius < full {
        let kept: f64 =
            half[0] as f64 + 2.0 * half[1..=radius].iter().map(|&t| t as f64).sum::<f64>();
        for t in &mut half[..=radius] {
            *t = (*t as f64 / kept) as f32;
        }
    }
    radius
}

/// Blurs packed RGB `hwc` (`w x h`) with a `k x k` Gaussian of `sigma`, in place, using
/// `scratch` (resized as needed; a reused buffer makes the call allocation-free).
///
/// The result is torchvision's up to rounding: both passes sum in f32 (torch convolves in
/// 2-D, in another order) and, to save time, outer taps whose weight cannot show are
/// dropped. The bound: a pass's output is `sum_t w_t x_t` with `x_t` in `[0, 255]`;
/// dropping taps of total weight `d` and renormalising the rest by `1 / (1 - d)` changes it
/// by `d / (1 - d) * sum_kept w_t x_t - sum_dropped w_t x_t`, where both terms lie in
/// `[0, 255 d]`, so by at most `255 d <= TAIL_LEVELS` (1e-3). The second pass carries the
/// first's change through weights summing to 1 and adds its own, so the value before
/// rounding moves by at most 2e-3 levels: the rounded byte can change only where the full
/// kernel's value lies within 2e-3 of a half level, and then by one level (about 0.4% of
/// values if their fractions are spread evenly, far fewer on smooth images; the golden test
/// allows one level on 2%). For sigma below about 0.19 every tap but the centre drops, and
/// the blur is exactly the identity, so it returns at once. A `sigma` that is not positive
/// (or NaN) is the limit of a vanishing blur: the identity too.
///
/// The kernel is symmetric and so is reflect padding, so the result is exactly mirror
/// symmetric: blurring a flipped image gives the flipped blur, byte for byte.
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
    gaussian_blur_on(kernel::Isa::detect(), hwc, w, h, k, sigma, scratch);
}

/// [`gaussian_blur`] with the instruction set chosen by the caller (tests compare them).
fn gaussian_blur_on(
    isa: kernel::Isa,
    hwc: &mut [u8],
    w: usize,
    h: usize,
    k: usize,
    sigma: f32,
    scratch: &mut Vec<f32>,
) {
    assert_eq!(hwc.len(), w * h * 3, "buffer is not {w}x{h}x3");
    assert!(k % 2 == 1, "kernel size {k} must be odd");
    if w == 0 || h == 0 || sigma.is_nan() || sigma <= 0.0 {
        return;
    }
    let full = k / 2;
    // Only ever grown: everything read below is written first, so no need to zero it.
    grow(scratch, k);
    fill_gaussian_kernel(&mut scratch[..k], sigma);
    let r = trim_kernel(&mut scratch[full..k]);
    if r == 0 {
        return;
    }
    // Layout: taps (r + 1) | up to 15 floats so that the next starts on a cache line | the
    // horizontal pass's output with r reflected rows above and below ((h + 2r) rows) | one
    // reflect-padded source row ((w + 2r) pixels). Aligned rows keep the vertical pass's
    // loads from straddling cache lines when a row is a whole number of lines (224 pixels).
    scratch.copy_within(full..=full + r, 0);
    let row_len = w * 3;
    let taps_len = r + 1;
    let tmp_len = (h + 2 * r) * row_len;
    let padded_len = (w + 2 * r) * 3;
    grow(scratch, taps_len + 15 + tmp_len + padded_len);
    let (taps, rest) = scratch.split_at_mut(taps_len);
    let gap = rest.as_ptr().align_offset(64).min(15);
    let (tmp, rest) = rest[gap..].split_at_mut(tmp_len);
    let padded = &mut rest[..padded_len];
    kernel::blur(isa, hwc, w, h, taps, tmp, padded);
}

/// Makes `v` at least `len` long, keeping what it holds.
fn grow(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::kernel::Isa;
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// (max difference, share of values that differ), as `tests/golden.rs` counts them.
    fn compare(got: &[u8], want: &[u8]) -> (u8, f64) {
        let max = got.iter().zip(want).map(|(a, b)| a.abs_diff(*b)).max();
        let differ = got.iter().zip(want).filter(|(a, b)| a != b).count();
        (max.unwrap_or(0), differ as f64 / got.len().max(1) as f64)
    }

    fn noise(w: usize, h: usize, seed: u64) -> Vec<u8> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..w * h * 3).map(|_| rng.gen()).collect()
    }

    /// A smooth picture with edges: gradients, a disc and a little noise.
    fn picture(w: usize, h: usize, seed: u64) -> Vec<u8> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut img = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as f32 - w as f32 / 2.0, y as f32 - h as f32 / 3.0);
                let disc = if dx * dx + dy * dy < (w.min(h) as f32 / 4.0).powi(2) {
                    90.0
                } else {
                    0.0
                };
                for c in 0..3 {
                    let v = 255.0 * x as f32 / w as f32 * (c as f32 + 1.0) / 3.0
                        + 60.0 * (y as f32 * 0.1).sin()
                        + disc
                        + rng.gen_range(-8.0..8.0);
                    img.push(v.clamp(0.0, 255.0) as u8);
                }
            }
        }
        img
    }

    fn isas() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        if Isa::detect() != Isa::Portable {
            v.push(Isa::detect());
        }
        v
    }

    /// Blurs with every instruction set, checks they agree byte for byte, and returns the
    /// result.
    fn blur_all(img: &[u8], w: usize, h: usize, k: usize, sigma: f32) -> Vec<u8> {
        let mut scratch = Vec::new();
        let mut first: Option<Vec<u8>> = None;
        for isa in isas() {
            let mut out = img.to_vec();
            gaussian_blur_on(isa, &mut out, w, h, k, sigma, &mut scratch);
            match &first {
                None => first = Some(out),
                Some(f) => assert_eq!(&out, f, "{isa:?} differs, {w}x{h} k {k} sigma {sigma}"),
            }
        }
        first.unwrap()
    }

    fn check_against_reference(img: &[u8], w: usize, h: usize, k: usize, sigma: f32) -> f64 {
        let got = blur_all(img, w, h, k, sigma);
        let mut want = img.to_vec();
        reference::gaussian_blur(&mut want, w, h, k, sigma);
        let (max, share) = compare(&got, &want);
        assert!(
            max <= 1 && share <= 0.02,
            "{w}x{h} k {k} sigma {sigma}: max diff {max}, {:.3}% differ",
            share * 100.0
        );
        share
    }

    #[test]
    fn the_public_kernel_matches_the_old_one() {
        assert_eq!(
            gaussian_kernel(23, 1.3),
            reference::gaussian_kernel(23, 1.3)
        );
        assert_eq!(gaussian_kernel(3, 0.5), reference::gaussian_kernel(3, 0.5));
    }

    #[test]
    fn trimming_drops_only_what_cannot_show() {
        let radius = |sigma: f32| {
            let mut taps = gaussian_kernel(23, sigma);
            trim_kernel(&mut taps[11..])
        };
        let radii: Vec<usize> = [0.1, 0.2, 0.5, 1.0, 1.5, 2.0].map(radius).to_vec();
        assert_eq!(radii, [0, 1, 2, 4, 7, 9]);
        // A wide kernel keeps every tap, untouched.
        let mut taps = gaussian_kernel(5, 3.0);
        let before = taps.clone();
        assert_eq!(trim_kernel(&mut taps[2..]), 2);
        assert_eq!(taps, before);
        // A trimmed kernel still sums to 1.
        let mut taps = gaussian_kernel(23, 1.0);
        let r = trim_kernel(&mut taps[11..]);
        let sum = taps[11] as f64 + 2.0 * taps[12..=11 + r].iter().map(|&t| t as f64).sum::<f64>();
        assert!((sum - 1.0).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn matches_the_reference_on_noise_for_many_sigmas() {
        let (w, h) = (61, 47);
        let img = noise(w, h, 1);
        let mut worst = 0f64;
        for i in 0..=40 {
            let sigma = 0.1 + 1.9 * i as f32 / 40.0;
            for k in [3, 5, 9, 23, 45] {
                worst = worst.max(check_against_reference(&img, w, h, k, sigma));
            }
        }
        // Noise is the worst case for rounding; still far under the golden test's 2%.
        assert!(worst < 0.005, "{worst}");
    }

    #[test]
    fn matches_the_reference_on_a_224_picture() {
        let (w, h) = (224, 224);
        let img = picture(w, h, 2);
        for sigma in [0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.3, 1.7, 2.0] {
            let share = check_against_reference(&img, w, h, 23, sigma);
            assert!(share < 0.002, "sigma {sigma}: {share}");
        }
    }

    #[test]
    fn small_and_odd_shapes_match_the_reference() {
        for (w, h) in [
            (1, 1),
            (1, 2),
            (2, 1),
            (2, 2),
            (3, 1),
            (1, 5),
            (3, 3),
            (4, 9),
            (13, 2),
        ] {
            let img = noise(w, h, (w * 100 + h) as u64);
            for k in [1, 3, 5, 7, 9, 31] {
                for sigma in [0.1, 0.7, 1.0, 2.0, 10.0] {
                    check_against_reference(&img, w, h, k, sigma);
                }
            }
        }
        // Every width around the 32- and 8-wide blocks, and kernels close to the side.
        for w in 1..=40 {
            let h = 7;
            let img = noise(w, h, w as u64);
            for k in [3, 5, 7, 2 * (w.min(h) - 1) + 1] {
                check_against_reference(&img, w, h, k, 1.5);
            }
        }
    }

    #[test]
    fn tiny_sigma_is_the_identity_and_bad_sigma_too() {
        let (w, h) = (20, 11);
        let img = noise(w, h, 3);
        for sigma in [0.1, 0.15, 0.0, -1.0, f32::NAN] {
            assert_eq!(blur_all(&img, w, h, 5, sigma), img, "sigma {sigma}");
        }
        let mut want = img.clone();
        reference::gaussian_blur(&mut want, w, h, 5, 0.15);
        assert_eq!(want, img, "the reference is the identity there too");
    }

    #[test]
    fn a_flat_image_stays_flat() {
        for v in [0u8, 1, 127, 254, 255] {
            let img = vec![v; 30 * 20 * 3];
            for sigma in [0.5, 1.0, 2.0] {
                assert_eq!(blur_all(&img, 30, 20, 9, sigma), img, "{v} sigma {sigma}");
            }
        }
    }

    #[test]
    fn blur_commutes_with_the_flip_byte_for_byte() {
        let (w, h) = (37, 19);
        let img = noise(w, h, 4);
        for sigma in [0.5, 1.0, 2.0] {
            let mut flipped = img.clone();
            crate::hflip(&mut flipped, w, h, 3);
            let mut a = blur_all(&img, w, h, 9, sigma);
            crate::hflip(&mut a, w, h, 3);
            assert_eq!(a, blur_all(&flipped, w, h, 9, sigma), "sigma {sigma}");
        }
    }

    #[test]
    fn scratch_is_reused_across_sizes() {
        let mut scratch = Vec::new();
        for (w, h, k) in [(50, 40, 5), (10, 8, 3), (64, 64, 7)] {
            let img = noise(w, h, 5);
            let mut a = img.clone();
            gaussian_blur(&mut a, w, h, k, 1.2, &mut scratch);
            let mut b = img.clone();
            gaussian_blur(&mut b, w, h, k, 1.2, &mut Vec::new());
            assert_eq!(a, b);
        }
    }

    #[test]
    fn apply_draws_two_numbers_either_way() {
        let cfg = BlurConfig::default();
        let (w, h) = (16, 16);
        for seed in 0..20 {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let mut img = noise(w, h, seed);
            cfg.apply(&mut img, w, h, &mut rng, &mut Vec::new());
            let mut expect = Xoshiro256PlusPlus::seed_from_u64(seed);
            expect.gen_bool(0.5);
            expect.gen_range(0.1f32..2.0);
            assert_eq!(rng.gen::<u64>(), expect.gen::<u64>());
        }
    }
}
