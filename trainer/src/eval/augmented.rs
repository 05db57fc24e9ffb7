//! Probes trained the paper's way, on fresh augmented views of the training images every
//! epoch, pushed through the frozen backbone batch by batch.

use std::sync::Arc;

use tch::{Device, Tensor};
use uic_loader::{Loader, RecordFile};

use super::features::Features;
use super::probe::{probe_lr, Probe, ProbeConfig, ProbeFit};
use crate::config::TrainConfig;
use crate::data::train_loader_config;
use crate::error::{Error, Result};
use crate::infer::{layers_features, Layer};
use crate::model::Model;

/// Trains one probe per layer the paper's way: each epoch draws fresh views of the
/// training images (RandomResizedCrop with the run's `min_scale`, and a random flip; seeded
/// by `cfg.seed` and the epoch), pushes them through the frozen backbone and takes one SGD
/// step per batch of `cfg.batch_size`. With `cfg.standardize` the statistics come from
/// the centre crops, accumulated batch by batch in one more pass. Nothing is kept between
/// batches, so conv layers cost no memory.
///
/// # Errors
/// A loader failure, or conv layers of a ResNet.
///
/// # Panics
/// If the label count does not match `indices`, or a label is `>= classes`.
#[allow(clippy::too_many_arguments)]
pub fn train_probes_augmented(
    model: &Model,
    cfg: &TrainConfig,
    file: &Arc<RecordFile>,
    indices: &[usize],
    labels: &[u32],
    classes: usize,
    layers: &[Layer],
    pc: &ProbeConfig,
) -> Result<Vec<Probe>> {
    assert_eq!(indices.len(), labels.len());
    assert!(
        labels.iter().all(|&l| (l as usize) < classes),
        "label >= {classes}"
    );
    let centre = Features::Streamed {
        model,
        cfg,
        file,
        indices,
        layers,
    };
    let rows: Vec<usize> = (0..indices.len()).collect();
    let wanted = vec![pc.standardize; layers.len()];
    let mut stats = centre.column_stats(&rows, &wanted, cfg.batch_size)?;
    let mut lc = train_loader_config(cfg, indices.len());
    lc.augment = uic_augment::Augment::preset(uic_augment::Preset::Paper);
    lc.batch_size = pc.batch_size as usize;
    lc.drop_last = false;
    lc.seed = pc.seed;
    let loader = Loader::new(file.clone(), lc)?;
    let mut label_of = vec![u32::MAX; file.len()];
    for (&i, &l) in indices.iter().zip(labels) {
        label_of[i] = l;
    }
    let s = i64::from(cfg.input_size);
    let order = uic_loader::order::Random {
        len: indices.len(),
        seed: pc.seed,
    };
    let mut fits: Vec<Option<ProbeFit>> = layers.iter().map(|_| None).collect();
    for epoch in 0..pc.epochs {
        let lr = probe_lr(pc, epoch);
        let epoch_indices: Vec<usize> = uic_loader::order::Order::indices(&order, epoch as u64)
            .into_iter()
            .map(|p| indices[p])
            .collect();
        for batch in loader.epoch(epoch as u64, epoch_indices, 0)? {
            let batch = batch?;
            let n = batch.len() as i64;
            let y: Vec<i64> = batch
                .indices()
                .iter()
                .map(|&i| i64::from(label_of[i as usize]))
                .collect();
            let y = Tensor::from_slice(&y);
            let x = Tensor::from_slice(batch.pixels(0)).view([n, 3, s, s]);
            let feats: Vec<Tensor> = tch::no_grad(|| layers_features(model, &x, layers))?
                .iter()
                .map(|t| t.to_device(Device::Cpu))
                .collect();
            for ((fit, st), f) in fits.iter_mut().zip(stats.iter_mut()).zip(&feats) {
                let d = *f.size().last().expect("2-d features");
                fit.get_or_insert_with(|| ProbeFit::new(d, classes, st.take(), pc))
                    .step(f, &y, lr);
            }
        }
    }
    fits.into_iter()
        .zip(layers)
        .map(|(f, &l)| {
            f.map(ProbeFit::finish)
                .ok_or_else(|| Error::Config(format!("no training batch reached the {l} probe")))
        })
        .collect()
}
