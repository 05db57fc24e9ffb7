//! Evaluation of learned features: NMI of a checkpoint's assignment, linear probes on
//! conv1-conv5 and the final features, and kNN accuracy; each against an untrained backbone
//! of the same architecture (the trainer's own initialisation, from the same seed).
//!
//! Features are computed once per image, in eval mode (BatchNorm running statistics), on
//! the centre crop (resize to `size * 256 / 224`, crop `size`), and for the linear probe's
//! test set on ten crops (the four corners and the centre of that resized square, and their
//! mirror images), whose softmax outputs are averaged, as in the paper.

use std::path::Path;
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};
use uic_loader::{Loader, RecordFile};

use crate::checkpoint::{self, Checkpoint};
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::labels::{class_sizes, size_stats};
use crate::model::{Arch, Model};
use crate::nmi::nmi_both;
use crate::train::{eval_loader_config, init_model};

/// A layer whose output a probe reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// After conv layer 1..=5 (BN, ReLU), max-pooled to about 9,000 values.
    Conv(usize),
    /// The backbone's output (the classifier's input).
    Final,
    /// The model's input: normalised pixels (Sobel's two channels where the model has
    /// Sobel), average-pooled to about 9,000 values where larger. The same for a trained and
    /// an untrained backbone: the baseline both should beat.
    Pixels,
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layer::Conv(l) => write!(f, "conv{l}"),
            Layer::Final => f.write_str("final"),
            Layer::Pixels => f.write_str("pixels"),
        }
    }
}

impl std::str::FromStr for Layer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let unknown = || format!("unknown layer {s:?} (expected conv1..conv5, final or pixels)");
        match s {
            "final" => Ok(Layer::Final),
            "pixels" => Ok(Layer::Pixels),
            c if c.starts_with("conv") => match c[4..].parse::<usize>() {
                Ok(l) if (1..=5).contains(&l) => Ok(Layer::Conv(l)),
                _ => Err(unknown()),
            },
            _ => Err(unknown()),
        }
    }
}

/// Target size of the paper's pooled conv features (DeepCluster: 9,600 / 9,216 values).
const POOLED_VALUES: f64 = 9216.0;

/// Loads the model of a checkpoint: `dir` is a run folder or its `checkpoint/` folder.
///
/// # Errors
/// No checkpoint, another format version, or weights that do not fit the architecture.
pub fn load_model(dir: &Path) -> Result<(Model, Checkpoint)> {
    let ck = if dir.join("state.json").is_file() {
        checkpoint::read(dir)?
    } else {
        checkpoint::find(dir)?.ok_or_else(|| {
            Error::checkpoint(
                dir,
                "no checkpoint here (expected state.json or checkpoint/state.json)",
            )
        })?
    };
    let mut model = Model::new(&ck.state.config.model(), Device::Cpu)?;
    checkpoint::load_weights(&ck.dir, &mut model)?;
    Ok((model, ck))
}

/// The untrained backbone a run of `cfg` starts from (same seed, same initialisation).
///
/// # Errors
/// Settings the model rejects.
pub fn random_init_model(cfg: &TrainConfig) -> Result<Model> {
    init_model(cfg)
}

/// Features of `indices` of `file` at each of `layers`: one `[n, d]` tensor per layer, or
/// `[n, 10, d]` with `ten_crop`, on the CPU.
///
/// # Errors
/// A loader failure, or conv layers of a ResNet.
pub fn extract(
    model: &Model,
    cfg: &TrainConfig,
    file: &Arc<RecordFile>,
    indices: &[usize],
    layers: &[Layer],
    ten_crop: bool,
) -> Result<Vec<Tensor>> {
    let mut parts: Vec<Vec<Tensor>> = layers.iter().map(|_| Vec::new()).collect();
    extract_each(model, cfg, file, indices, layers, ten_crop, |_, feats| {
        for (p, f) in parts.iter_mut().zip(feats) {
            p.push(f.to_device(Device::Cpu));
        }
    })?;
    Ok(parts.into_iter().map(|p| Tensor::cat(&p, 0)).collect())
}

/// Like [`extract`], but hands each batch's features to `f` with the batch's range of
/// positions in `indices`, so that nothing is kept (ten-crop features of conv layers are
/// large).
///
/// # Errors
/// A loader failure, or conv layers of a ResNet.
pub fn extract_each(
    model: &Model,
    cfg: &TrainConfig,
    file: &Arc<RecordFile>,
    indices: &[usize],
    layers: &[Layer],
    ten_crop: bool,
    mut f: impl FnMut(std::ops::Range<usize>, &[Tensor]),
) -> Result<()> {
    let s = i64::from(cfg.input_size);
    let mut lc = eval_loader_config(cfg);
    let side = match (ten_crop, lc.crop) {
        // The resized square whose corners and centre are cropped.
        (true, uic_loader::CropMode::Center { resize }) => {
            lc.size = (resize, resize);
            i64::from(resize)
        }
        _ => s,
    };
    let loader = Loader::new(file.clone(), lc)?;
    tch::no_grad(|| -> Result<()> {
        let mut got = 0usize;
        for batch in loader.epoch(0, indices.to_vec(), 0)? {
            let n = batch.len() as i64;
            let x = Tensor::from_slice(batch.pixels(0)).view([n, 3, side, side]);
            let views = if ten_crop { ten_crops(&x, s) } else { x };
            let mut feats = layers_features(model, &views, layers)?;
            if ten_crop {
                feats = feats.iter().map(|t| t.view([n, 10, -1])).collect();
            }
            f(got..got + batch.len(), &feats);
            got += batch.len();
        }
        if got != indices.len() {
            return Err(Error::Config(format!(
                "the loader stopped after {got} of {} images",
                indices.len()
            )));
        }
        Ok(())
    })
}

/// The ten crops of side `s` of each square image in `x` (`[n, 3, r, r]`), as `[n * 10, 3,
/// s, s]` with the ten crops of an image consecutive.
fn ten_crops(x: &Tensor, s: i64) -> Tensor {
    let r = x.size()[2];
    let (far, mid) = (r - s, (r - s) / 2);
    let offsets = [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)];
    let crops: Vec<Tensor> = offsets
        .iter()
        .map(|&(y, xo)| x.narrow(2, y, s).narrow(3, xo, s))
        .collect();
    let mirrored: Vec<Tensor> = crops.iter().map(|c| c.flip([3])).collect();
    let all: Vec<Tensor> = crops.into_iter().chain(mirrored).collect();
    Tensor::stack(&all, 1).view([-1, 3, s, s])
}

