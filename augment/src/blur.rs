//! Gaussian blur, as torchvision's `gaussian_blur` (reflect padding, round to nearest even),
//! computed separably in 16-bit fixed point.
//!
//! [`gaussian_blur`] is the kernel, [`BlurConfig`] the random wrapper. The kernel is about
//! 10x (sigma 2) to 15x (sigma 1) faster than the plain f32 one it replaced (kept in
//! `blur/reference.rs` for the tests and benches), from:
//! - dropping taps too small to matter (a 23-tap kernel of sigma 1.0 keeps 9; below sigma
//!   0.22 only the centre is left and the blur is the identity), within the bound that
//!   [`gaussian_blur`] states;
//! - pairing the symmetric taps: `w_t * (a[i - t] + a[i + t])`;
//! - 16-bit lanes (16 per AVX2 register, twice f32's), exact integer arithmetic: values in
//!   units of 1/256 of a level, weights in units of 2^-16 (in `blur/kernel.rs`, which says
//!   how the error stays within a few thousandths of a level);
//! - blocks of outputs held in registers while the taps go by, a vertical pass that walks
//!   column strips so the rows it reads stay in L1, and cache-line aligned rows.
//!
//! The passes are one body compiled twice, with AVX2 (picked at run time) and for the
//! baseline target; integer arithmetic is exact, so both give the same bytes, and the
//! result is exactly mirror symmetric (the symmetric taps see the same pairs either way).

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
        // Reflect padding needs k / 2 < side: the largest odd such k is 2 * side - 1 (1 for
        // an empty image). A huge fraction saturates the cast, so no loop counts down.
        k.min(2 * side.saturating_sub(1) + 1)
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
        match self.draw(rng) {
            Some(sigma) => {
                self.blur(hwc, w, h, sigma, scratch);
                true
            }
            None => false,
        }
    }

    /// The random choices of [`BlurConfig::apply`] without the pixels: the sigma if it
    /// blurs. Draws the same two numbers.
    pub fn draw(&self, rng: &mut impl Rng) -> Option<f32> {
        let blur = rng.gen_bool(crate::chance(self.p));
        // A range that is empty, reversed or not finite gives its lower end (gen_range
        // would panic).
        let sigma = if self.sigma.1 > self.sigma.0 && (self.sigma.1 - self.sigma.0).is_finite() {
            rng.gen_range(self.sigma.0..self.sigma.1)
        } else {
            self.sigma.0
        };
        blur.then_some(sigma)
    }

    /// Blurs `hwc` (`w x h`) with `sigma` and this config's kernel size (nothing where the
    /// image is too small for a 3-tap kernel).
    pub fn blur(&self, hwc: &mut [u8], w: usize, h: usize, sigma: f32, scratch: &mut Vec<f32>) {
        let k = self.kernel_size(w, h);
        if k >= 3 {
            gaussian_blur(hwc, w, h, k, sigma, scratch);
        }
    }
}

/// Largest change, in levels, that dropping a kernel's outer taps may make to one pass: the
/// dropped weight times 255 stays at or under this. See [`gaussian_blur`]; at 0.02 a
/// 23-tap kernel of sigma 2.0 keeps 17 taps, and one of sigma 1.0 keeps 9.
pub const TAIL_LEVELS: f32 = 0.02;

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
/// The result is torchvision's up to rounding: both passes sum in 16-bit fixed point (torch
/// convolves in 2-D in f32) and, to save time, outer taps whose weight barely shows are
/// dropped. The bound on the dropping: a pass's output is `sum_t w_t x_t` with `x_t` in
/// `[0, 255]`; dropping taps of total weight `d` and renormalising the rest by `1 / (1 - d)`
/// changes it by `d / (1 - d) * sum_kept w_t x_t - sum_dropped w_t x_t`, where both terms
/// lie in `[0, 255 d]`, so by at most `255 d <= TAIL_LEVELS` (0.02 levels, and on real
/// images far less: the two terms nearly cancel where the dropped pixels resemble the kept
/// ones). The fixed point (see `blur/kernel.rs`) adds an error of a few thousandths of a
/// level. The rounded byte changes only where the exact value lies that close to a half
/// level, and then by one level: measured against the plain f32 blur at 224 px, about 0.3%
/// of values on noise and on smooth pictures alike (the tests check under 0.5%; the golden
/// test allows one level on 2%). For sigma below about 0.22 every tap but the centre drops,
/// and the blur is exactly the identity, so it returns at once. A `sigma` that is not
/// positive (or NaN) is the limit of a vanishing blur: the identity too.
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
    // Layout, in f32 slots: the kernel (k) | then, viewed as 16-bit values from the next
    // cache line: the fixed-point weights (padded to a cache line) | the horizontal pass's
    // output with r reflected rows above and below ((h + 2r) rows) | one reflect-padded
    // source row ((w + 2r) pixels). Aligned rows keep the vertical pass's loads from
    // straddling cache lines when a row is a whole number of lines (224 pixels).
    let row_len = w * 3;
    let wt_len = (r + 1).next_multiple_of(32);
    let tmp_len = (h + 2 * r) * row_len;
    let padded_len = (w + 2 * r) * 3;
    let halves = wt_len + tmp_len + padded_len;
    grow(scratch, k + 16 + halves.div_ceil(2));
    let (head, rest) = scratch.split_at_mut(k);
    let gap = rest.as_ptr().align_offset(64).min(16);
    let rest = &mut rest[gap..];
    debug_assert!(rest.len() * 2 >= halves);
    // SAFETY: `rest` is an exclusive borrow of at least `halves / 2` f32s; u16 has a smaller
    // alignment than f32, and every bit pattern is valid for both types.
    let rest: &mut [u16] =
        unsafe { std::slice::from_raw_parts_mut(rest.as_mut_ptr().cast::<u16>(), halves) };
    let (wt, rest) = rest.split_at_mut(wt_len);
    let r = quantize(&head[full..=full + r], &mut wt[..=r]);
    if r == 0 {
        return;
    }
    let (tmp, rest) = rest.split_at_mut((h + 2 * r) * row_len);
    let padded = &mut rest[..(w + 2 * r) * 3];
    kernel::blur(isa, hwc, w, h, &wt[..=r], tmp, padded);
}

