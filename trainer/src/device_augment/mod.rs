//! The strong preset's steps after the flip (colour jitter, grayscale, blur) as batched
//! libtorch ops on the training device, after the `u8` upload (`--augment-on device`).
//!
//! The loader (or the nvJPEG decoder) still crops and flips, and draws every other random
//! choice on the host from (seed, epoch, index), exactly as when its CPU kernels apply them
//! ([`uic_augment::Augment::draw`]); each batch carries those draws, and [`DeviceAugment`]
//! applies them here. So both places give the same images, up to the blur's rounding:
//! - [`colour`]: brightness, contrast, saturation, hue and grayscale repeat the CPU kernels'
//!   f32 arithmetic operation for operation (torchvision's, except for the hue's one-division
//!   form of it), truncating after each step as `uint8` tensors do, so they give the CPU
//!   kernels' bytes;
//! - [`blur`]: a separable f32 convolution (TF32 off) with reflect padding, rounded half to
//!   even: torchvision's 2-D convolution up to float rounding, like the CPU's fixed point.
//!
//! The tests hold each op to the golden tolerances of `augment/tests/golden.rs` against
//! torchvision's outputs, and whole batches to the CPU kernels.
//!
//! Samples differ in their steps and order, so the ops run on groups: for each of the (at
//! most four) places in the jitter's order, the samples whose step there is brightness
//! (then contrast, saturation, hue) are gathered, adjusted and scattered back; then the
//! grayscale group, then the blur group. Each sample sees its own steps in its own order,
//! and every kernel works on a whole group at once. A batch costs a few small host-to-device
//! copies: the groups' rows and factors, a 0-d divisor, and the blur's rows and kernels.

mod blur;
mod colour;

use tch::{Kind, Tensor};
use uic_augment::jitter::ColourStep;
use uic_augment::{Augment, Drawn};

use crate::error::{Error, Result};

/// Applies the draws of a batch's samples on the batch's device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceAugment {
    augment: Augment,
}

/// The operation of one group of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Brightness,
    Contrast,
    Saturation,
    Hue,
    Gray,
}

/// Rows that take one operation, with their factors, as spans of the batch's index and
/// factor lists.
#[derive(Debug)]
struct Group {
    op: Op,
    start: usize,
    len: usize,
}

impl DeviceAugment {
    /// The steps of `augment` after the flip. `None` when it has none (the paper preset):
    /// then there is nothing to do on the device.
    pub fn new(augment: Augment) -> Option<Self> {
        (augment.jitter.is_some() || augment.grayscale.is_some() || augment.blur.is_some())
            .then_some(DeviceAugment { augment })
    }