/// The probe inputs of `pixels` (eval mode) at each of `layers`, `[n, d]` each: conv
/// activations max-pooled to about [`POOLED_VALUES`], or the final features. The input
/// layer and the conv trunk run once for all of them.
fn layers_features(model: &Model, pixels: &Tensor, layers: &[Layer]) -> Result<Vec<Tensor>> {
    let x = model.input(pixels);
    let deepest = layers
        .iter()
        .filter_map(|l| match l {
            Layer::Conv(c) => Some(*c),
            Layer::Final | Layer::Pixels => None,
        })
        .max();
    let convs = match deepest {
        Some(upto) => model.conv_activations(&x, upto)?,
        None => Vec::new(),
    };
    layers
        .iter()
        .map(|&layer| match layer {
            Layer::Final => Ok(model.features(&x, false)),
            Layer::Conv(l) => {
                let a = &convs[l - 1];
                Ok(a.adaptive_max_pool2d([pooled_side(a), pooled_side(a)])
                    .0
                    .flatten(1, -1))
            }
            Layer::Pixels => Ok(x
                .adaptive_avg_pool2d([pooled_side(&x), pooled_side(&x)])
                .flatten(1, -1)),
        })
        .collect()
}

/// The side to which a probe pools `[n, c, h, w]` activations: about [`POOLED_VALUES`]
/// values in all, never more than `h` (square maps).
fn pooled_side(a: &Tensor) -> i64 {
    let (c, h) = (a.size()[1], a.size()[2]);
    ((POOLED_VALUES / c as f64).sqrt().round() as i64).clamp(1, h)
}

/// A seeded `train`/`test` split of `0..n`: `train_frac` of a random permutation, then the
/// rest, each sorted.
pub fn split(n: usize, train_frac: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed));
    let cut = ((n as f64) * train_frac).round() as usize;
    let (mut a, mut b) = (idx[..cut].to_vec(), idx[cut..].to_vec());
    a.sort_unstable();
    b.sort_unstable();
    (a, b)
}

/// Top-1 accuracy of cosine kNN: each test feature's `k` most similar training features
/// vote for their labels, weighted by similarity; the class with the largest sum wins.
///
/// # Panics
/// If the label counts do not match the feature rows.
pub fn knn_top1(
    train: &Tensor,
    train_labels: &[u32],
    test: &Tensor,
    test_labels: &[u32],
    k: i64,
) -> f64 {
    assert_eq!(train.size()[0] as usize, train_labels.len());
    assert_eq!(test.size()[0] as usize, test_labels.len());
    let classes = train_labels
        .iter()
        .chain(test_labels)
        .copied()
        .max()
        .unwrap_or(0) as i64
        + 1;
    let norm = |t: &Tensor| {
        let t = t.to_kind(Kind::Float);
        let n = t.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
        t / n
    };
    let (tr, te) = (norm(train), norm(test));
    let ytr = Tensor::from_slice(
        &train_labels
            .iter()
            .map(|&l| i64::from(l))
            .collect::<Vec<_>>(),
    );
    let k = k.min(tr.size()[0]);
    let mut correct = 0usize;
    // Chunks of test rows bound the similarity matrix's memory.
    for (start, chunk) in (0..te.size()[0])
        .step_by(1024)
        .map(|s| (s, te.narrow(0, s, (te.size()[0] - s).min(1024))))
    {
        let sim = chunk.matmul(&tr.tr());
        let (vals, idx) = sim.topk(k, 1, true, true);
        let votes = Tensor::zeros([chunk.size()[0], classes], (Kind::Float, Device::Cpu));
        let lab = ytr.index_select(0, &idx.flatten(0, -1)).view_as(&idx);
        let votes = votes.scatter_add(1, &lab, &vals);
        let pred: Vec<i64> = Vec::try_from(votes.argmax(1, false)).expect("int64 predictions");
        correct += pred
            .iter()
            .enumerate()
            .filter(|&(i, &p)| p == i64::from(test_labels[start as usize + i]))
            .count();
    }
    correct as f64 / test_labels.len().max(1) as f64
}

/// Settings of a linear probe (the paper's, scaled to small sets by `epochs`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    /// Epochs over the training features.
    pub epochs: usize,
    /// Base learning rate, divided by 10 at each of `milestones`.
    pub lr: f64,
    /// Epochs after which the rate is divided by 10.
    pub milestones: Vec<usize>,
    /// Batch size.
    pub batch_size: i64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Seed of the initialisation and the batch order.
    pub seed: u64,
    /// Standardise each feature with the training set's mean and deviation first (not in
    /// the paper's protocol; it lifts weak, badly scaled features such as a random
    /// network's the most).
    pub standardize: bool,
}

impl Default for ProbeConfig {
    /// The paper: 32 epochs, lr 0.1 divided by 10 at epochs 10, 20 and 30.
    fn default() -> Self {
        ProbeConfig {
            epochs: 32,
            lr: 0.1,
            milestones: vec![10, 20, 30],
            batch_size: 256,
            weight_decay: 5e-4,
            seed: 0,
            standardize: false,
        }
    }
}

/// A trained linear probe: optional standardisation with the training features'
/// statistics, then a linear layer.
#[derive(Debug)]
pub struct Probe {
    lin: nn::Linear,
    mean: Tensor,
    std: Tensor,
    _vs: nn::VarStore,
}

impl Probe {
    /// Class probabilities of features `[m, d]`, or of ten crops `[m, 10, d]` averaged.
    pub fn probabilities(&self, feats: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let x = (feats.to_kind(Kind::Float) - &self.mean) / &self.std;
            let p = self.lin.forward(&x).softmax(-1, Kind::Float);
            if p.dim() == 3 {
                p.mean_dim(1, false, Kind::Float)
            } else {
                p
            }
        })
    }

    /// How many of `feats` it classifies as `labels`.
    ///
    /// # Panics
    /// If the label count does not match the feature rows.
    pub fn correct(&self, feats: &Tensor, labels: &[u32]) -> usize {
        assert_eq!(feats.size()[0] as usize, labels.len());
        let pred: Vec<i64> =
            Vec::try_from(self.probabilities(feats).argmax(1, false)).expect("int64 predictions");
        pred.iter()
            .zip(labels)
            .filter(|(&p, &l)| p == i64::from(l))
            .count()
    }
}

