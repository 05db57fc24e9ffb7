//! The evaluation protocol of `uic eval`, as a library call: [`evaluate`] a checkpoint on a
//! labelled file, by kNN, linear probes and NMI, against the untrained backbone the run
//! started from, and get an [`EvalReport`].
//!
//! The data ([`EvalData`]) is either a seeded split of one file (70/30 by default) or a
//! training file and a test file. Probes follow the paper (32 epochs, rate 0.1 divided by
//! 10 at epochs 10, 20 and 30, ten-crop testing) unless [`Protocol`] says otherwise; their
//! milestones scale with fewer epochs.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tch::Device;
use uic_loader::RecordFile;

use super::augmented::train_probes_augmented;
use super::classes;
use super::features::{Features, DEFAULT_FEATURE_MEMORY};
use super::grid::train_probes;
use super::knn::KnnBank;
use super::nmi_report::{nmi_report, true_labels};
use super::probe::{Probe, ProbeConfig};
use super::report::{EvalReport, Scores};
use super::split::split;
use super::tune::{ProbeChoice, ProbeGrid, ProbeSearch};
use crate::checkpoint::load_model;
use crate::config::{set_threads, TrainConfig};
use crate::error::{Error, Result};
use crate::infer::{extract_each, Layer};
use crate::labels::class_count;
use crate::model::{Arch, Model};

/// Which scores to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum What {
    /// kNN top-1 (k = --knn-k, cosine) on the final backbone features.
    Knn,
    /// Linear probes on conv1-conv5 and the final features, ten-crop testing.
    Linear,
    /// NMI of the centre-crop assignment against the true labels.
    Nmi,
    /// All three.
    All,
}

impl What {
    fn knn(self) -> bool {
        matches!(self, What::Knn | What::All)
    }
    fn linear(self) -> bool {
        matches!(self, What::Linear | What::All)
    }
    fn nmi(self) -> bool {
        matches!(self, What::Nmi | What::All)
    }
}

/// What `--probe-tune` chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ProbeTune {
    /// Learning rate and weight decay; standardisation as `--standardize` says.
    Rate,
    /// Learning rate, weight decay, and whether to standardise.
    All,
}

/// The test views of the linear probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ProbeTest {
    /// Softmax averaged over ten crops (the paper).
    TenCrop,
    /// The centre crop.
    Center,
}

/// The training views of the linear probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ProbeTrain {
    /// Fresh RandomResizedCrop + flip views every epoch (the paper).
    Augmented,
    /// One centre crop per image.
    Center,
}

/// How to evaluate; the defaults are `uic eval`'s. Each field is declared once here: with
/// the `clap` feature the struct is also `uic eval`'s flags, each field's doc its help and
/// [`Protocol::default`] its default.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct Protocol {
    /// What to measure.
    #[cfg_attr(feature = "clap", arg(value_enum))]
    pub what: What,
    /// Evaluate only an untrained backbone of the checkpoint's architecture (the run's own
    /// initialisation). Without it, both are evaluated and the gain is reported.
    #[cfg_attr(feature = "clap", arg(long = "random-init"))]
    pub random_init_only: bool,
    /// Share of the data used for training the probes when there is no test file.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = Protocol::default().train_frac))]
    pub train_frac: f64,
    /// Seed of the split and of the probes.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = Protocol::default().seed))]
    pub seed: u64,
    /// Neighbours of the kNN classifier (1 to the number of training images).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = Protocol::default().knn_k))]
    pub knn_k: i64,
    /// Features of the kNN classifier: `final`, a conv layer, or `pixels` (the raw-pixel
    /// baseline, the same for the trained and the untrained backbone).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = Protocol::default().knn_layer))]
    pub knn_layer: Layer,
    /// Epochs of the linear probes (lr 0.1, divided by 10 at 10, 20, 30 as in the paper;
    /// milestones scale with fewer epochs).
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value_t = Protocol::default().probe_epochs)
    )]
    pub probe_epochs: usize,
    /// What the linear probes train on: `augmented` draws fresh views every epoch
    /// (RandomResizedCrop with the run's min-scale, and flip), as the paper's protocol does;
    /// `center` trains on one centre crop per image, computed once (faster).
    #[cfg_attr(
        feature = "clap",
        arg(long, value_enum, default_value_t = Protocol::default().probe_train)
    )]
    pub probe_train: ProbeTrain,
    /// Standardise features (training-set mean and deviation) before the linear probes.
    /// Not the paper's protocol; it raises weak baselines most.
    #[cfg_attr(feature = "clap", arg(long))]
    pub standardize: bool,
    /// Choose each probe's learning rate (0.01 to 10) and weight decay (0 to 0.1), and with
    /// `all` also whether to standardise the features, by accuracy on a fifth of the
    /// training images held out, tested as `probe_test` says; then train the chosen probe on
    /// all of them. Each backbone and layer gets its own choice. Centre-crop training only.
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            value_enum,
            num_args = 0..=1,
            default_missing_value = "rate",
            conflicts_with = "probe_train"
        )
    )]
    pub probe_tune: Option<ProbeTune>,
    /// How the linear probes are tested: `ten-crop` averages the softmax over the four
    /// corners, the centre and their mirror images (the paper); `center` uses the centre
    /// crop alone.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_enum, default_value_t = Protocol::default().probe_test)
    )]
    pub probe_test: ProbeTest,
    /// Layers to probe, comma-separated (conv1..conv5, final, pixels) [default: the conv
    /// layers and final, the architecture's `probe_layers`; `pixels` adds the raw-pixel
    /// baseline]
    #[cfg_attr(feature = "clap", arg(long, value_delimiter = ','))]
    pub layers: Vec<Layer>,
    /// Most memory for the centre-crop training features of the linear probes (float32,
    /// every probed layer), in bytes (the flag takes MiB): within it they are computed once
    /// and held; beyond it they are pushed through the backbone again every probe epoch
    /// (slower, but memory no longer grows with the images; the probes are the same up to
    /// float rounding).
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "probe-memory-mib",
            value_name = "MIB",
            value_parser = parse_mib,
            default_value_t = Protocol::default().feature_memory >> 20
        )
    )]
    pub feature_memory: usize,
    /// Loader and libtorch threads (0: one per core).
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value_t = Protocol::default().threads)
    )]
    pub threads: usize,
}