    /// Applies each row's `drawn` steps to `pixels` (`N x 3 x H x W` `u8` on any device;
    /// `drawn[i]` is row `i`'s) and returns the result, a new `u8` tensor on the same
    /// device (even when no row has a step: the input may be a lent loader slot). The flip
    /// in `drawn` is taken as done. Work is queued on the current stream.
    ///
    /// # Errors
    /// Pixels of another shape or kind, a draw per row missing, or libtorch failing.
    pub fn apply(&self, pixels: &Tensor, drawn: &[Drawn]) -> Result<Tensor> {
        let size = pixels.size();
        let shape_ok = size.len() == 4 && size[1] == 3 && pixels.kind() == Kind::Uint8;
        if !shape_ok || size[0] != drawn.len() as i64 {
            return Err(Error::Internal(format!(
                "device augmentation: {:?} {:?} pixels for {} draws (want N x 3 x H x W u8)",
                pixels.kind(),
                size,
                drawn.len()
            )));
        }
        let (h, w) = (size[2], size[3]);
        let device = pixels.device();
        let plan = Plan::new(drawn);
        let blurs: Vec<(i64, f32)> = match self.augment.blur {
            Some(b) if b.kernel_size(w as usize, h as usize) >= 3 => drawn
                .iter()
                .enumerate()
                .filter_map(|(i, d)| d.blur.map(|s| (i as i64, s)))
                .collect(),
            _ => Vec::new(),
        };
        let mut x = pixels.f_to_kind(Kind::Float)?;
        if !plan.groups.is_empty() {
            let rows = Tensor::from_slice(&plan.rows).f_to_device(device)?;
            let factors = Tensor::from_slice(&plan.factors)
                .f_to_device(device)?
                .f_view([2, -1])?;
            let div = colour::Divisors::new(h, w, device)?;
            for g in &plan.groups {
                let idx = rows.f_narrow(0, g.start as i64, g.len as i64)?;
                let sub = x.f_index_select(0, &idx)?;
                let f = |k: i64| -> Result<Tensor> {
                    Ok(factors
                        .f_select(0, k)?
                        .f_narrow(0, g.start as i64, g.len as i64)?
                        .f_view([-1, 1, 1, 1])?)
                };
                let out = match g.op {
                    Op::Brightness => colour::brightness(&sub, &f(0)?, &f(1)?)?,
                    Op::Contrast => colour::contrast(&sub, &f(0)?, &f(1)?, &div)?,
                    Op::Saturation => colour::saturation(&sub, &f(0)?, &f(1)?)?,
                    Op::Hue => colour::hue(&sub, &f(0)?)?,
                    Op::Gray => colour::grayscale(&sub)?,
                };
                let _ = x.f_index_copy_(0, &idx, &out)?;
            }
        }
        if let (Some(cfg), false) = (self.augment.blur, blurs.is_empty()) {
            let k = cfg.kernel_size(w as usize, h as usize);
            let mut taps = Vec::with_capacity(blurs.len() * k);
            for &(_, sigma) in &blurs {
                taps.extend(uic_augment::blur::gaussian_kernel(k, sigma));
            }
            let idx: Vec<i64> = blurs.iter().map(|&(i, _)| i).collect();
            let idx = Tensor::from_slice(&idx).f_to_device(device)?;
            let taps = Tensor::from_slice(&taps)
                .f_to_device(device)?
                .f_view([blurs.len() as i64, k as i64])?;
            let sub = x.f_index_select(0, &idx)?;
            let out = blur::gaussian_blur(&sub, &taps)?;
            let _ = x.f_index_copy_(0, &idx, &out)?;
        }
        Ok(x.f_to_kind(Kind::Uint8)?)
    }
}

/// A batch's colour steps as groups of rows: `rows` lists each group's rows, and `factors`
/// their two f32 weights (ratio and 1 - ratio; the hue's shift in sixths and 0), in two
/// halves.
#[derive(Debug, Default)]
struct Plan {
    groups: Vec<Group>,
    rows: Vec<i64>,
    factors: Vec<f32>,
}

impl Plan {
    fn new(drawn: &[Drawn]) -> Plan {
        let steps: Vec<Vec<ColourStep>> = drawn
            .iter()
            .map(|d| d.jitter.map(|j| j.steps().collect()).unwrap_or_default())
            .collect();
        let places = steps.iter().map(Vec::len).max().unwrap_or(0);
        let mut plan = Plan::default();
        let mut second = Vec::new();
        for place in 0..places {
            for op in [Op::Brightness, Op::Contrast, Op::Saturation, Op::Hue] {
                let start = plan.rows.len();
                for (i, s) in steps.iter().enumerate() {
                    let (this, f) = match s.get(place) {
                        Some(ColourStep::Brightness(f)) => (Op::Brightness, *f),
                        Some(ColourStep::Contrast(f)) => (Op::Contrast, *f),
                        Some(ColourStep::Saturation(f)) => (Op::Saturation, *f),
                        Some(ColourStep::Hue(f)) => (Op::Hue, *f),
                        None => continue,
                    };
                    if this != op {
                        continue;
                    }
                    plan.rows.push(i as i64);
                    let (a, b) = match op {
                        // As the CPU kernels: `1 - f` in f64, then each cast to f32.
                        Op::Hue => (uic_augment::jitter::hue_shift(f as f32), 0.0),
                        _ => (f as f32, (1.0 - f) as f32),
                    };
                    plan.factors.push(a);
                    second.push(b);
                }
                plan.push(op, start);
            }
        }
        let start = plan.rows.len();
        for (i, d) in drawn.iter().enumerate() {
            if d.gray {
                plan.rows.push(i as i64);
                plan.factors.push(0.0);
                second.push(0.0);
            }
        }
        plan.push(Op::Gray, start);
        plan.factors.extend(second);
        plan
    }

    fn push(&mut self, op: Op, start: usize) {
        let len = self.rows.len() - start;
        if len > 0 {
            self.groups.push(Group { op, start, len });
        }
    }
}

#[cfg(test)]
mod tests;
