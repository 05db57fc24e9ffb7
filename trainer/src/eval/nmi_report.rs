//! NMI of a model's own centre-crop assignment against a file's true labels, with the
//! class-size statistics of that assignment.

use std::sync::Arc;

use serde::Serialize;
use uic_loader::RecordFile;

use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::infer::assign;
use crate::labels::{class_sizes, size_stats};
use crate::model::Model;
use crate::nmi::nmi_both;

/// NMI of a model's centre-crop assignment against the true labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NmiReport {
    /// Arithmetic normalisation.
    pub nmi_true: f64,
    /// Geometric normalisation.
    pub nmi_true_geometric: f64,
    /// Classes with at least one image.
    pub classes_used: usize,
    /// Smallest class.
    pub class_min: usize,
    /// Largest class.
    pub class_max: usize,
    /// Entropy of the class sizes over ln K.
    pub class_entropy: f64,
}

/// [`NmiReport`] of `model` on every image of `file` (which must have labels).
///
/// # Errors
/// No labels in the file, or a loader failure.
pub fn nmi_report(model: &Model, cfg: &TrainConfig, file: &Arc<RecordFile>) -> Result<NmiReport> {
    let truth = true_labels(file)?;
    let idx: Vec<usize> = (0..file.len()).collect();
    let a = assign(model, cfg, file, &idx)?;
    let (ar, ge) = nmi_both(&a, &truth);
    let sizes = class_sizes(&a, cfg.k);
    let (class_min, class_max, class_entropy) = size_stats(&sizes);
    Ok(NmiReport {
        nmi_true: ar,
        nmi_true_geometric: ge,
        classes_used: sizes.iter().filter(|&&s| s > 0).count(),
        class_min,
        class_max,
        class_entropy,
    })
}

/// The true labels of a record file.
///
/// # Errors
/// If the file has none.
pub fn true_labels(file: &RecordFile) -> Result<Vec<u32>> {
    file.labels().ok_or_else(|| {
        Error::Config(format!(
            "{} has no labels; evaluation needs a labelled file (convert an ImageFolder tree or use --labels)",
            file.path().display()
        ))
    })
}
