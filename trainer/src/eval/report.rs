//! What an evaluation found ([`EvalReport`]): the scores of the trained backbone and of its
//! untrained twin, and the gain of one over the other ([`EvalReport::gain`]).
//!
//! Serialised, it is the object `uic eval --json` prints: the trained scores at the top
//! level, the untrained ones under `random_init`, the differences under
//! `gain_over_random_init`. With only the untrained backbone evaluated, its scores are at
//! the top level and `random_init` is `true`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use super::nmi_report::NmiReport;
use super::tune::ProbeChoice;
use crate::infer::Layer;
use crate::model::Arch;

/// The scores of one backbone; a score that was not asked for is `None`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Scores {
    /// kNN top-1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knn_top1: Option<f64>,
    /// Linear-probe top-1 per layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linear_top1: Option<BTreeMap<Layer, f64>>,
    /// The setting each tuned probe chose (empty unless probes were tuned).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub linear_probe_choice: BTreeMap<Layer, ProbeChoice>,
    /// NMI of the centre-crop assignment, and its class sizes.
    #[serde(flatten)]
    pub nmi: Option<NmiReport>,
}

/// Trained minus untrained, for each score both have (class-size statistics have no gain).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Gains {
    /// kNN top-1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knn_top1: Option<f64>,
    /// Linear-probe top-1 per layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linear_top1: Option<BTreeMap<Layer, f64>>,
    /// NMI, arithmetic normalisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nmi_true: Option<f64>,
    /// NMI, geometric normalisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nmi_true_geometric: Option<f64>,
}

/// An evaluation of a checkpoint against the untrained backbone it started from.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// The checkpoint folder.
    pub checkpoint: PathBuf,
    /// Epochs the checkpoint had trained.
    pub epoch: u64,
    /// Its backbone.
    pub arch: Arch,
    /// Images the probes and kNN trained on.
    pub train_images: usize,
    /// Images they were tested on.
    pub test_images: usize,
    /// The features kNN used, when kNN ran.
    pub knn_layer: Option<Layer>,
    /// The trained backbone's scores; `None` when only the untrained one was evaluated.
    pub trained: Option<Scores>,
    /// The untrained backbone's scores (the run's own initialisation).
    pub random_init: Scores,
    /// Wall time of the whole evaluation.
    pub seconds: f64,
}

impl EvalReport {
    /// Trained minus untrained, for each score both have; `None` without trained scores.
    pub fn gain(&self) -> Option<Gains> {
        let (t, r) = (self.trained.as_ref()?, &self.random_init);
        let diff = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        let nmi = |f: fn(&NmiReport) -> f64| diff(t.nmi.as_ref().map(f), r.nmi.as_ref().map(f));
        let linear = match (&t.linear_top1, &r.linear_top1) {
            (Some(a), Some(b)) => Some(
                a.iter()
                    .filter_map(|(l, x)| b.get(l).map(|y| (*l, x - y)))
                    .collect(),
            ),
            _ => None,
        };
        Some(Gains {
            knn_top1: diff(t.knn_top1, r.knn_top1),
            linear_top1: linear,
            nmi_true: nmi(|n| n.nmi_true),
            nmi_true_geometric: nmi(|n| n.nmi_true_geometric),
        })
    }
}

/// `random_init`: `true` when it is all that was evaluated, else its scores.
#[derive(Serialize)]
#[serde(untagged)]
enum Baseline<'a> {
    Only(bool),
    Of(&'a Scores),
}

/// The serialised layout of [`EvalReport`].
#[derive(Serialize)]
struct Wire<'a> {
    checkpoint: String,
    epoch: u64,
    arch: String,
    train_images: usize,
    test_images: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    knn_layer: Option<Layer>,
    #[serde(flatten)]
    scores: &'a Scores,
    random_init: Baseline<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gain_over_random_init: Option<Gains>,
    seconds: f64,
}

impl Serialize for EvalReport {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (scores, random_init) = match &self.trained {
            Some(t) => (t, Baseline::Of(&self.random_init)),
            None => (&self.random_init, Baseline::Only(true)),
        };
        Wire {
            checkpoint: self.checkpoint.display().to_string(),
            epoch: self.epoch,
            arch: self.arch.to_string(),
            train_images: self.train_images,
            test_images: self.test_images,
            knn_layer: self.knn_layer,
            scores,
            random_init,
            gain_over_random_init: self.gain(),
            seconds: self.seconds,
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(knn: f64, conv1: f64, final_: f64) -> Scores {
        Scores {
            knn_top1: Some(knn),
            linear_top1: Some([(Layer::Conv(1), conv1), (Layer::Final, final_)].into()),
            ..Default::default()
        }
    }

    fn report(trained: Option<Scores>) -> EvalReport {
        EvalReport {
            checkpoint: "run/checkpoint".into(),
            epoch: 3,
            arch: Arch::AlexnetSmall,
            train_images: 7,
            test_images: 3,
            knn_layer: Some(Layer::Final),
            trained,
            random_init: scores(0.25, 0.5, 0.125),
            seconds: 1.5,
        }
    }

    #[test]
    fn gains_are_trained_minus_random_for_the_scores_both_have() {
        let r = report(Some(scores(0.75, 0.625, 1.0)));
        let g = r.gain().unwrap();
        assert_eq!(g.knn_top1, Some(0.5));
        assert_eq!(
            g.linear_top1.unwrap().into_iter().collect::<Vec<_>>(),
            [(Layer::Conv(1), 0.125), (Layer::Final, 0.875)]
        );
        assert_eq!((g.nmi_true, g.nmi_true_geometric), (None, None));
        assert!(report(None).gain().is_none());
    }

    #[test]
    fn serialises_as_uic_eval_json() {
        let v = serde_json::to_value(report(Some(scores(0.75, 0.625, 1.0)))).unwrap();
        assert_eq!(v["checkpoint"], "run/checkpoint");
        assert_eq!(v["arch"], "alexnet-small");
        assert_eq!(v["knn_layer"], "final");
        assert_eq!(v["linear_top1"]["conv1"], 0.625);
        assert_eq!(v["random_init"]["linear_top1"]["final"], 0.125);
        assert_eq!(v["gain_over_random_init"]["knn_top1"], 0.5);
        assert!(v.get("linear_probe_choice").is_none());
        assert!(v.get("nmi_true").is_none());
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "arch",
                "checkpoint",
                "epoch",
                "gain_over_random_init",
                "knn_layer",
                "knn_top1",
                "linear_top1",
                "random_init",
                "seconds",
                "test_images",
                "train_images"
            ]
        );
        // Only the untrained backbone: its scores on top, `random_init: true`, no gain.
        let v = serde_json::to_value(report(None)).unwrap();
        assert_eq!(v["random_init"], true);
        assert_eq!(v["knn_top1"], 0.25);
        assert!(v.get("gain_over_random_init").is_none());
    }
}
