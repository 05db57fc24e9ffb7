//! One optimisation step of UIC: the whole per-batch work of a training epoch.

use tch::{Device, Kind, Tensor};

use super::feed::upload_pinned;
use crate::dist::Dist;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::sgd::Sgd;

/// One UIC optimisation step: the input layer and forward pass on a `u8` NCHW batch,
/// cross-entropy against `targets` (int64), backward, an SGD update with `lr`; returns the
/// loss and the argmax of each sample (the labels the next epoch trains on). This is the
/// whole per-batch work of [`super::Trainer::run`]; `uic bench step` times it alone.
///
/// # Errors
/// [`Error::NonFinite`] (with epoch and batch 0) if the loss is NaN or infinite; the
/// parameters are then left untouched.
pub fn train_step(
    model: &Model,
    opt: &mut Sgd,
    pixels: &Tensor,
    targets: &Tensor,
    lr: f64,
) -> Result<(f64, Vec<i64>)> {
    train_step_with(model, opt, pixels, targets, lr, None)
}

/// This rank's part of a data-parallel step: where it differs from [`train_step`].
#[derive(Debug, Clone, Copy)]
pub struct Sync<'a> {
    /// The group.
    pub dist: &'a Dist,
    /// This rank's fraction of the global batch.
    pub share: f64,
    /// The global step (0-based), for error messages.
    pub step: u64,
}

/// [`train_step`], and with `sync` a data-parallel step: between backward and the update,
/// the gradients become the global batch's mean ([`Dist::average_gradients`]), and the
/// returned loss is the global batch's. Every rank then makes the identical update.
///
/// # Errors
/// As [`train_step`], and [`Error::Collective`].
pub fn train_step_with(
    model: &Model,
    opt: &mut Sgd,
    pixels: &Tensor,
    targets: &Tensor,
    lr: f64,
    sync: Option<Sync<'_>>,
) -> Result<(f64, Vec<i64>)> {
    let device = model.device();
    let x = if pixels.device() == device {
        pixels.shallow_clone()
    } else {
        // Page-locked staging, then an asynchronous copy queued before the forward pass.
        upload_pinned(pixels, device)?
    };
    let logits = if model.amp() {
        // The loss in float32, as autocast itself would compute it (cross-entropy is on its
        // float32 list): log-softmax in bfloat16 loses precision.
        tch::autocast(true, || model.forward(&x, true)).to_kind(Kind::Float)
    } else {
        model.forward(&x, true)
    };
    let loss = logits.cross_entropy_for_logits(&targets.to_device(device));
    opt.zero_grad();
    loss.backward();
    // One synchronisation per step, after the whole step is queued: the loss and the
    // argmaxes come back together.
    let lv = match sync {
        None => loss.double_value(&[]),
        Some(s) => s
            .dist
            .average_gradients(&opt.parameters(), &loss, s.share, s.step)?,
    };
    if !lv.is_finite() {
        return Err(Error::NonFinite {
            epoch: 0,
            batch: 0,
            value: lv,
        });
    }
    opt.step(lr);
    let pred = logits.detach().argmax(1, false).to_device(Device::Cpu);
    Ok((lv, Vec::try_from(&pred)?))
}
