//! One optimisation step of UIC: the whole per-batch work of a training epoch.

use tch::{Device, Kind, Tensor};

use super::feed::upload_pinned;
use crate::dist::{Collective, Solo};
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
    /// The ranks ([`crate::dist::Dist`], or [`crate::dist::Solo`]).
    pub group: &'a dyn Collective,
    /// This rank's fraction of the global batch.
    pub share: f64,
    /// The global step (0-based), for error messages.
    pub step: u64,
}

/// [`train_step`], and with `sync` a data-parallel step: between backward and the update,
/// the gradients become the global batch's mean ([`Collective::sum_step`]), and the
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
    let s = sync.unwrap_or(Sync {
        group: &Solo,
        share: 1.0,
        step: 0,
    });
    let out = step_in(model, opt, pixels, targets, lr, s, &[])?;
    Ok((out.loss, out.pred))
}

/// What one step gives the loop back: global sums, identical on every rank, and this
/// rank's argmaxes.
#[derive(Debug)]
pub(crate) struct StepOut {
    /// The global batch's mean loss.
    pub loss: f64,
    /// This rank's argmax of each sample.
    pub pred: Vec<i64>,
    /// Samples of the global batch whose argmax equalled their target.
    pub agree: u64,
    /// The sum over the ranks of each flag given to [`step_in`].
    pub flags: Vec<f64>,
    /// Time spent after backward until the sums were in (for one process, the device's
    /// queue catching up).
    pub sync_wait: std::time::Duration,
}

/// The step of the training loop: [`train_step_with`], and `flags` (this rank's requests,
/// for example to stop) summed over the ranks in the same exchange as the gradients, so
/// that every rank learns them at the same step.
pub(crate) fn step_in(
    model: &Model,
    opt: &mut Sgd,
    pixels: &Tensor,
    targets: &Tensor,
    lr: f64,
    sync: Sync<'_>,
    flags: &[f64],
) -> Result<StepOut> {
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
    let targets = targets.to_device(device);
    let loss = logits.cross_entropy_for_logits(&targets);
    // The step's values (the loss, the agreement count, the flags) are known before
    // backward, so that an overlapped sync can carry them with its last bucket.
    let (values, pred) = tch::no_grad(|| {
        let pred = logits.detach().argmax(1, false);
        let agree = pred.eq_tensor(&targets).sum(Kind::Double).reshape([1]);
        let mut parts = vec![
            (loss.detach().to_kind(Kind::Double) * sync.share).reshape([1]),
            agree,
        ];
        if !flags.is_empty() {
            parts.push(Tensor::from_slice(flags).to_device(device));
        }
        (Tensor::cat(&parts, 0), pred)
    });
    opt.zero_grad();
    let params = opt.parameters();
    sync.group
        .begin_step(&params, &values, sync.share, sync.step)?;
    loss.backward();
    // One synchronisation per step, after the whole step is queued: the loss, the counts
    // and the argmaxes come back together. The time spent here is the sync backward did not
    // hide.
    let t = std::time::Instant::now();
    let sums = sync
        .group
        .sum_step(&params, &values, sync.share, sync.step)?;
    let sync_wait = t.elapsed();
    let lv = sums[0];
    if !lv.is_finite() {
        return Err(Error::NonFinite {
            epoch: 0,
            batch: 0,
            value: lv,
        });
    }
    opt.step(lr);
    let pred = pred.to_device(Device::Cpu);
    Ok(StepOut {
        loss: lv,
        pred: Vec::try_from(&pred)?,
        agree: sums[1] as u64,
        flags: sums[2..].to_vec(),
        sync_wait,
    })
}
