//! The straightforward scalar colour kernels that `colour.rs` replaced, one step at a time,
//! exactly as they were: the reference the fused and vectorised code must match byte for
//! byte (unit tests), and the baseline of the `colour_224` benches. Self-contained, so the
//! benches can include it by path.

/// The luma of one pixel: `0.2989 r + 0.587 g + 0.114 b` in f32, truncated, as torchvision.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((0.2989f32 * r as f32 + 0.587f32 * g as f32) + 0.114f32 * b as f32) as u8
}

/// Replaces each RGB pixel of packed `hwc` by its luma in all three channels.
pub fn grayscale(hwc: &mut [u8]) {
    for px in hwc.chunks_exact_mut(3) {
        let l = luma(px[0], px[1], px[2]);
        px.fill(l);
    }
}

/// torchvision's `_blend`: `ratio * a + (1 - ratio) * b` in f32, clamped to [0, 255],
/// truncated. Like Python, `1 - ratio` is computed in f64 before the cast to f32.
#[inline]
fn blend(a: u8, b: f32, ratio: f32, one_minus: f32) -> u8 {
    (ratio * a as f32 + one_minus * b).clamp(0.0, 255.0) as u8
}

fn weights(f: f64) -> (f32, f32) {
    (f as f32, (1.0 - f) as f32)
}

pub fn adjust_brightness(hwc: &mut [u8], factor: f64) {
    let (ratio, om) = weights(factor);
    apply_lut(hwc, |v| blend(v, 0.0, ratio, om));
}

fn apply_lut(hwc: &mut [u8], f: impl Fn(u8) -> u8) {
    let lut: [u8; 256] = std::array::from_fn(|v| f(v as u8));
    for v in hwc.iter_mut() {
        *v = lut[*v as usize];
    }
}

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

pub fn adjust_saturation(hwc: &mut [u8], factor: f64) {
    let (ratio, om) = weights(factor);
    for px in hwc.chunks_exact_mut(3) {
        let l = luma(px[0], px[1], px[2]) as f32;
        for v in px.iter_mut() {
            *v = blend(*v, l, ratio, om);
        }
    }
}

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

/// The hue step as `colour.rs` computes it (in the real arithmetic of torchvision's round
/// trip, see `colour::hue`), one pixel at a time: the reference the fused code matches byte
/// for byte, and that itself stays within one level of [`adjust_hue`].
pub fn adjust_hue_sixths(hwc: &mut [u8], factor: f64) {
    let x = 6.0 * factor as f32;
    let shift = x - 6.0 * (x / 6.0).floor();
    let shift = if shift >= 6.0 { 0.0 } else { shift };
    for px in hwc.chunks_exact_mut(3) {
        let [r, g, b] = [px[0], px[1], px[2]].map(f32::from);
        let (hi, lo) = (r.max(g).max(b), r.min(g).min(b));
        let c = hi - lo;
        let (k, d) = if hi == r {
            (0.0, g - b)
        } else if hi == g {
            (2.0, b - r)
        } else {
            (4.0, r - g)
        };
        let mut h = (k + d / if c == 0.0 { 1.0 } else { c }) + shift;
        if h < 0.0 {
            h += 6.0;
        }
        if h >= 6.0 {
            h -= 6.0;
        }
        let sector = h.floor();
        let cf = c * (h - sector);
        let mid = if sector as i32 % 2 == 1 {
            hi - cf
        } else {
            lo + cf
        };
        let mid = (mid * (255.999f32 / 255.0)).clamp(0.0, 255.0);
        let out = match sector as i32 {
            // A non-finite factor.
            _ if sector.is_nan() => [lo, lo, hi],
            0 => [hi, mid, lo],
            1 => [mid, hi, lo],
            2 => [lo, hi, mid],
            3 => [lo, mid, hi],
            4 => [mid, lo, hi],
            _ => [hi, lo, mid],
        };
        for (dst, v) in px.iter_mut().zip(out) {
            *dst = v as u8;
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