/// The rate of `epoch` (0-based): `cfg.lr` divided by 10 at each milestone passed.
fn probe_lr(cfg: &ProbeConfig, epoch: usize) -> f64 {
    cfg.lr * probe_lr_factor(cfg, epoch)
}

/// 0.1 to the power of the milestones `epoch` has passed.
fn probe_lr_factor(cfg: &ProbeConfig, epoch: usize) -> f64 {
    let drops = cfg.milestones.iter().filter(|&&m| epoch >= m).count() as i32;
    0.1f64.powi(drops)
}

/// A linear probe being trained: standardisation statistics, the layer, its SGD.
struct ProbeFit {
    lin: nn::Linear,
    opt: crate::sgd::Sgd,
    mean: Tensor,
    std: Tensor,
    vs: nn::VarStore,
}

impl ProbeFit {
    /// A fresh probe for `d`-dim features; `stats` is (mean, std) `[1, d]` to standardise
    /// with, or None for none.
    fn new(d: i64, classes: usize, stats: Option<(Tensor, Tensor)>, cfg: &ProbeConfig) -> Self {
        let (mean, std) = stats.unwrap_or_else(|| {
            (
                Tensor::zeros([1, d], (Kind::Float, Device::Cpu)),
                Tensor::ones([1, d], (Kind::Float, Device::Cpu)),
            )
        });
        let vs = nn::VarStore::new(Device::Cpu);
        let mut lin = nn::linear(vs.root() / "probe", d, classes as i64, Default::default());
        let (w, b) = probe_init(d, classes as i64, cfg.seed);
        tch::no_grad(|| {
            lin.ws.copy_(&w);
            lin.bs.as_mut().expect("a bias").copy_(&b);
        });
        let opt = crate::sgd::Sgd::new(vs.variables().into_iter().collect(), 0.9, cfg.weight_decay);
        ProbeFit {
            lin,
            opt,
            mean,
            std,
            vs,
        }
    }

    /// One SGD step on raw features `x` (`[b, d]`) with class indices `y` (int64).
    fn step(&mut self, x: &Tensor, y: &Tensor, lr: f64) {
        let x = (x.to_kind(Kind::Float) - &self.mean) / &self.std;
        let loss = self.lin.forward(&x).cross_entropy_for_logits(y);
        self.opt.zero_grad();
        loss.backward();
        self.opt.step(lr);
    }

    fn finish(self) -> Probe {
        Probe {
            lin: self.lin,
            mean: self.mean,
            std: self.std,
            _vs: self.vs,
        }
    }
}

/// Mean and deviation (`[1, d]` each) of each column of `x` (`[n, d]`).
fn column_stats(x: &Tensor) -> (Tensor, Tensor) {
    let x = x.to_kind(Kind::Float);
    (
        x.mean_dim(0, true, Kind::Float),
        x.std_dim(0, false, true).clamp_min(1e-6),
    )
}

/// A probe's initial weights (`[c, d]`) and biases (`[c]`): `nn.Linear`'s distribution,
/// uniform in ±1/√d, drawn from a generator seeded by `seed` alone. Not libtorch's global
/// generator, which any other thread may reseed or draw from between our seeding and our
/// draws: probes trained side by side (tests run in parallel) stay reproducible.
fn probe_init(d: i64, c: i64, seed: u64) -> (Tensor, Tensor) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x7072_6f62_6569_6e69);
    let bound = 1.0 / (d as f32).sqrt();
    let mut draw = |n: i64| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-bound..bound)).collect() };
    let w = draw(c * d);
    let b = draw(c);
    (Tensor::from_slice(&w).view([c, d]), Tensor::from_slice(&b))
}

/// Trains a linear classifier on `train` (`[n, d]`) for `classes` classes, with SGD
/// (momentum 0.9, weight decay, `cfg`'s rate schedule, batches in a seeded order), on
/// standardised features if `cfg.standardize`: a grid of one for [`train_probe_grid`].
///
/// # Panics
/// If the label count does not match the feature rows, or a label is `>= classes`.
pub fn train_probe(train: &Tensor, labels: &[u32], classes: usize, cfg: &ProbeConfig) -> Probe {
    train_probe_grid(train, labels, classes, cfg, &[(cfg.lr, cfg.weight_decay)])
        .pop()
        .expect("one probe per setting")
}

/// A grid of probe settings, one of which [`tune_probe`] picks per feature set by its
/// accuracy on training images held out from the probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSearch {
    /// Base learning rates to try.
    pub lrs: Vec<f64>,
    /// Weight decays to try.
    pub weight_decays: Vec<f64>,
    /// Whether to standardise the features: `[cfg.standardize]` to keep the probe
    /// configuration's choice, `[false, true]` to let each feature set choose.
    pub standardize: Vec<bool>,
    /// Share of the training images held out to score each setting.
    pub val_frac: f64,
}

impl ProbeSearch {
    /// Four rates and five decays, a decade apart; standardisation as `standardize` lists;
    /// a fifth of the training images held out.
    pub fn decades(standardize: Vec<bool>) -> Self {
        ProbeSearch {
            lrs: vec![0.01, 0.1, 1.0, 10.0],
            weight_decays: vec![0.0, 1e-4, 1e-3, 1e-2, 1e-1],
            standardize,
            val_frac: 0.2,
        }
    }
}

/// One probe setting and its accuracy on the held-out training images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProbeTrial {
    /// Base learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Whether the features were standardised.
    pub standardize: bool,
    /// Top-1 on the held-out training images.
    pub val_top1: f64,
}

/// The setting [`tune_probe`] chose, and every one it tried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeChoice {
    /// The chosen setting.
    #[serde(flatten)]
    pub chosen: ProbeTrial,
    /// Each setting, in grid order: standardisation, then rate, then decay.
    pub tried: Vec<ProbeTrial>,
}

/// The positions in `0..n` that [`tune_probe`] fits on and holds out to score on: a split
/// seeded by `cfg.seed`, `search.val_frac` held out, each part sorted.
fn tune_split(n: usize, cfg: &ProbeConfig, search: &ProbeSearch) -> (Vec<usize>, Vec<usize>) {
    split(n, 1.0 - search.val_frac, cfg.seed ^ 0x7072_6f62_6576_616c)
}

