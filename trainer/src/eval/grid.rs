//! Linear probes trained with SGD on frozen features: a grid of settings in one pass
//! ([`train_probe_grid`]), one probe as a grid of one ([`train_probe`]), and its test
//! accuracy ([`linear_probe`]). The features are held in memory or streamed from the loader
//! ([`Features`]); each epoch reads the rows in a seeded order, in minibatches, the same
//! either way.

use rand::seq::SliceRandom;
use tch::nn;
use tch::{Device, Kind, Tensor};
use uic_loader::seeds::Stream;

use super::features::Features;
use super::probe::{probe_init, probe_lr_factor, Probe, ProbeConfig};
use crate::error::Result;
use crate::labels::class_count;
use crate::sgd;

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
    let n = train.size()[0] as usize;
    assert_eq!(n, labels.len());
    let spec = FitSpec {
        layer: 0,
        standardize: cfg.standardize,
        grid: grid.to_vec(),
    };
    let rows: Vec<usize> = (0..n).collect();
    train_fits(
        &Features::Held(vec![train.shallow_clone()]),
        &rows,
        labels,
        classes,
        cfg,
        &[spec],
    )
    .expect("features held in memory")
    .pop()
    .expect("one grid per spec")
}

/// One probe per layer of `train`, on all its rows (row `r` labelled `labels[r]`), as
/// [`train_probe`] trains each: one read of the rows per epoch serves every layer, so
/// streamed features cost one backbone pass per epoch (and one more for the statistics
/// with `cfg.standardize`), and memory does not grow with the rows.
///
/// # Errors
/// A loader failure (streamed features).
///
/// # Panics
/// As [`train_probe`].
pub fn train_probes(
    train: &Features,
    labels: &[u32],
    classes: usize,
    cfg: &ProbeConfig,
) -> Result<Vec<Probe>> {
    let specs: Vec<FitSpec> = (0..train.layers())
        .map(|layer| FitSpec {
            layer,
            standardize: cfg.standardize,
            grid: vec![(cfg.lr, cfg.weight_decay)],
        })
        .collect();
    let rows: Vec<usize> = (0..train.len()).collect();
    Ok(train_fits(train, &rows, labels, classes, cfg, &specs)?
        .into_iter()
        .map(|mut g| g.pop().expect("a grid of one"))
        .collect())
}

/// What one grid of probes trains on: a layer of a [`Features`], standardised or not, one
/// probe per `(lr, weight_decay)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FitSpec {
    /// The layer (tensor) of the features.
    pub layer: usize,
    /// Standardise with the training rows' column statistics.
    pub standardize: bool,
    /// `(lr, weight_decay)` of each probe.
    pub grid: Vec<(f64, f64)>,
}

/// Trains every grid of `specs` on `rows` of `feats` (row `r` labelled `labels[r]`) with
/// `cfg`'s epochs, batch size, schedule and seed, as [`train_probe_grid`] describes: each
/// epoch shuffles `rows` with the generator seeded by `cfg.seed`, and one read of the
/// features in that order serves every grid, so streamed features cost one backbone pass
/// per epoch (and one more for the statistics, if any grid standardises). The probes of a
/// grid come in its order.
///
/// # Errors
/// A loader failure (streamed features).
///
/// # Panics
/// If `labels` does not have one label per row of `feats`, a label is `>= classes`, a
/// grid is empty, or a spec's layer is not one of `feats`.
pub(crate) fn train_fits(
    feats: &Features,
    rows: &[usize],
    labels: &[u32],
    classes: usize,
    cfg: &ProbeConfig,
    specs: &[FitSpec],
) -> Result<Vec<Vec<Probe>>> {
    assert_eq!(feats.len(), labels.len());
    assert!(
        labels.iter().all(|&l| (l as usize) < classes),
        "label >= {classes}"
    );
    assert!(
        specs.iter().all(|s| !s.grid.is_empty()),
        "an empty probe grid"
    );
    assert!(specs.iter().all(|s| s.layer < feats.layers()));
    let batch = cfg.batch_size.max(1) as usize;
    let wanted: Vec<bool> = (0..feats.layers())
        .map(|l| specs.iter().any(|s| s.layer == l && s.standardize))
        .collect();
    let stats = feats.column_stats(rows, &wanted, batch)?;
    let dims = feats.dims()?;
    let mut fits: Vec<GridFit> = specs
        .iter()
        .map(|s| {
            let st = stats[s.layer].as_ref().filter(|_| s.standardize);
            GridFit::new(dims[s.layer], classes, st, cfg, &s.grid)
        })
        .collect();
    let mut rng = Stream::ProbeOrder.rng(cfg.seed);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    for epoch in 0..cfg.epochs {
        let scale = probe_lr_factor(cfg, epoch);
        order.shuffle(&mut rng);
        let epoch_rows: Vec<usize> = order.iter().map(|&p| rows[p]).collect();
        feats.each(&epoch_rows, batch, |range, f| {
            let y: Vec<i64> = epoch_rows[range]
                .iter()
                .map(|&r| i64::from(labels[r]))
                .collect();
            let y = Tensor::from_slice(&y);
            for (fit, spec) in fits.iter_mut().zip(specs) {
                fit.step(&f[spec.layer], &y, scale);
            }
        })?;
    }
    Ok(fits.into_iter().map(GridFit::finish).collect())
}

