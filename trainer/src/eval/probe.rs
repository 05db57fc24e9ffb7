//! A linear probe: its settings ([`ProbeConfig`], the paper's protocol by default), the
//! trained classifier ([`Probe`]), and the parts its trainers share: the rate schedule, the
//! seeded initialisation, standardisation statistics, and a probe trained batch by batch
//! ([`ProbeFit`], for views that arrive batch by batch).

use rand::Rng;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};
use uic_loader::seeds::Stream;

use crate::sgd::Sgd;

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
    pub(crate) lin: nn::Linear,
    pub(crate) mean: Tensor,
    pub(crate) std: Tensor,
    pub(crate) _vs: nn::VarStore,
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
pub(crate) fn probe_lr(cfg: &ProbeConfig, epoch: usize) -> f64 {
    cfg.lr * probe_lr_factor(cfg, epoch)
}

/// 0.1 to the power of the milestones `epoch` has passed.
pub(crate) fn probe_lr_factor(cfg: &ProbeConfig, epoch: usize) -> f64 {
    let drops = cfg.milestones.iter().filter(|&&m| epoch >= m).count() as i32;
    0.1f64.powi(drops)
}

/// A linear probe being trained: standardisation statistics, the layer, its SGD.
pub(crate) struct ProbeFit {
    lin: nn::Linear,
    opt: Sgd,
    mean: Tensor,
    std: Tensor,
    vs: nn::VarStore,
}

impl ProbeFit {
    /// A fresh probe for `d`-dim features; `stats` is (mean, std) `[1, d]` to standardise
    /// with, or None for none.
    pub(crate) fn new(
        d: i64,
        classes: usize,
        stats: Option<(Tensor, Tensor)>,
        cfg: &ProbeConfig,
    ) -> Self {
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
        let opt = Sgd::new(vs.variables().into_iter().collect(), 0.9, cfg.weight_decay);
        ProbeFit {
            lin,
            opt,
            mean,
            std,
            vs,
        }
    }

    /// One SGD step on raw features `x` (`[b, d]`) with class indices `y` (int64).
    pub(crate) fn step(&mut self, x: &Tensor, y: &Tensor, lr: f64) {
        let x = (x.to_kind(Kind::Float) - &self.mean) / &self.std;
        let loss = self.lin.forward(&x).cross_entropy_for_logits(y);
        self.opt.zero_grad();
        loss.backward();
        self.opt.step(lr);
    }

    pub(crate) fn finish(self) -> Probe {
        Probe {
            lin: self.lin,
            mean: self.mean,
            std: self.std,
            _vs: self.vs,
        }
    }
}

/// Mean and deviation (`[1, d]` each) of each column of `x` (`[n, d]`): the reference
/// for the streamed statistics of [`super::stats`].
#[cfg(test)]
pub(crate) fn column_stats(x: &Tensor) -> (Tensor, Tensor) {
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
pub(crate) fn probe_init(d: i64, c: i64, seed: u64) -> (Tensor, Tensor) {
    let mut rng = Stream::ProbeInit.rng(seed);
    let bound = 1.0 / (d as f32).sqrt();
    let mut draw = |n: i64| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-bound..bound)).collect() };
    let w = draw(c * d);
    let b = draw(c);
    (Tensor::from_slice(&w).view([c, d]), Tensor::from_slice(&b))
}
