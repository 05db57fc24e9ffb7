//! Brightness, contrast, saturation, hue and grayscale on `m x 3 x H x W` f32 tensors that
//! hold integers in [0, 255], with one factor per sample (`m x 1 x 1 x 1`).
//!
//! Each op is the CPU kernels' f32 arithmetic, operation for operation, each a separate
//! kernel (so nothing fuses into a multiply-add that would round differently), and ends by
//! truncating to an integer as a `uint8` result does. For brightness, contrast, saturation
//! and grayscale that is torchvision's tensor function on `uint8` images; the hue is the
//! kernels' one-division form of it ([`hue`]). Divisions by a constant divide by a 0-d
//! tensor on the device: CUDA turns a division by a host scalar into a multiplication by its
//! reciprocal, which rounds differently.

use tch::{Kind, Tensor};

use crate::error::Result;

/// The divisors of the ops, as 0-d tensors on the batch's device, made once per batch
/// (a small host-to-device copy).
#[derive(Debug)]
pub(super) struct Divisors {
    /// The pixels of one image (`H * W`, f64), for the contrast's mean.
    pixels: Tensor,
}

impl Divisors {
    pub(super) fn new(h: i64, w: i64, device: tch::Device) -> Result<Self> {
        Ok(Divisors {
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

/// The hue step as the CPU kernels compute it (`uic_augment`'s `colour::hue`): torchvision's
/// HSV round trip in the real arithmetic it approximates, within one level of it. Only the
/// middle channel changes: with `hi`, `lo` the largest and smallest and `c = hi - lo`, the hue
/// in sixths `h = k + d / c` (`k` 0, 2, 4 for a red, green, blue maximum; `d` the difference
/// of the other two) is turned by `shift` ([`uic_augment::jitter::hue_shift`], `m x 1 x 1 x
/// 1`) modulo 6, and the middle channel becomes `trunc((lo + c f) * 255.999 / 255)` in even
/// sectors, `trunc((hi - c f) * 255.999 / 255)` in odd ones (`f` the fraction of `h`). The
/// same f32 operations in the same order as the kernel, so the same bytes.
pub(super) fn hue(x: &Tensor, shift: &Tensor) -> Result<Tensor> {
    let c = |i| -> Result<Tensor> { Ok(x.f_narrow(1, i, 1)?) };
    let (r, g, b) = (c(0)?, c(1)?, c(2)?);
    let hi = x.f_amax([1i64].as_slice(), true)?;
    let lo = x.f_amin([1i64].as_slice(), true)?;
    let cr = hi.f_sub(&lo)?;
    // torchvision's preference on ties: red, then green.
    let is_r = hi.f_eq_tensor(&r)?;
    let is_g = hi.f_eq_tensor(&g)?;
    let d = g
        .f_sub(&b)?
        .f_where_self(&is_r, &b.f_sub(&r)?.f_where_self(&is_g, &r.f_sub(&g)?)?)?;
    let k = hi.f_full_like(0.0)?.f_where_self(
        &is_r,
        &hi.f_full_like(2.0)?
            .f_where_self(&is_g, &hi.f_full_like(4.0)?)?,
    )?;
    let div = hi.f_ones_like()?.f_where_self(&cr.f_eq(0.0)?, &cr)?;
    let h = k.f_add(&d.f_div(&div)?)?.f_add(shift)?;
    let h = h.f_add_scalar(6.0)?.f_where_self(&h.f_lt(0.0)?, &h)?;
    let h = h.f_sub_scalar(6.0)?.f_where_self(&h.f_ge(6.0)?, &h)?;
    let sector = h.f_floor()?;
    let cf = cr.f_mul(&h.f_sub(&sector)?)?;
    let odd = sector.f_fmod(2.0)?.f_eq(1.0)?;
    let mut mid = hi
        .f_sub(&cf)?
        .f_where_self(&odd, &lo.f_add(&cf)?)?
        .f_mul_scalar((255.999f32 / 255.0) as f64)?;
    // Non-negative once clamped: the floor is the truncation.
    let _ = mid.f_clamp_(0.0, 255.0)?;
    let _ = mid.f_floor_()?;
    let masks = (0..5i64)
        .map(|k| sector.f_eq(k))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let pick = |of: [&Tensor; 6]| -> Result<Tensor> {
        let mut out = of[5].shallow_clone();
        for k in (0..5).rev() {
            out = of[k].f_where_self(&masks[k], &out)?;
        }
        Ok(out)
    };
    // Sectors 0..=5: (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q).
    let r = pick([&hi, &mid, &lo, &lo, &mid, &hi])?;
    let g = pick([&mid, &hi, &hi, &mid, &lo, &lo])?;
    let b = pick([&lo, &lo, &mid, &hi, &hi, &mid])?;
    Ok(Tensor::f_cat(&[r, g, b], 1)?)
}
