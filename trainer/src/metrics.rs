//! The per-epoch record the trainer appends to `DIR/metrics.jsonl`, one JSON object a line.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which part of a run an epoch belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Pseudo-labels updated from each epoch's forward pass.
    Uic,
    /// Further fine-tuning with fixed labels.
    Fft,
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epochs completed (1-based, counting fine-tuning epochs after the UIC ones).
    pub epoch: u64,
    /// UIC or fine-tuning.
    pub phase: Phase,
    /// Mean cross-entropy over the epoch's samples.
    pub loss: f64,
    /// Learning rate of the epoch's first step.
    pub lr: f64,
    /// Training images per second over the epoch (wall clock).
    pub images_per_s: f64,
    /// Share of the epoch's wall time spent waiting for the loader.
    pub data_wait: f64,
    /// Wall time of the epoch in seconds.
    pub seconds: f64,
    /// Share of samples whose argmax equals their target.
    pub agree: f64,
    /// Empty classes refilled at the end of the epoch.
    pub empty_fixed: usize,
    /// Smallest class of the new labels.
    pub class_min: usize,
    /// Largest class of the new labels.
    pub class_max: usize,
    /// Entropy of the class sizes over `ln K` (1: balanced).
    pub class_entropy: f64,
    /// NMI (arithmetic) between the labels before and after the epoch.
    pub nmi_prev: f64,
    /// NMI (arithmetic) between the new labels and the true ones, if the data has them.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nmi_true: Option<f64>,
    /// The same with geometric normalisation (as DeepCluster-era papers report).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nmi_true_geometric: Option<f64>,
    /// Samples the loader replaced because their record was corrupt.
    pub substituted: u64,
    /// Seconds of the epoch spent making labels outside the training pass (the k-means
    /// labeler's extra inference pass, PCA and k-means; 0 for UIC).
    #[serde(default)]
    pub labeling_seconds: f64,
    /// Share of the epoch's time spent after backward waiting for the ranks' gradient sum
    /// (the sync backward did not hide; the worst rank's; about 0 in one process).
    #[serde(default)]
    pub sync_wait: f64,
}

/// Reads every line of a `metrics.jsonl`.
///
/// # Errors
/// An unreadable file or a line that is not an epoch record.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| Error::Config(format!("{} line {}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// Rewrites `path` to hold exactly `lines` (used on resume to drop epochs after the
/// checkpoint), atomically.
pub(crate) fn rewrite(path: &Path, lines: &[EpochMetrics]) -> Result<()> {
    let mut text = String::new();
    for m in lines {
        text.push_str(&serde_json::to_string(m).expect("metrics serialise"));
        text.push('\n');
    }
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, text).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))
}

/// Appends one line and flushes it to disk.
pub(crate) fn append(path: &Path, m: &EpochMetrics) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let line = serde_json::to_string(m).expect("metrics serialise") + "\n";
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| Error::io("append to", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resume rewrites the metrics file from what it reads: every float must come back
    /// to the same bits (serde_json's default float parser is off by one unit in the last
    /// place on some inputs, such as this NMI from a real run).
    #[test]
    fn floats_survive_a_rewrite_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        let tricky = [
            0.015_154_614_663_182_183_f64,
            0.1 + 0.2,
            1.0 / 3.0,
            2.5e-300,
        ];
        let lines: Vec<EpochMetrics> = tricky
            .iter()
            .enumerate()
            .map(|(i, &v)| EpochMetrics {
                epoch: i as u64 + 1,
                phase: Phase::Uic,
                loss: v,
                lr: v,
                images_per_s: v,
                data_wait: v,
                seconds: v,
                agree: v,
                empty_fixed: 0,
                class_min: 0,
                class_max: 0,
                class_entropy: v,
                nmi_prev: v,
                nmi_true: Some(v),
                nmi_true_geometric: Some(v),
                substituted: 0,
                labeling_seconds: v,
                sync_wait: v,
            })
            .collect();
        for m in &lines {
            append(&p, m).unwrap();
        }
        let back = read_metrics(&p).unwrap();
        rewrite(&p, &back).unwrap();
        let again = read_metrics(&p).unwrap();
        for (a, b) in lines.iter().zip(&again) {
            assert_eq!(
                a.nmi_true.unwrap().to_bits(),
                b.nmi_true.unwrap().to_bits(),
                "epoch {}",
                a.epoch
            );
            assert_eq!(a.loss.to_bits(), b.loss.to_bits());
        }
        assert_eq!(
            std::fs::read_to_string(&p).unwrap().lines().count(),
            lines.len()
        );
    }
}
