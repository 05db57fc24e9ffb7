//! Colour jitter: brightness, contrast, saturation and hue, as torchvision's tensor functions
//! on uint8 images (f32 arithmetic, results truncated), applied in a random order.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::grayscale::luma;

/// `ColorJitter` settings: each factor is drawn from `[max(0, 1 - x), 1 + x]` (hue from
/// `[-hue, hue]`), the four adjustments run in a random order, and the whole jitter runs
/// with probability `p` (SimCLR: 0.4, 0.4, 0.4, 0.1 with p = 0.8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterConfig {
    /// Brightness strength.
    pub brightness: f64,
    /// Contrast strength.
    pub contrast: f64,
    /// Saturation strength.
    pub saturation: f64,
    /// Hue strength, at most 0.5.
    pub hue: f64,
    /// Probability of jittering at all.
    pub p: f64,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            p: 0.8,
        }
    }
}

impl JitterConfig {
    /// Jitters packed RGB `hwc` with probability `p`. The draws from `rng` (apply?, order,
    /// four factors) do not depend on the pixels.
    pub fn apply(&self, hwc: &mut [u8], rng: &mut impl Rng) -> bool {
        if !rng.gen_bool(self.p.clamp(0.0, 1.0)) {
            return false;
        }
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(rng);
        let factor = |rng: &mut _, x: f64| uniform(rng, (1.0 - x).max(0.0), 1.0 + x);
        let b = factor(rng, self.brightness);
        let c = factor(rng, self.contrast);
        let s = factor(rng, self.saturation);
        let h = uniform(rng, -self.hue, self.hue);
        for op in order {
            match op {
                0 if self.brightness > 0.0 => adjust_brightness(hwc, b),
                1 if self.contrast > 0.0 => adjust_contrast(hwc, c),
                2 if self.saturation > 0.0 => adjust_saturation(hwc, s),
                3 if self.hue > 0.0 => adjust_hue(hwc, h),
                _ => {}
            }
        }
        true
    }
}

fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        rng.gen_range(lo..hi)
    } else {
        lo
    }
}

/// torchvision's `_blend`: `ratio * a + (1 - ratio) * b` in f32, clamped to [0, 255],
/// truncated. Like Python, `1 - ratio` is computed in f64 before the cast to f32.
#[inline]
fn blend(a: u8, b: f32, ratio: f32, one_minus: f32) -> u8 {
    (ratio * a as f32 + one_minus * b).clamp(0.0, 255.0) as u8
}

/// The f32 weights `(ratio, 1 - ratio)` of a blend with the f64 factor `f`.
fn weights(f: f64) -> (f32, f32) {
    (f as f32, (1.0 - f) as f32)
}

/// Multiplies every value by `factor`.
pub fn adjust_brightness(hwc: &mut [u8], factor: f64) {
    let (ratio, om) = weights(factor);
    apply_lut(hwc, |v| blend(v, 0.0, ratio, om));
}

/// Maps every byte through `f`, computed once per possible value (a 256-entry table gives
/// the same bytes as calling `f` on each value, several times faster).
fn apply_lut(hwc: &mut [u8], f: impl Fn(u8) -> u8) {
    let lut: [u8; 256] = std::array::from_fn(|v| f(v as u8));
    for v in hwc.iter_mut() {
        *v = lut[*v as usize];
    }
}

/// Blends every value with the image's mean luma.
pub fn adjust_contrast(hwc: &mut [u8], factor: f64) {
    let n = hwc.len() / 3;
    if n == 0 {
        return;
    }
    let sum: f64 = hwc
        .chunks_exact(3)
        .map(|p| luma(p[0], p[1], p[2]) as f64)
        .sum();
    let mean = (sum / n as f64) as f32;
    let (ratio, om) = weights(factor);
    apply_lut(hwc, |v| blend(v, mean, ratio, om));
}

/// Blends every pixel with its own luma.
pub fn adjust_saturation(hwc: &mut [u8], factor: f64) {
    let (ratio, om) = weights(factor);
    for px in hwc.chunks_exact_mut(3) {
        let l = luma(px[0], px[1], px[2]) as f32;
        for v in px.iter_mut() {
            *v = blend(*v, l, ratio, om);
        }
    }
}

/// Rotates every pixel's hue by `factor` (in turns, -0.5..=0.5) through HSV, in f32 with
/// torchvision's formulas and its float-to-uint8 conversion (`x * 255.999`, truncated).
pub fn adjust_hue(hwc: &mut [u8], factor: f64) {
    let factor = factor as f32;
    for px in hwc.chunks_exact_mut(3) {
        let (r, g, b) = (
            px[0] as f32 / 255.0,
            px[1] as f32 / 255.0,
            px[2] as f32 / 255.0,
        );
        let (h, s, v) = rgb_to_hsv(r, g, b);
        let h = rem_euclid1(h + factor);
        let rgb = hsv_to_rgb(h, s, v);
        for (dst, c) in px.iter_mut().zip(rgb) {
            *dst = (c * 255.999f32) as u8;
        }
    }
}

/// Python's `x % 1.0` (torch.remainder): the result has the sign of the divisor.
fn rem_euclid1(x: f32) -> f32 {
    let r = x - x.floor();
    if r >= 1.0 {
        0.0
    } else {
        r
    }
}

fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / if eqc { 1.0 } else { maxc };
    let div = if eqc { 1.0 } else { cr };
    let (rc, gc, bc) = ((maxc - r) / div, (maxc - g) / div, (maxc - b) / div);
    let hr = if maxc == r { bc - gc } else { 0.0 };
    let hg = if maxc == g && maxc != r {
        2.0 + rc - bc
    } else {
        0.0
    };
    let hb = if maxc != g && maxc != r {
        4.0 + gc - rc
    } else {
        0.0
    };
    let h = hr + hg + hb;
    let h = (h / 6.0 + 1.0) % 1.0;
    (h, s, maxc)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let i = (i as i32).rem_euclid(6);
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match i {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}
