//! One optimisation step of UIC: the whole per-batch work of a training epoch.

use tch::{Device, Kind, Tensor};

use super::feed::upload_pinned;
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
    let lv = loss.double_value(&[]);
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