/// A size in MiB, as bytes.
#[cfg(feature = "clap")]
fn parse_mib(s: &str) -> std::result::Result<usize, String> {
    let mib: usize = s.trim().parse().map_err(|e| format!("{e}"))?;
    Ok(mib.saturating_mul(1 << 20))
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol {
            what: What::All,
            random_init_only: false,
            train_frac: 0.7,
            seed: 0,
            knn_k: 20,
            knn_layer: Layer::Final,
            probe_epochs: 32,
            probe_train: ProbeTrain::Center,
            standardize: false,
            probe_tune: None,
            probe_test: ProbeTest::TenCrop,
            layers: Vec::new(),
            feature_memory: DEFAULT_FEATURE_MEMORY,
            threads: 0,
        }
    }
}

impl Protocol {
    /// The probes' settings: the paper's, milestones scaled to `probe_epochs`.
    pub fn probe_config(&self) -> ProbeConfig {
        let scale = self.probe_epochs as f64 / 32.0;
        ProbeConfig {
            epochs: self.probe_epochs,
            milestones: [10.0, 20.0, 30.0]
                .iter()
                .map(|m| (m * scale).round() as usize)
                .collect(),
            seed: self.seed,
            standardize: self.standardize,
            ..Default::default()
        }
    }

    /// The grid the probes are tuned over, if they are.
    pub fn probe_search(&self) -> Option<ProbeSearch> {
        self.probe_tune.map(|t| {
            ProbeSearch::decades(match t {
                ProbeTune::Rate => vec![self.standardize],
                ProbeTune::All => vec![false, true],
            })
        })
    }

    /// # Errors
    /// Settings that contradict each other, no kNN neighbours or no probe epochs.
    pub fn validate(&self) -> Result<()> {
        if self.what.knn() && self.knn_k < 1 {
            return Err(Error::Config(format!(
                "knn_k {}: the kNN classifier needs at least one neighbour",
                self.knn_k
            )));
        }
        if self.what.linear() && self.probe_epochs == 0 {
            return Err(Error::Config(
                "probe_epochs 0: the linear probes need at least one epoch".into(),
            ));
        }
        if self.probe_tune == Some(ProbeTune::All) && self.standardize {
            return Err(Error::Config(
                "probe_tune all chooses whether to standardise; drop standardize".into(),
            ));
        }
        if self.probe_tune.is_some() && self.probe_train == ProbeTrain::Augmented {
            return Err(Error::Config(
                "probe_tune trains on centre crops; drop probe_train augmented".into(),
            ));
        }
        Ok(())
    }
}

