//! Brightness, contrast, saturation, hue and grayscale on `m x 3 x H x W` f32 tensors that
//! hold integers in [0, 255], with one factor per sample (`m x 1 x 1 x 1`).
//!
//! Each op is torchvision's tensor function on `uint8` images written as the same f32
//! operations in the same order, each a separate kernel (so nothing fuses into a
//! multiply-add that would round differently), and ends by truncating to an integer as
//! the `uint8` result does. Divisions by a constant divide by a 0-d tensor on the device:
//! CUDA turns a division by a host scalar into a multiplication by its reciprocal, which
//! rounds differently.

use tch::{Kind, Tensor};

use crate::error::Result;

/// The divisors of the ops, as 0-d tensors on the batch's device, made once per batch
/// (each is a small host-to-device copy).
#[derive(Debug)]
pub(super) struct Divisors {
    /// 255, for `convert_image_dtype`.
    c255: Tensor,
    /// 6, for the hue's sixths.
    c6: Tensor,
    /// The pixels of one image (`H * W`, f64), for the contrast's mean.
    pixels: Tensor,
}

impl Divisors {
    pub(super) fn new(h: i64, w: i64, device: tch::Device) -> Result<Self> {
        Ok(Divisors {
            c255: Tensor::from(255f32).f_to_device(device)?,
            c6: Tensor::from(6f32).f_to_device(device)?,
            pixels: Tensor::from((h * w) as f64).f_to_device(device)?,
        })
    }
}

/// torchvision's `_blend(img, other, ratio)`: `ratio * img + (1 - ratio) * other`, then
/// what `.to(torch.uint8)` keeps of it, `trunc(clamp(., 0, 255))` (a floor, on values
/// clamped to be non-negative: libtorch's CPU floor is vectorised, its trunc is not). In
/// place on the one new tensor: on the CPU each fresh allocation of a batch costs page
/// faults.
fn blend(x: &Tensor, other: &Tensor, ratio: &Tensor, one_minus: &Tensor) -> Result<Tensor> {
    let mut y = x.f_mul(ratio)?;
    let _ = y.f_add_(&other.f_mul(one_minus)?)?;
    let _ = y.f_clamp_(0.0, 255.0)?;
    let _ = y.f_floor_()?;
    Ok(y)
}

/// The truncated luma `0.2989 r + 0.587 g + 0.114 b`, `m x 1 x H x W`.
pub(super) fn luma(x: &Tensor) -> Result<Tensor> {
    let c = |i| -> Result<Tensor> { Ok(x.f_narrow(1, i, 1)?) };
    let mut l = c(0)?.f_mul_scalar(0.2989)?;
    let _ = l.f_add_(&c(1)?.f_mul_scalar(0.587)?)?;
    let _ = l.f_add_(&c(2)?.f_mul_scalar(0.114)?)?;
    // Non-negative: the floor is the truncation.
    let _ = l.f_floor_()?;
    Ok(l)
}

/// `adjust_brightness`: a blend with black.
pub(super) fn brightness(x: &Tensor, ratio: &Tensor, one_minus: &Tensor) -> Result<Tensor> {
    blend(x, &ratio.f_zeros_like()?, ratio, one_minus)
}

/// `adjust_contrast`: a blend with the mean of the truncated lumas. The mean is the f64 sum
/// (exact) over the f64 count, cast to f32, as the CPU kernel computes it.
pub(super) fn contrast(
    x: &Tensor,
    ratio: &Tensor,
    one_minus: &Tensor,
    div: &Divisors,
) -> Result<Tensor> {
    let mean = luma(x)?
        .f_sum_dim_intlist([1i64, 2, 3].as_slice(), true, Kind::Double)?
        .f_div(&div.pixels)?
        .f_to_kind(Kind::Float)?;
    blend(x, &mean, ratio, one_minus)
}

/// `adjust_saturation`: a blend with each pixel's luma.
pub(super) fn saturation(x: &Tensor, ratio: &Tensor, one_minus: &Tensor) -> Result<Tensor> {
    blend(x, &luma(x)?, ratio, one_minus)
}

/// `rgb_to_grayscale` with three output channels.
pub(super) fn grayscale(x: &Tensor) -> Result<Tensor> {
    Ok(luma(x)?.f_expand([-1, 3, -1, -1], false)?.f_contiguous()?)
}