/// A grid of probes being trained: `g` linear layers stacked as `[g * c, d]` weights and
/// `[g * c]` biases, each with its own rate and decay, and their momentum buffers.
struct GridFit {
    w: Tensor,
    b: Tensor,
    buf_w: Option<Tensor>,
    buf_b: Option<Tensor>,
    lr_of: Tensor,
    wd_of: Tensor,
    mean: Tensor,
    std: Tensor,
    d: i64,
    c: i64,
    g: i64,
}

impl GridFit {
    /// Fresh probes for `d`-dim features, standardised with `stats` (mean, std `[1, d]`) or
    /// not, all starting from the initialisation of a single probe seeded by `cfg.seed`.
    fn new(
        d: i64,
        classes: usize,
        stats: Option<&(Tensor, Tensor)>,
        cfg: &ProbeConfig,
        grid: &[(f64, f64)],
    ) -> Self {
        let (c, g) = (classes as i64, grid.len() as i64);
        let (mean, std) = match stats {
            Some((m, s)) => (m.shallow_clone(), s.shallow_clone()),
            None => (
                Tensor::zeros([1, d], (Kind::Float, Device::Cpu)),
                Tensor::ones([1, d], (Kind::Float, Device::Cpu)),
            ),
        };
        // The initialisation of a single probe, repeated: [g * c, d] weights, [g * c] biases.
        let (w0, b0) = probe_init(d, c, cfg.seed);
        let per = |v: Vec<f64>| {
            Tensor::from_slice(&v)
                .to_kind(Kind::Float)
                .repeat_interleave_self_int(c, 0, None)
        };
        GridFit {
            w: w0.repeat([g, 1]).set_requires_grad(true),
            b: b0.repeat([g]).set_requires_grad(true),
            buf_w: None,
            buf_b: None,
            lr_of: per(grid.iter().map(|p| p.0).collect()),
            wd_of: per(grid.iter().map(|p| p.1).collect()),
            mean,
            std,
            d,
            c,
            g,
        }
    }

    /// One SGD step of every probe on raw features `x` (`[m, d]`) with class indices `y`
    /// (int64 `[m]`), at each probe's rate times `scale`.
    fn step(&mut self, x: &Tensor, y: &Tensor, scale: f64) {
        let (c, g) = (self.c, self.g);
        let m = x.size()[0];
        let x = (x - &self.mean) / &self.std;
        // [m, g * c] logits; each probe's mean loss, summed, keeps their gradients apart.
        let logits = x.matmul(&self.w.tr()) + &self.b;
        let loss = logits
            .view([m * g, c])
            .cross_entropy_for_logits(&y.repeat_interleave_self_int(g, 0, None))
            * g as f64;
        self.w.zero_grad();
        self.b.zero_grad();
        loss.backward();
        tch::no_grad(|| {
            // The trainer's SGD update, each probe's rows with their own rate and decay.
            let (lw, lb) = (-(self.lr_of.unsqueeze(1) * scale), -(&self.lr_of * scale));
            let (gw, gb) = (self.w.grad(), self.b.grad());
            let wd_w = self.wd_of.unsqueeze(1);
            sgd::update(&mut self.w, gw, &mut self.buf_w, 0.9, Some(&wd_w), &lw);
            sgd::update(
                &mut self.b,
                gb,
                &mut self.buf_b,
                0.9,
                Some(&self.wd_of),
                &lb,
            );
        });
    }

    /// The trained probes, in grid order.
    fn finish(self) -> Vec<Probe> {
        let (d, c) = (self.d, self.c);
        (0..self.g)
            .map(|i| {
                let vs = nn::VarStore::new(Device::Cpu);
                let mut lin = nn::linear(vs.root() / "probe", d, c, Default::default());
                tch::no_grad(|| {
                    lin.ws.copy_(&self.w.narrow(0, i * c, c));
                    if let Some(bs) = lin.bs.as_mut() {
                        bs.copy_(&self.b.narrow(0, i * c, c));
                    }
                });
                Probe {
                    lin,
                    mean: self.mean.shallow_clone(),
                    std: self.std.shallow_clone(),
                    _vs: vs,
                }
            })
            .collect()
    }
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
    let classes = class_count(train_labels.iter().chain(test_labels));
    let p = train_probe(train, train_labels, classes, cfg);
    p.correct(test, test_labels) as f64 / test_labels.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::super::probe::{column_stats, probe_lr, ProbeFit};
    use super::*;

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
        let mut rng = Stream::ProbeOrder.rng(cfg.seed);
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
}