/// The layers a linear probe reads for `arch`: conv1-conv5 and the final features for the
/// AlexNets, the final features for ResNet-50.
pub fn probe_layers(arch: Arch) -> Vec<Layer> {
    match arch {
        Arch::Resnet50 => vec![Layer::Final],
        _ => (1..=5).map(Layer::Conv).chain([Layer::Final]).collect(),
    }
}

/// The labelled images an evaluation trains and tests on.
#[derive(Debug)]
pub struct EvalData {
    /// The file the probes and kNN train on.
    pub train_file: Arc<RecordFile>,
    /// The file they are tested on (the same file for a split).
    pub test_file: Arc<RecordFile>,
    /// Training images, positions in `train_file`.
    pub train_idx: Vec<usize>,
    /// Test images, positions in `test_file`.
    pub test_idx: Vec<usize>,
    /// True labels of `train_idx`.
    pub train_labels: Vec<u32>,
    /// True labels of `test_idx`.
    pub test_labels: Vec<u32>,
    /// Classes of the labels of both.
    pub classes: usize,
}

impl EvalData {
    /// `data` whole for training and `test_data` for testing, or without a test file a
    /// split of `data` seeded by `seed` with `train_frac` for training.
    ///
    /// A test file's classes are matched to the training file's by name, not by index: its
    /// labels are rewritten into the training file's numbering. A test file with a class
    /// the training file lacks is refused, naming it; one that lacks some of the training
    /// classes is scored on the classes it has, with a warning.
    ///
    /// # Errors
    /// Unreadable or unlabelled files, class names that cannot be matched, or a split that
    /// leaves a side empty.
    pub fn open(data: &Path, test_data: Option<&Path>, train_frac: f64, seed: u64) -> Result<Self> {
        let file = Arc::new(RecordFile::open(data)?);
        let all = true_labels(&file)?;
        let (test_file, train_idx, test_idx) = match test_data {
            Some(t) => {
                let tf = Arc::new(RecordFile::open(t)?);
                let n = tf.len();
                (tf, (0..file.len()).collect(), (0..n).collect())
            }
            None => {
                if !(train_frac > 0.0 && train_frac < 1.0) {
                    return Err(Error::Config(format!(
                        "train_frac {train_frac} is not in (0, 1)"
                    )));
                }
                let (tr, te) = split(file.len(), train_frac, seed);
                (file.clone(), tr, te)
            }
        };
        let train_labels: Vec<u32> = train_idx.iter().map(|&i| all[i]).collect();
        let test_labels: Vec<u32> = match test_data {
            // Another file numbers its classes its own way: match them by name.
            Some(_) => {
                let test_all = true_labels(&test_file)?;
                classes::test_labels_in_train_classes(&file, &all, &test_file, &test_all)?
            }
            None => test_idx.iter().map(|&i| all[i]).collect(),
        };
        if train_labels.is_empty() || test_labels.is_empty() {
            return Err(Error::Config(
                "the split leaves no training or no test images".into(),
            ));
        }
        Ok(EvalData {
            classes: class_count(train_labels.iter().chain(&test_labels)),
            train_file: file,
            test_file,
            train_idx,
            test_idx,
            train_labels,
            test_labels,
        })
    }
}

/// Where an evaluation is: stage `index` (from 0) of `total` starts, `what` it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The stage starting, from 0.
    pub index: usize,
    /// Stages in all.
    pub total: usize,
    /// "untrained backbone: kNN", "trained backbone: linear probes"...
    pub what: String,
}

/// Evaluates the checkpoint in `checkpoint` (a run folder or its `checkpoint/` folder) and
/// the untrained backbone of its run, on `data` (and `test_data`) as `p` says.
///
/// # Errors
/// No checkpoint, unreadable or unlabelled data, contradictory settings, a loader failure.
pub fn evaluate(
    checkpoint: &Path,
    data: &Path,
    test_data: Option<&Path>,
    p: &Protocol,
) -> Result<EvalReport> {
    evaluate_with(checkpoint, data, test_data, p, &mut |_| {})
}