/// `adjust_hue`: to HSV (`_rgb2hsv`), the hue turned by `factor` modulo 1, back to RGB
/// (`_hsv2rgb`), and torchvision's float-to-`uint8` conversion, `trunc(c * 255.999)`.
pub(super) fn hue(x: &Tensor, factor: &Tensor, div: &Divisors) -> Result<Tensor> {
    let img = x.f_div(&div.c255)?;
    let (h, s, v) = rgb_to_hsv(&img, &div.c6)?;
    // `factor` is m x 1 x 1 x 1; the planes are m x 1 x H x W.
    let h = h.f_add(factor)?.f_remainder(1.0)?;
    let rgb = hsv_to_rgb(&h, &s, &v)?;
    let mut out = rgb.f_mul_scalar(255.999f32 as f64)?;
    // Non-negative: the floor is the truncation.
    let _ = out.f_floor_()?;
    Ok(out)
}

/// `_rgb2hsv` on `m x 3 x H x W` values in [0, 1]; each plane `m x 1 x H x W`.
fn rgb_to_hsv(img: &Tensor, six: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let c = |i| -> Result<Tensor> { Ok(img.f_narrow(1, i, 1)?) };
    let (r, g, b) = (c(0)?, c(1)?, c(2)?);
    let maxc = img.f_amax([1i64].as_slice(), true)?;
    let minc = img.f_amin([1i64].as_slice(), true)?;
    let eqc = maxc.f_eq_tensor(&minc)?;
    let cr = maxc.f_sub(&minc)?;
    let ones = maxc.f_ones_like()?;
    let s = cr.f_div(&ones.f_where_self(&eqc, &maxc)?)?;
    let cr_divisor = ones.f_where_self(&eqc, &cr)?;
    let rc = maxc.f_sub(&r)?.f_div(&cr_divisor)?;
    let gc = maxc.f_sub(&g)?.f_div(&cr_divisor)?;
    let bc = maxc.f_sub(&b)?.f_div(&cr_divisor)?;
    let is_r = maxc.f_eq_tensor(&r)?;
    let not_r = maxc.f_ne_tensor(&r)?;
    let is_g = maxc.f_eq_tensor(&g)?;
    let not_g = maxc.f_ne_tensor(&g)?;
    let mask = |m: &Tensor| m.f_to_kind(Kind::Float);
    let hr = mask(&is_r)?.f_mul(&bc.f_sub(&gc)?)?;
    let hg = mask(&is_g.f_logical_and(&not_r)?)?.f_mul(&rc.f_add_scalar(2.0)?.f_sub(&bc)?)?;
    let hb = mask(&not_g.f_logical_and(&not_r)?)?.f_mul(&gc.f_add_scalar(4.0)?.f_sub(&rc)?)?;
    let h = hr.f_add(&hg)?.f_add(&hb)?;
    let h = h.f_div(six)?.f_add_scalar(1.0)?.f_fmod(1.0)?;
    Ok((h, s, maxc))
}

/// `_hsv2rgb`: planes `m x 1 x H x W` to `m x 3 x H x W`.
fn hsv_to_rgb(h: &Tensor, s: &Tensor, v: &Tensor) -> Result<Tensor> {
    let h6 = h.f_mul_scalar(6.0)?;
    let i = h6.f_floor()?;
    let f = h6.f_sub(&i)?;
    let i = i.f_to_kind(Kind::Int)?.f_remainder(6)?;
    let one_minus = |t: &Tensor| -> Result<Tensor> { Ok(t.f_neg()?.f_add_scalar(1.0)?) };
    let p = v.f_mul(&one_minus(s)?)?.f_clamp(0.0, 1.0)?;
    let q = v.f_mul(&one_minus(&s.f_mul(&f)?)?)?.f_clamp(0.0, 1.0)?;
    let t = v
        .f_mul(&one_minus(&s.f_mul(&one_minus(&f)?)?)?)?
        .f_clamp(0.0, 1.0)?;
    // The sector picks each channel from (v, t, p, q): as the one-hot einsum, exactly.
    let sector = (0..5i64)
        .map(|k| i.f_eq(k))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let pick = |of: [&Tensor; 6]| -> Result<Tensor> {
        let mut out = of[5].shallow_clone();
        for k in (0..5).rev() {
            out = of[k].f_where_self(&sector[k], &out)?;
        }
        Ok(out)
    };
    let r = pick([v, &q, &p, &p, &t, v])?;
    let g = pick([&t, v, v, &q, &p, &p])?;
    let b = pick([&p, &p, &t, v, v, &q])?;
    Ok(Tensor::f_cat(&[r, g, b], 1)?)
}