/// The half kernel `half` (`half[t]` weighs distance `t`, summing to one with both sides) in
/// 16-bit fixed point: `wt[t] = round(2 half[t] * 2^16)` weighs both neighbours at distance
/// `t` together, and the centre's `wt[0]` is what makes the sum exactly 65536 (one). Outer
/// taps that round to zero are dropped; returns the radius left (`wt[..=radius]` holds it).
fn quantize(half: &[f32], wt: &mut [u16]) -> usize {
    let mut radius = half.len() - 1;
    let fixed = |t: f32| (f64::from(t) * 131_072.0).round() as u32;
    while radius > 0 && fixed(half[radius]) == 0 {
        radius -= 1;
    }
    let mut rest = 0u32;
    for t in 1..=radius {
        // Below 1/2 (the centre tap outweighs each side), so it fits 16 bits.
        let q = fixed(half[t]);
        wt[t] = q as u16;
        rest += q;
    }
    // `rest` >= 1 when radius >= 1, so the centre fits 16 bits too.
    wt[0] = (65_536 - rest) as u16;
    radius
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
        // One level on 2% of values, as the golden test; or on two values, in images too
        // small for 2% to be two (a few tenths of a percent of values sit close enough to a
        // half level to round the other way).
        assert!(
            max <= 1 && (share <= 0.02 || share * got.len() as f64 <= 2.0),
            "{w}x{h} k {k} sigma {sigma}: max diff {max}, {:.3}% differ",
            share * 100.0
        );
        share
    }

    /// The share of values one level off the f32 reference at 224 px, the strong preset's
    /// kernel, over its sigma range: the cost of the fixed point and the trimming.
    #[test]
    fn few_values_change_at_224_on_noise_and_pictures() {
        for (name, img) in [
            ("noise", noise(224, 224, 9)),
            ("picture", picture(224, 224, 2)),
        ] {
            let mut mean = 0.0;
            for i in 0..10 {
                let sigma = 0.1 + 1.9 * i as f32 / 9.0;
                let got = blur_all(&img, 224, 224, 23, sigma);
                let mut want = img.clone();
                reference::gaussian_blur(&mut want, 224, 224, 23, sigma);
                let (max, share) = compare(&got, &want);
                assert!(
                    max <= 1 && share < 0.006,
                    "{name} sigma {sigma}: {max}, {share}"
                );
                mean += share / 10.0;
            }
            assert!(mean < 0.004, "{name}: {mean}");
        }
    }

    #[test]
    fn fixed_point_weights_sum_to_one() {
        for (k, sigma) in [
            (3, 0.5),
            (23, 0.25),
            (23, 1.0),
            (23, 2.0),
            (45, 10.0),
            (9, 100.0),
        ] {
            let mut taps = gaussian_kernel(k, sigma);
            let r = trim_kernel(&mut taps[k / 2..]);
            let mut wt = vec![0u16; r + 1];
            let r = quantize(&taps[k / 2..=k / 2 + r], &mut wt);
            let sum: u32 = wt[..=r].iter().map(|&t| u32::from(t)).sum();
            assert_eq!(sum, 1 << 16, "k {k} sigma {sigma}");
            assert!(r == 0 || wt[r] > 0, "k {k} sigma {sigma}");
        }
    }

    #[test]
    fn extremes_do_not_overflow() {
        // Full-scale noise (0 or 255) and a white image through wide kernels: sums reach
        // 65280, the most 16 bits hold in units of 1/256. (Not a checkerboard: its blur sits
        // on 127.5 exactly, where any two sums may round apart.)
        let (w, h) = (40, 30);
        let extremes: Vec<u8> = noise(w, h, 6)
            .iter()
            .map(|&v| if v < 128 { 0 } else { 255 })
            .collect();
        for sigma in [0.5, 2.0, 10.0] {
            for k in [3, 23, 59] {
                check_against_reference(&extremes, w, h, k, sigma);
                let white = vec![255u8; w * h * 3];
                assert_eq!(blur_all(&white, w, h, k, sigma), white);
            }
        }
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
        let radii: Vec<usize> = [0.1, 0.2, 0.25, 0.5, 1.0, 1.5, 2.0].map(radius).to_vec();
        assert_eq!(radii, [0, 0, 1, 2, 4, 6, 8]);
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
        assert!(worst < 0.01, "{worst}");
    }

    #[test]
    fn matches_the_reference_on_a_224_picture() {
        let (w, h) = (224, 224);
        let img = picture(w, h, 2);
        for sigma in [0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.3, 1.7, 2.0] {
            let share = check_against_reference(&img, w, h, 23, sigma);
            assert!(share < 0.006, "sigma {sigma}: {share}");
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