/// Chooses the probe's learning rate, weight decay and standardisation from `search` by
/// training on part of `train` and scoring on the rest ([`ProbeGrid::held_out`]; the first best
/// setting in grid order wins), then trains the chosen probe on all of `train`. Each feature
/// set gets the setting that suits it, so a badly scaled or overfitting one is not
/// under-trained by a rate chosen for another. [`ProbeGrid`] does the same in steps, for
/// held-out views streamed batch by batch.
///
/// The held-out images are scored on their rows of `train`, or, with `val_views`, on those
/// views: `[m, v, d]` for the `m` positions of [`ProbeGrid::held_out`] in order, their
/// softmax averaged over the `v` views. Pass the views the test uses (ten crops), so the
/// setting is chosen for the test it will face.
///
/// # Panics
/// As [`train_probe`]; or if the held-out share leaves either part empty, `val_views` does
/// not have one row per held-out image, or the grid is empty.
pub fn tune_probe(
    train: &Tensor,
    labels: &[u32],
    classes: usize,
    cfg: &ProbeConfig,
    search: &ProbeSearch,
    val_views: Option<&Tensor>,
) -> (Probe, ProbeChoice) {
    let mut grid = ProbeGrid::fit(train, labels, classes, cfg, search);
    match val_views {
        Some(v) => grid.score(0..grid.held_out().len(), v),
        None => grid.score_rows(train),
    }
    grid.choose(train, labels, classes, cfg)
}

/// The rows `idx` of `x`.
fn rows(x: &Tensor, idx: &[usize]) -> Tensor {
    let t = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
    x.index_select(0, &t)
}

/// [`tune_probe`] in steps: every setting of a [`ProbeSearch`] trained on the fitting part
/// of a seeded split of the training images ([`ProbeGrid::fit`]), scored on the held-out images as their features
/// arrive, in order and in any number of pieces ([`ProbeGrid::score`]), then the best one
/// retrained on all the training images ([`ProbeGrid::choose`]). Held-out views (ten crops of
/// conv layers) need never be all in memory.
#[derive(Debug)]
pub struct ProbeGrid {
    /// Each setting, with `val_top1` unset until [`ProbeGrid::choose`].
    trials: Vec<ProbeTrial>,
    probes: Vec<Probe>,
    correct: Vec<usize>,
    held_out: Vec<usize>,
    held_labels: Vec<u32>,
    scored: usize,
}

impl ProbeGrid {
    /// Trains a probe of every setting of `search` on the fitting part of `train`.
    ///
    /// # Panics
    /// As [`train_probe`]; or if the held-out share leaves either part empty, or the grid
    /// is empty.
    pub fn fit(
        train: &Tensor,
        labels: &[u32],
        classes: usize,
        cfg: &ProbeConfig,
        search: &ProbeSearch,
    ) -> Self {
        let n = labels.len();
        let (fit_idx, held_out) = tune_split(n, cfg, search);
        assert!(
            !fit_idx.is_empty() && !held_out.is_empty(),
            "the held-out share {} of {n} images leaves a part empty",
            search.val_frac
        );
        let fit_x = rows(train, &fit_idx);
        let fit_y: Vec<u32> = fit_idx.iter().map(|&i| labels[i]).collect();
        let rates: Vec<(f64, f64)> = search
            .lrs
            .iter()
            .flat_map(|&lr| search.weight_decays.iter().map(move |&wd| (lr, wd)))
            .collect();
        assert!(
            !rates.is_empty() && !search.standardize.is_empty(),
            "an empty search grid"
        );
        let (mut trials, mut probes) = (Vec::new(), Vec::new());
        for &standardize in &search.standardize {
            let c = ProbeConfig {
                standardize,
                ..cfg.clone()
            };
            let trained = train_probe_grid(&fit_x, &fit_y, classes, &c, &rates);
            for (p, &(lr, weight_decay)) in trained.into_iter().zip(&rates) {
                trials.push(ProbeTrial {
                    lr,
                    weight_decay,
                    standardize,
                    val_top1: f64::NAN,
                });
                probes.push(p);
            }
        }
        ProbeGrid {
            correct: vec![0; trials.len()],
            trials,
            probes,
            held_labels: held_out.iter().map(|&i| labels[i]).collect(),
            held_out,
            scored: 0,
        }
    }

    /// The held-out positions in `train`, in the order [`ProbeGrid::score`] takes them.
    pub fn held_out(&self) -> &[usize] {
        &self.held_out
    }

    /// Scores every setting on held-out images `range` (positions in
    /// [`ProbeGrid::held_out`]): `feats` is `[b, d]`, or `[b, v, d]` views whose softmax is
    /// averaged.
    ///
    /// # Panics
    /// If `range` does not continue where the last call stopped, runs past the held-out
    /// images, or does not match the rows of `feats`.
    pub fn score(&mut self, range: std::ops::Range<usize>, feats: &Tensor) {
        assert_eq!(
            range.start, self.scored,
            "held-out images are scored in order"
        );
        let labels = &self.held_labels[range.clone()];
        for (c, p) in self.correct.iter_mut().zip(&self.probes) {
            *c += p.correct(feats, labels);
        }
        self.scored = range.end;
    }

    /// Scores every setting on all the held-out images at once, on their rows of the
    /// training features `train` (`[n, d]`, as given to [`ProbeGrid::fit`]).
    ///
    /// # Panics
    /// As [`ProbeGrid::score`].
    pub fn score_rows(&mut self, train: &Tensor) {
        let x = rows(train, &self.held_out);
        self.score(0..self.held_out.len(), &x);
    }

    /// The best setting by held-out accuracy (the first in grid order on ties: standardise,
    /// then rate, then decay), trained on all of `train`, with every setting's score.
    ///
    /// # Panics
    /// If some held-out image was not scored; as [`train_probe`].
    pub fn choose(
        self,
        train: &Tensor,
        labels: &[u32],
        classes: usize,
        cfg: &ProbeConfig,
    ) -> (Probe, ProbeChoice) {
        let m = self.held_labels.len();
        assert_eq!(self.scored, m, "every held-out image must be scored");
        let tried: Vec<ProbeTrial> = self
            .trials
            .iter()
            .zip(&self.correct)
            .map(|(t, &c)| ProbeTrial {
                val_top1: c as f64 / m as f64,
                ..*t
            })
            .collect();
        let chosen = *tried
            .iter()
            .reduce(|best, t| if t.val_top1 > best.val_top1 { t } else { best })
            .expect("a non-empty search grid");
        let pc = ProbeConfig {
            lr: chosen.lr,
            weight_decay: chosen.weight_decay,
            standardize: chosen.standardize,
            ..cfg.clone()
        };
        (
            train_probe(train, labels, classes, &pc),
            ProbeChoice { chosen, tried },
        )
    }
}

