//! What the loader delivers to the trainer and to evaluation: the [`LoaderConfig`] of a
//! training epoch (RandomResizedCrop and the augmentation preset) and of an evaluation pass
//! (resize and centre crop), both from a [`TrainConfig`].

use uic_augment::Augment;
use uic_loader::crop::RrcConfig;
use uic_loader::{CropMode, LoaderConfig};

use crate::config::TrainConfig;

/// The loader settings of training: RandomResizedCrop with `min_scale` and the preset, whose
/// steps after the flip are left to the trainer when they run on the device.
pub fn train_loader_config(cfg: &TrainConfig, n: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: cfg.batch_size,
        threads: cfg.loader_threads(),
        batches_ahead: cfg.batches_ahead,
        size: (cfg.input_size, cfg.input_size),
        crop: CropMode::RandomResized(RrcConfig {
            scale: (cfg.min_scale, 1.0),
            ..Default::default()
        }),
        augment: Augment::preset(cfg.preset),
        views: 1,
        // A last batch of one sample cannot be batch-normalised.
        drop_last: (n * cfg.epoch_repeats as usize) % cfg.batch_size == 1,
        seed: cfg.seed,
        defer_augment: cfg.augments_on_device(),
    }
}

/// The loader settings of evaluation passes: resize to `size * 256 / 224`, centre crop.
pub fn eval_loader_config(cfg: &TrainConfig) -> LoaderConfig {
    LoaderConfig {
        batch_size: cfg.batch_size,
        threads: cfg.loader_threads(),
        batches_ahead: cfg.batches_ahead,
        size: (cfg.input_size, cfg.input_size),
        crop: CropMode::Center {
            resize: (cfg.input_size * 256).div_ceil(224),
        },
        augment: Augment::none(),
        views: 1,
        drop_last: false,
        seed: cfg.seed,
        defer_augment: false,
    }
}
