//! The UIC trainer on libtorch, through [`tch`].
//!
//! Unsupervised Image Classification (Chen et al.) trains a classifier on its own
//! pseudo-labels: each image's target is the argmax the network gave it in the previous
//! epoch's training forward pass. The main types:
//! - [`Trainer`]: the loop (class-balanced sampling, double-buffered
//!   [`labels::LabelTable`], empty classes split off the largest, linear or cosine lr), with
//!   per-epoch `metrics.jsonl` and atomic [`checkpoint`]s that a resumed run continues
//!   exactly;
//! - [`Model`]: AlexNet-BN, the small AlexNet, ResNet-50, with the fixed Sobel input layer;
//! - [`TrainConfig`]: every setting, from TOML or code;
//! - [`eval`]: the paper's evaluation (kNN, linear probes, NMI) as a library call with a
//!   typed [`eval::EvalReport`];
//! - [`nmi`]: normalised mutual information, arithmetic and geometric;
//! - [`DeviceAugment`]: the strong preset's jitter, grayscale and blur as batched libtorch
//!   ops on the training device (`--augment-on device`).
//!
//! Modules are private unless another crate uses them, and each item has one path: the
//! crate root for the types above, the module for the rest (`eval::evaluate`,
//! `labels::fix_empty_classes`, `metrics::EpochMetrics`).
//!
//! The modules form layers, each using only those above it:
//! `error`, `schedule`, `nmi`, `labels`, `sgd`, `device_augment` → `model` →
//! `config` → `data`, `metrics`, `checkpoint` → `infer` (features and predictions) →
//! `train`, `eval`, `kmeans`.
//!
//! This crate links libtorch 2.11.0 (tch 0.24.0) and re-exports `tch` so that dependants
//! use the exact same version.
//!
//! ```
//! use uic_trainer::labels::fix_empty_classes;
//! use rand::SeedableRng;
//! // Class 1 is empty: half of class 0 moves to it.
//! let mut labels = vec![0, 0, 0, 0];
//! let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
//! assert_eq!(fix_empty_classes(&mut labels, 2, &mut rng), 1);
//! assert_eq!(labels.iter().filter(|&&l| l == 1).count(), 2);
//! ```

pub mod alloc;
pub mod amp;
pub mod checkpoint;
mod config;
mod data;
mod device_augment;
mod dist;
mod error;
pub mod eval;
pub mod infer;
mod kmeans;
pub mod labels;
pub mod metrics;
mod model;
pub mod nmi;
mod schedule;
pub mod settings;
pub mod sgd;
mod train;

pub use tch;

pub use config::{
    core_share, rank_gpu, set_threads, AugmentOn, Decoder, DeviceChoice, InitLabels, Labeler,
    TrainConfig, TrainOverrides, PER_RANK, RESUME_MAY_CHANGE,
};
pub use data::{eval_loader_config, train_loader_config};
pub use device_augment::DeviceAugment;
pub use dist::{Collective, Dist, Solo};
pub use error::{Error, Result};
pub use model::{Arch, Model, ModelConfig};
pub use schedule::Schedule;
pub use train::{
    train_step, train_step_with, Ended, Observer, Progress, Quiet, RunLock, StopHandle, Sync,
    Trainer,
};
pub use uic_augment::Preset;

/// The PyTorch release this crate's tch (0.24.0) is built against.
pub const LIBTORCH_VERSION: &str = "2.11.0";