/// [`evaluate`], telling `progress` as each stage starts (a backbone's kNN, probes, NMI).
///
/// # Errors
/// As [`evaluate`].
pub fn evaluate_with(
    checkpoint: &Path,
    data: &Path,
    test_data: Option<&Path>,
    p: &Protocol,
    progress: &mut dyn FnMut(Stage),
) -> Result<EvalReport> {
    let t0 = Instant::now();
    let (trained, ck) = load_model(checkpoint)?;
    let mut cfg = ck.state.config.clone();
    cfg.threads = p.threads;
    cfg.torch_threads = p.threads;
    set_threads(&cfg);
    p.validate()?;
    let d = EvalData::open(data, test_data, p.train_frac, p.seed)?;
    if p.what.knn() && p.knn_k as usize > d.train_idx.len() {
        return Err(Error::Config(format!(
            "knn_k {} is more than the {} training images; lower it",
            p.knn_k,
            d.train_idx.len()
        )));
    }
    let layers = if p.layers.is_empty() {
        probe_layers(cfg.arch)
    } else {
        p.layers.clone()
    };
    // The run's own initialisation, on the CPU as the loaded checkpoint is.
    let random = Model::init(&cfg.model(), cfg.seed, Device::Cpu)?;
    let parts = [p.what.knn(), p.what.linear(), p.what.nmi()]
        .iter()
        .filter(|&&x| x)
        .count();
    let total = parts * if p.random_init_only { 1 } else { 2 };
    let mut index = 0;
    let mut stage = |backbone: &str, part: &str| {
        progress(Stage {
            index,
            total,
            what: format!("{backbone} backbone: {part}"),
        });
        index += 1;
    };
    let random_init = scores_with(&random, &cfg, p, &d, &layers, &mut |part| {
        stage("untrained", part)
    })?;
    let trained = match p.random_init_only {
        true => None,
        false => Some(scores_with(&trained, &cfg, p, &d, &layers, &mut |part| {
            stage("trained", part)
        })?),
    };
    Ok(EvalReport {
        checkpoint: ck.dir.clone(),
        epoch: ck.state.epoch,
        arch: cfg.arch,
        train_images: d.train_idx.len(),
        test_images: d.test_idx.len(),
        knn_layer: p.what.knn().then_some(p.knn_layer),
        trained,
        random_init,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The scores of one backbone, telling `stage` the name of each part as it starts.
///
/// # Errors
/// A loader failure, or conv layers of a ResNet.
fn scores_with(
    model: &Model,
    cfg: &TrainConfig,
    p: &Protocol,
    d: &EvalData,
    layers: &[Layer],
    stage: &mut dyn FnMut(&str),
) -> Result<Scores> {
    let mut s = Scores::default();
    if p.what.knn() {
        stage("kNN");
        s.knn_top1 = Some(knn(model, cfg, d, p.knn_k, p.knn_layer)?);
    }
    if p.what.linear() {
        stage("linear probes");
        let results = linear(model, cfg, p, d, layers)?;
        let mut top1 = std::collections::BTreeMap::new();
        for (l, acc, choice) in results {
            top1.insert(l, acc);
            if let Some(c) = choice {
                s.linear_probe_choice.insert(l, c);
            }
        }
        s.linear_top1 = Some(top1);
    }
    if p.what.nmi() {
        stage("NMI");
        s.nmi = Some(nmi_report(model, cfg, &d.test_file)?);
    }
    Ok(s)
}

/// kNN top-1 of `model` on the features of `layer`: the training images' features are
/// held as a [`KnnBank`] (the only per-image memory of the score: `4 * d + 8` bytes per
/// image for the final layer, `2 * d + 8` for others), the test images' are streamed
/// against it.
fn knn(model: &Model, cfg: &TrainConfig, d: &EvalData, k: i64, layer: Layer) -> Result<f64> {
    let bank = KnnBank::extract(
        model,
        cfg,
        &d.train_file,
        &d.train_idx,
        &d.train_labels,
        d.classes,
        layer,
    )?;
    let mut correct = 0usize;
    extract_each(
        model,
        cfg,
        &d.test_file,
        &d.test_idx,
        &[layer],
        false,
        |r, f| correct += bank.correct(&f[0].to_device(Device::Cpu), &d.test_labels[r], k),
    )?;
    Ok(correct as f64 / d.test_labels.len().max(1) as f64)
}

/// Linear-probe top-1 of `model` per layer, with the setting each probe chose when tuned
/// (centre-crop training only): probes train on augmented views or on centre crops, and
/// test on ten crops or the centre crop, streamed batch by batch (so the ten-crop features
/// of big layers are never all in memory). Centre crops are held in memory within
/// `p.feature_memory` and streamed from the loader every probe epoch beyond it, with the
/// same probes either way (up to float rounding): no memory grows with the images but
/// their indices and labels. Tuning (`--probe-tune`) reads them the same way, at about
/// twice the epochs (the grid on the fitting part, then the chosen setting on all).
fn linear(
    model: &Model,
    cfg: &TrainConfig,
    p: &Protocol,
    d: &EvalData,
    layers: &[Layer],
) -> Result<Vec<(Layer, f64, Option<ProbeChoice>)>> {
    let pc = p.probe_config();
    let mut choices: Vec<Option<ProbeChoice>> = layers.iter().map(|_| None).collect();
    let probes: Vec<Probe> = match p.probe_train {
        ProbeTrain::Augmented => train_probes_augmented(
            model,
            cfg,
            &d.train_file,
            &d.train_idx,
            &d.train_labels,
            d.classes,
            layers,
            &pc,
        )?,
        ProbeTrain::Center => {
            let train = Features::with_budget(
                model,
                cfg,
                &d.train_file,
                &d.train_idx,
                layers,
                p.feature_memory,
            )?;
            match p.probe_search() {
                None => train_probes(&train, &d.train_labels, d.classes, &pc)?,
                Some(s) => {
                    let mut grids =
                        ProbeGrid::fit_layers(&train, &d.train_labels, d.classes, &pc, &s)?;
                    score_held_out(model, cfg, d, layers, &train, &mut grids, p.probe_test)?;
                    let chosen =
                        ProbeGrid::choose_layers(grids, &train, &d.train_labels, d.classes, &pc)?;
                    let mut probes = Vec::with_capacity(layers.len());
                    for ((probe, c), choice) in chosen.into_iter().zip(&mut choices) {
                        *choice = Some(c);
                        probes.push(probe);
                    }
                    probes
                }
            }
        }
    };
    let mut correct = vec![0usize; layers.len()];
    extract_each(
        model,
        cfg,
        &d.test_file,
        &d.test_idx,
        layers,
        p.probe_test == ProbeTest::TenCrop,
        |range, feats| {
            let labels = &d.test_labels[range];
            for ((c, probe), f) in correct.iter_mut().zip(&probes).zip(feats) {
                *c += probe.correct(&f.to_device(Device::Cpu), labels);
            }
        },
    )?;
    Ok(layers
        .iter()
        .zip(correct)
        .zip(choices)
        .map(|((&l, c), choice)| (l, c as f64 / d.test_labels.len() as f64, choice))
        .collect())
}

/// Scores each layer's grid on its held-out training images, tested as the probes will be:
/// centre crops are rows of `train` (held or streamed); ten crops are extracted again and
/// streamed batch by batch.
fn score_held_out(
    model: &Model,
    cfg: &TrainConfig,
    d: &EvalData,
    layers: &[Layer],
    train: &Features,
    grids: &mut [ProbeGrid],
    test: ProbeTest,
) -> Result<()> {
    match test {
        ProbeTest::Center => ProbeGrid::score_features(grids, train, cfg.batch_size)?,
        ProbeTest::TenCrop => {
            let images: Vec<usize> = grids[0]
                .held_out()
                .iter()
                .map(|&i| d.train_idx[i])
                .collect();
            extract_each(
                model,
                cfg,
                &d.train_file,
                &images,
                layers,
                true,
                |r, feats| {
                    for (g, f) in grids.iter_mut().zip(feats) {
                        g.score(r.clone(), &f.to_device(Device::Cpu));
                    }
                },
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_milestones_scale_with_the_epochs() {
        let p = Protocol::default();
        assert_eq!(p.probe_config().milestones, [10, 20, 30]);
        let short = Protocol {
            probe_epochs: 3,
            ..Protocol::default()
        };
        assert_eq!(short.probe_config().milestones, [1, 2, 3]);
        assert_eq!(short.probe_config().epochs, 3);
    }

    #[test]
    fn contradictory_probe_settings_are_refused() {
        let both = Protocol {
            probe_tune: Some(ProbeTune::All),
            standardize: true,
            ..Protocol::default()
        };
        assert!(both
            .validate()
            .unwrap_err()
            .to_string()
            .contains("drop standardize"));
        let augmented = Protocol {
            probe_tune: Some(ProbeTune::Rate),
            probe_train: ProbeTrain::Augmented,
            ..Protocol::default()
        };
        assert!(augmented.validate().is_err());
        let tune_all = Protocol {
            probe_tune: Some(ProbeTune::All),
            ..Protocol::default()
        };
        assert_eq!(tune_all.probe_search().unwrap().standardize, [false, true]);
        assert!(Protocol::default().validate().is_ok());
    }
}