/// Trains one linear probe per `(lr, weight_decay)` of `grid` at once, each as
/// [`train_probe`] describes with that rate and decay: they share their initialisation, batch
/// order and standardisation, as separate runs with `cfg.seed` would, and one matrix product
/// per batch serves them all. The results equal separate runs up to float rounding.
///
/// # Panics
/// If the label count does not match the feature rows, a label is `>= classes`, or `grid` is
/// empty.
pub fn train_probe_grid(
    train: &Tensor,
    labels: &[u32],
    classes: usize,
    cfg: &ProbeConfig,
    grid: &[(f64, f64)],
) -> Vec<Probe> {
    let n = train.size()[0];
    assert_eq!(n as usize, labels.len());
    assert!(!grid.is_empty(), "an empty probe grid");
    assert!(
        labels.iter().all(|&l| (l as usize) < classes),
        "label >= {classes}"
    );
    let (d, c, g) = (
        *train.size().last().expect("2-d features"),
        classes as i64,
        grid.len() as i64,
    );
    let train = train.to_kind(Kind::Float);
    let y = Tensor::from_slice(&labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
    let (mean, std) = if cfg.standardize {
        column_stats(&train)
    } else {
        (
            Tensor::zeros([1, d], (Kind::Float, Device::Cpu)),
            Tensor::ones([1, d], (Kind::Float, Device::Cpu)),
        )
    };
    // The initialisation of a single probe, repeated: [g * c, d] weights, [g * c] biases.
    let (w0, b0) = probe_init(d, c, cfg.seed);
    let mut w = w0.repeat([g, 1]).set_requires_grad(true);
    let mut b = b0.repeat([g]).set_requires_grad(true);
    let per = |v: Vec<f64>| {
        Tensor::from_slice(&v)
            .to_kind(Kind::Float)
            .repeat_interleave_self_int(c, 0, None)
    };
    let lr_of = per(grid.iter().map(|p| p.0).collect());
    let wd_of = per(grid.iter().map(|p| p.1).collect());
    let mut bufs: Option<(Tensor, Tensor)> = None;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
    let mut order: Vec<i64> = (0..n).collect();
    for epoch in 0..cfg.epochs {
        let scale = probe_lr_factor(cfg, epoch);
        order.shuffle(&mut rng);
        for chunk in order.chunks(cfg.batch_size as usize) {
            let idx = Tensor::from_slice(chunk);
            let x = (train.index_select(0, &idx) - &mean) / &std;
            let m = chunk.len() as i64;
            // [m, g * c] logits; each probe's mean loss, summed, keeps their gradients apart.
            let logits = x.matmul(&w.tr()) + &b;
            let loss = logits.view([m * g, c]).cross_entropy_for_logits(
                &y.index_select(0, &idx)
                    .repeat_interleave_self_int(g, 0, None),
            ) * g as f64;
            w.zero_grad();
            b.zero_grad();
            loss.backward();
            tch::no_grad(|| {
                // Sgd::step per probe: g += wd * p; buf = momentum * buf + g; p -= lr * buf.
                let gw = w.grad() + &w * wd_of.unsqueeze(1);
                let gb = b.grad() + &b * &wd_of;
                let (bw, bb) = match bufs.take() {
                    Some((bw, bb)) => (bw * 0.9 + gw, bb * 0.9 + gb),
                    None => (gw, gb),
                };
                let mut w = w.shallow_clone();
                let mut b = b.shallow_clone();
                let _ = w.g_sub_(&(&bw * (lr_of.unsqueeze(1) * scale)));
                let _ = b.g_sub_(&(&bb * (&lr_of * scale)));
                bufs = Some((bw, bb));
            });
        }
    }
    (0..g)
        .map(|i| {
            let vs = nn::VarStore::new(Device::Cpu);
            let mut lin = nn::linear(vs.root() / "probe", d, c, Default::default());
            tch::no_grad(|| {
                lin.ws.copy_(&w.narrow(0, i * c, c));
                if let Some(bs) = lin.bs.as_mut() {
                    bs.copy_(&b.narrow(0, i * c, c));
                }
            });
            Probe {
                lin,
                mean: mean.shallow_clone(),
                std: std.shallow_clone(),
                _vs: vs,
            }
        })
        .collect()
}

/// Trains one probe per layer the paper's way: each epoch draws fresh views of the
/// training images (RandomResizedCrop with the run's `min_scale`, and a random flip; seeded
/// by `cfg.seed` and the epoch), pushes them through the frozen backbone and takes one SGD
/// step per batch of `cfg.batch_size`. With `cfg.standardize` the statistics come from
/// the centre crops. Nothing is kept between batches, so conv layers cost no memory.
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
    let mut stats: Vec<Option<(Tensor, Tensor)>> = if pc.standardize {
        extract(model, cfg, file, indices, layers, false)?
            .iter()
            .map(|f| Some(column_stats(f)))
            .collect()
    } else {
        layers.iter().map(|_| None).collect()
    };
    let mut lc = crate::train::train_loader_config(cfg, indices.len());
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

/// [`train_probe`] on `train`, then the top-1 accuracy on `test` (`[m, d]`, or ten crops
/// `[m, 10, d]`).
///
/// # Panics
/// As [`train_probe`] and [`Probe::correct`].
pub fn linear_probe(
    train: &Tensor,
    train_labels: &[u32],
    test: &Tensor,
    test_labels: &[u32],
    cfg: &ProbeConfig,
) -> f64 {
    let classes = train_labels
        .iter()
        .chain(test_labels)
        .copied()
        .max()
        .unwrap_or(0) as usize
        + 1;
    let p = train_probe(train, train_labels, classes, cfg);
    p.correct(test, test_labels) as f64 / test_labels.len().max(1) as f64
}

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

/// The argmax of `model` on the centre crop of `indices`.
///
/// # Errors
/// A loader failure.
pub fn assign(
    model: &Model,
    cfg: &TrainConfig,
    file: &Arc<RecordFile>,
    indices: &[usize],
) -> Result<Vec<u32>> {
    Ok(predict(model, cfg, file, indices)?.0)
}

/// The argmax of `model` on the centre crop of `indices`, and the entropy (nats) of each
/// softmax output: low entropy means a confident assignment.
///
/// # Errors
/// A loader failure.
pub fn predict(
    model: &Model,
    cfg: &TrainConfig,
    file: &Arc<RecordFile>,
    indices: &[usize],
) -> Result<(Vec<u32>, Vec<f32>)> {
    let s = i64::from(cfg.input_size);
    let loader = Loader::new(file.clone(), eval_loader_config(cfg))?;
    let mut out = Vec::with_capacity(indices.len());
    let mut ent = Vec::with_capacity(indices.len());
    tch::no_grad(|| -> Result<()> {
        for batch in loader.epoch(0, indices.to_vec(), 0)? {
            let x = Tensor::from_slice(batch.pixels(0)).view([batch.len() as i64, 3, s, s]);
            let logits = model.forward(&x, false);
            let logp = logits.log_softmax(1, Kind::Float);
            let h = -(logp.exp() * &logp).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
            let p: Vec<i64> = Vec::try_from(logits.argmax(1, false))?;
            out.extend(p.into_iter().map(|p| p as u32));
            ent.extend(Vec::<f32>::try_from(h)?);
        }
        Ok(())
    })?;
    if out.len() != indices.len() {
        return Err(Error::Config("the loader stopped early".into()));
    }
    Ok((out, ent))
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

/// The layers a linear probe reads for `arch`: conv1-conv5 and the final features for the
/// AlexNets, the final features for ResNet-50.
pub fn probe_layers(arch: Arch) -> Vec<Layer> {
    match arch {
        Arch::Resnet50 => vec![Layer::Final],
        _ => (1..=5).map(Layer::Conv).chain([Layer::Final]).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_finds_the_nearest_class() {
        // Two well-separated clusters on the unit circle.
        let train = Tensor::from_slice(&[1.0f32, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9]).view([4, 2]);
        let test = Tensor::from_slice(&[0.8f32, 0.2, 0.2, 0.8]).view([2, 2]);
        assert_eq!(knn_top1(&train, &[0, 0, 1, 1], &test, &[0, 1], 2), 1.0);
        assert_eq!(knn_top1(&train, &[0, 0, 1, 1], &test, &[1, 0], 2), 0.0);
    }

    #[test]
    fn linear_probe_separates_separable_data_and_averages_crops() {
        tch::manual_seed(0);
        let n = 200;
        let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        let signs = Tensor::from_slice(
            &labels
                .iter()
                .map(|&l| if l == 0 { -1.0f32 } else { 1.0 })
                .collect::<Vec<_>>(),
        );
        let x = Tensor::randn([n as i64, 5], (Kind::Float, Device::Cpu)) * 0.3 + signs.unsqueeze(1);
        let cfg = ProbeConfig {
            epochs: 5,
            milestones: vec![3],
            ..Default::default()
        };
        assert!(linear_probe(&x, &labels, &x, &labels, &cfg) > 0.95);
        let ten = x.unsqueeze(1).expand([n as i64, 10, 5], false).contiguous();
        assert!(linear_probe(&x, &labels, &ten, &labels, &cfg) > 0.95);
        // Labels unrelated to the features: near chance on held-out data.
        let y2: Vec<u32> = (0..n).map(|i| ((i / 2) % 2) as u32).collect();
        let acc = linear_probe(
            &x.narrow(0, 0, 100),
            &y2[..100],
            &x.narrow(0, 100, 100),
            &y2[100..],
            &cfg,
        );
        assert!(acc < 0.7, "{acc}");
    }

    /// One probe trained through [`ProbeFit`] and the trainer's own SGD, batch by batch:
    /// an independent reference for [`train_probe_grid`].
    fn reference_probe(train: &Tensor, labels: &[u32], classes: usize, cfg: &ProbeConfig) -> Probe {
        let n = train.size()[0];
        assert_eq!(n as usize, labels.len());
        assert!(
            labels.iter().all(|&l| (l as usize) < classes),
            "label >= {classes}"
        );
        let d = *train.size().last().expect("2-d features");
        let train = train.to_kind(Kind::Float);
        let y = Tensor::from_slice(&labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
        let stats = cfg.standardize.then(|| column_stats(&train));
        let mut fit = ProbeFit::new(d, classes, stats, cfg);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        let mut order: Vec<i64> = (0..n).collect();
        for epoch in 0..cfg.epochs {
            let lr = probe_lr(cfg, epoch);
            order.shuffle(&mut rng);
            for chunk in order.chunks(cfg.batch_size as usize) {
                let idx = Tensor::from_slice(chunk);
                fit.step(&train.index_select(0, &idx), &y.index_select(0, &idx), lr);
            }
        }
        fit.finish()
    }

    #[test]
    fn probe_grid_equals_separate_probes() {
        tch::manual_seed(3);
        let n = 200;
        let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let y = Tensor::from_slice(&labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
        // Overlapping classes with unequal feature scales, so settings end up apart.
        let x = (Tensor::randn([n as i64, 8], (Kind::Float, Device::Cpu))
            + y.one_hot(8).to_kind(Kind::Float))
            * Tensor::from_slice(&[1.0f32, 5.0, 0.2, 1.0, 3.0, 1.0, 0.5, 1.0]);
        let grid = [(0.1, 0.0), (1.0, 1e-3), (0.01, 0.1)];
        for standardize in [false, true] {
            let cfg = ProbeConfig {
                epochs: 6,
                milestones: vec![2, 4],
                batch_size: 32,
                standardize,
                ..Default::default()
            };
            let together = train_probe_grid(&x, &labels, 3, &cfg, &grid);
            let probs: Vec<Tensor> = together.iter().map(|p| p.probabilities(&x)).collect();
            for (i, &(lr, weight_decay)) in grid.iter().enumerate() {
                let alone = reference_probe(
                    &x,
                    &labels,
                    3,
                    &ProbeConfig {
                        lr,
                        weight_decay,
                        ..cfg.clone()
                    },
                );
                let diff = (&probs[i] - alone.probabilities(&x))
                    .abs()
                    .max()
                    .double_value(&[]);
                assert!(
                    diff < 1e-4,
                    "setting {i}, standardize {standardize}: {diff}"
                );
            }
            // The settings really differ, so the comparison above means something.
            let spread = (&probs[0] - &probs[2]).abs().max().double_value(&[]);
            assert!(spread > 0.05, "{spread}");
        }
    }

    /// `n` points of three classes in turn, each `sep` along its own axis plus Gaussian
    /// noise of deviation `spread` (from libtorch's global generator).
    fn three_blobs(n: usize, spread: f64, sep: f64) -> (Tensor, Vec<u32>) {
        let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let y = Tensor::from_slice(&labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
        let x = Tensor::randn([n as i64, 3], (Kind::Float, Device::Cpu)) * spread
            + y.one_hot(3).to_kind(Kind::Float) * sep;
        (x, labels)
    }

    /// A five-epoch probe in batches of 32, rate divided at epoch 3.
    fn short_probe() -> ProbeConfig {
        ProbeConfig {
            epochs: 5,
            milestones: vec![3],
            batch_size: 32,
            ..Default::default()
        }
    }

    #[test]
    fn tuned_probe_keeps_the_best_held_out_setting() {
        tch::manual_seed(1);
        // Three separable classes on three axes.
        let (x, labels) = three_blobs(300, 0.3, 2.0);
        let (tr, te) = (x.narrow(0, 0, 240), x.narrow(0, 240, 60));
        let cfg = short_probe();
        // An infinite rate makes the weights NaN: that setting must lose.
        let search = ProbeSearch {
            lrs: vec![f64::INFINITY, 0.1],
            weight_decays: vec![0.0, 1e-3],
            standardize: vec![false],
            val_frac: 0.2,
        };
        let (p, choice) = tune_probe(&tr, &labels[..240], 3, &cfg, &search, None);
        let best = choice.chosen;
        assert_eq!(choice.tried.len(), 4);
        assert_eq!(best.lr, 0.1, "{choice:?}");
        assert!(
            choice.tried[..2].iter().all(|t| t.val_top1 < 0.5),
            "{choice:?}"
        );
        assert!(best.val_top1 > 0.95, "{choice:?}");
        assert!(choice.tried.iter().all(|t| t.val_top1 <= best.val_top1));
        // The returned probe is the chosen setting trained on all the training features.
        let again = train_probe(
            &tr,
            &labels[..240],
            3,
            &ProbeConfig {
                lr: best.lr,
                weight_decay: best.weight_decay,
                ..cfg.clone()
            },
        );
        assert!(p.probabilities(&te).equal(&again.probabilities(&te)));
        assert!(p.correct(&te, &labels[240..]) >= 57);
        // Deterministic: the same seed makes the same choice.
        assert_eq!(
            tune_probe(&tr, &labels[..240], 3, &cfg, &search, None).1,
            choice
        );
    }

    #[test]
    fn tuned_probe_scores_held_out_images_on_their_views() {
        tch::manual_seed(3);
        let n = 240;
        // Overlapping classes, so that held-out scores differ between settings.
        let (x, labels) = three_blobs(n, 1.0, 1.5);
        let cfg = short_probe();
        let search = ProbeSearch {
            lrs: vec![0.01, 1.0],
            weight_decays: vec![0.0, 0.1],
            standardize: vec![false, true],
            val_frac: 0.25,
        };
        let (fit_idx, val_idx) = tune_split(n, &cfg, &search);
        assert_eq!(val_idx.len(), 60);
        let rows = |idx: &[usize]| {
            x.index_select(
                0,
                &Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>()),
            )
        };
        let val_y: Vec<u32> = val_idx.iter().map(|&i| labels[i]).collect();
        let (_, on_rows) = tune_probe(&x, &labels, 3, &cfg, &search, None);
        // Two identical views of each held-out image score as its row: the views are
        // matched to the held-out images in tune_split's order.
        let val_x = rows(&val_idx);
        let twice = Tensor::stack(&[&val_x, &val_x], 1);
        let (_, on_twice) = tune_probe(&x, &labels, 3, &cfg, &search, Some(&twice));
        assert_eq!(on_twice, on_rows);
        // Other views: every setting is scored on them, as a probe fitted on the rest would.
        let views = val_x.unsqueeze(1) + Tensor::randn([60, 10, 3], (Kind::Float, Device::Cpu));
        let (_, on_views) = tune_probe(&x, &labels, 3, &cfg, &search, Some(&views));
        assert_ne!(on_views.tried, on_rows.tried);
        let fit_y: Vec<u32> = fit_idx.iter().map(|&i| labels[i]).collect();
        for t in &on_views.tried {
            let p = train_probe(
                &rows(&fit_idx),
                &fit_y,
                3,
                &ProbeConfig {
                    lr: t.lr,
                    weight_decay: t.weight_decay,
                    standardize: t.standardize,
                    ..cfg.clone()
                },
            );
            let top1 = p.correct(&views, &val_y) as f64 / 60.0;
            assert!((t.val_top1 - top1).abs() < 1e-9, "{t:?}: {top1}");
        }
        // Streamed in pieces, as `uic eval` feeds ten-crop batches: the same choice.
        let mut grid = ProbeGrid::fit(&x, &labels, 3, &cfg, &search);
        assert_eq!(grid.held_out(), &val_idx[..]);
        grid.score(0..25, &views.narrow(0, 0, 25));
        grid.score(25..60, &views.narrow(0, 25, 35));
        assert_eq!(grid.choose(&x, &labels, 3, &cfg).1, on_views);
    }

    #[test]
    fn probes_do_not_depend_on_libtorch_global_generator() {
        // Another thread reseeds and draws from libtorch's global generator all along, as
        // parallel tests and callers do; the probe must come out the same every time.
        let (n, d) = (90, 6);
        let x = (Tensor::arange(n * d, (Kind::Float, Device::Cpu)).view([n, d]) * 0.37).sin();
        let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let cfg = ProbeConfig {
            epochs: 2,
            batch_size: 16,
            ..Default::default()
        };
        let want = train_probe(&x, &labels, 3, &cfg).probabilities(&x);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let got: Vec<Tensor> = std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tch::manual_seed(7);
                    let _ = Tensor::randn([256], (Kind::Float, Device::Cpu));
                }
            });
            let got = (0..20)
                .map(|_| train_probe(&x, &labels, 3, &cfg).probabilities(&x))
                .collect();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            got
        });
        for g in &got {
            assert!(g.equal(&want));
        }
    }

    #[test]
    #[should_panic(expected = "every held-out image must be scored")]
    fn probe_grid_refuses_to_choose_before_every_held_out_image_is_scored() {
        let labels: Vec<u32> = (0..40).map(|i| (i % 2) as u32).collect();
        let x = Tensor::randn([40, 2], (Kind::Float, Device::Cpu));
        let cfg = ProbeConfig {
            epochs: 1,
            ..Default::default()
        };
        let search = ProbeSearch::decades(vec![false]);
        let mut grid = ProbeGrid::fit(&x, &labels, 2, &cfg, &search);
        let first = rows(&x, &grid.held_out()[..3]);
        grid.score(0..3, &first);
        grid.choose(&x, &labels, 2, &cfg);
    }

    #[test]
    fn tuned_probe_chooses_standardisation_where_scales_hide_the_signal() {
        tch::manual_seed(2);
        let n = 400;
        let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        let y = Tensor::from_slice(&labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
        // Feature 0 carries the class at a scale of 1e-3; four features of noise at 100.
        let signal = (y.to_kind(Kind::Float) * 2.0 - 1.0
            + Tensor::randn([n as i64], (Kind::Float, Device::Cpu)) * 0.2)
            * 1e-3;
        let noise = Tensor::randn([n as i64, 4], (Kind::Float, Device::Cpu)) * 100.0;
        let x = Tensor::cat(&[signal.unsqueeze(1), noise], 1);
        let (tr, te) = (x.narrow(0, 0, 300), x.narrow(0, 300, 100));
        let cfg = ProbeConfig {
            epochs: 10,
            milestones: vec![6],
            batch_size: 32,
            ..Default::default()
        };
        let both = ProbeSearch::decades(vec![false, true]);
        let (p, choice) = tune_probe(&tr, &labels[..300], 2, &cfg, &both, None);
        assert!(choice.chosen.standardize, "{:?}", choice.chosen);
        assert_eq!(choice.tried.len(), 40);
        assert!(p.correct(&te, &labels[300..]) >= 95);
        // Raw features only: no rate in the grid finds the signal.
        let raw = ProbeSearch::decades(vec![false]);
        let (p, choice) = tune_probe(&tr, &labels[..300], 2, &cfg, &raw, None);
        assert!(!choice.chosen.standardize);
        assert!(p.correct(&te, &labels[300..]) < 75);
    }

    #[test]
    fn ten_crops_are_corners_centre_and_mirrors() {
        let x = Tensor::arange(16, (Kind::Float, Device::Cpu))
            .view([1, 1, 4, 4])
            .expand([1, 3, 4, 4], false);
        let c = ten_crops(&x, 2);
        assert_eq!(c.size(), vec![10, 3, 2, 2]);
        let v = |i: i64| -> Vec<f32> { Vec::try_from(c.get(i).get(0).flatten(0, -1)).unwrap() };
        assert_eq!(v(0), vec![0.0, 1.0, 4.0, 5.0]);
        assert_eq!(v(3), vec![10.0, 11.0, 14.0, 15.0]);
        assert_eq!(v(4), vec![5.0, 6.0, 9.0, 10.0]);
        assert_eq!(v(5), vec![1.0, 0.0, 5.0, 4.0]);
    }

    #[test]
    fn split_is_seeded_and_disjoint() {
        let (a, b) = split(10, 0.7, 1);
        assert_eq!((a.len(), b.len()), (7, 3));
        assert!(a.iter().all(|i| !b.contains(i)));
        assert_eq!(split(10, 0.7, 1), (a, b));
        assert_ne!(split(10, 0.7, 2).0, split(10, 0.7, 1).0);
    }

    #[test]
    fn layers_parse() {
        assert_eq!("conv3".parse::<Layer>().unwrap(), Layer::Conv(3));
        assert_eq!("final".parse::<Layer>().unwrap(), Layer::Final);
        assert_eq!("pixels".parse::<Layer>().unwrap(), Layer::Pixels);
        for l in [Layer::Conv(2), Layer::Final, Layer::Pixels] {
            assert_eq!(l.to_string().parse::<Layer>().unwrap(), l);
        }
        assert!("conv6".parse::<Layer>().is_err());
    }

    #[test]
    fn pixel_features_are_the_normalised_input_pooled_when_large() {
        use crate::model::ModelConfig;
        for (sobel, size) in [(false, 32), (true, 32), (false, 96)] {
            let cfg = ModelConfig {
                arch: Arch::AlexnetSmall,
                width: 0.25,
                k: 5,
                input_size: size,
                sobel,
                ..Default::default()
            };
            let m = Model::new(&cfg, Device::Cpu).unwrap();
            let s = i64::from(size);
            let c = if sobel { 2 } else { 3 };
            if size == 32 {
                // 32 x 32 x 3 is under the pooled size: every input value, unpooled.
                let px = Tensor::randint(256, [2, 3, s, s], (Kind::Uint8, Device::Cpu));
                let f = layers_features(&m, &px, &[Layer::Final, Layer::Pixels]).unwrap();
                assert_eq!(f[1].size(), vec![2, c * 32 * 32]);
                assert!(f[1].equal(&m.input(&px).flatten(1, -1).contiguous()));
                assert_eq!(f[0].size()[0], 2);
            } else {
                // 96 x 96 x 3 averages to a 55 x 55 grid, which keeps a flat colour.
                let rgb = Tensor::from_slice(&[200u8, 30, 90]).view([1, 3, 1, 1]);
                let px = rgb.expand([2, 3, s, s], false).contiguous();
                let f = layers_features(&m, &px, &[Layer::Pixels]).unwrap();
                assert_eq!(f[0].size(), vec![2, 3 * 55 * 55]);
                let flat =
                    m.input(&rgb)
                        .flatten(0, -1)
                        .repeat_interleave_self_int(55 * 55, 0, None);
                for i in 0..2 {
                    assert!(f[0].get(i).allclose(&flat, 1e-6, 1e-6, false));
                }
            }
        }
    }
}
