//! Evaluation of learned features: NMI of a checkpoint's assignment, linear probes on
//! conv1-conv5 and the final features, and kNN accuracy; each against an untrained backbone
//! of the same architecture (the trainer's own initialisation, from the same seed).
//!
//! [`evaluate`] runs the whole protocol of `uic eval` and returns a typed [`EvalReport`].
//! The parts, for other protocols (each item has this one path, `uic_trainer::eval::…`):
//! - [`split()`]: the seeded train/test split;
//! - [`knn_top1`], [`KnnBank`]: cosine kNN;
//! - [`train_probe`], [`train_probe_grid`]: linear probes, one or a grid of settings
//!   trained in one pass;
//! - [`Features`]: their training features, held in memory or streamed from the loader;
//! - [`tune_probe`]: probe settings chosen on held-out training images;
//! - [`train_probes_augmented`]: probes trained on fresh augmented views;
//! - [`nmi_report()`]: NMI of the model's own assignment.
//!
//! Features come from [`crate::infer`], in eval mode, on the centre crop, and for the
//! probes' test set on ten crops whose softmax outputs are averaged, as in the paper.

mod augmented;
mod classes;
mod features;
mod grid;
mod knn;
mod nmi_report;
mod probe;
mod protocol;
mod report;
mod split;
mod stats;
mod tune;

pub use augmented::train_probes_augmented;
pub use features::{Features, DEFAULT_FEATURE_MEMORY};
pub use grid::{linear_probe, train_probe, train_probe_grid, train_probes};
pub use knn::{knn_top1, KnnBank};
pub use nmi_report::{nmi_report, true_labels, NmiReport};
pub use probe::{Probe, ProbeConfig};
pub use protocol::{
    evaluate, evaluate_with, probe_layers, EvalData, ProbeTest, ProbeTrain, ProbeTune, Protocol,
    Stage, What,
};
pub use report::{EvalReport, Gains, Scores};
pub use split::split;
pub use tune::{tune_probe, ProbeChoice, ProbeGrid, ProbeSearch, ProbeTrial};
