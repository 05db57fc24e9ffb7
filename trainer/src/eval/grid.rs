//! Linear probes trained on features held in memory: a grid of settings in one pass
//! ([`train_probe_grid`]), one probe as a grid of one ([`train_probe`]), and its test
//! accuracy ([`linear_probe`]).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use tch::nn;
use tch::{Device, Kind, Tensor};

use super::probe::{column_stats, probe_init, probe_lr_factor, Probe, ProbeConfig};
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
    let wd_w = wd_of.unsqueeze(1);
    let (mut buf_w, mut buf_b) = (None, None);
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
                // The trainer's SGD update, each probe's rows with their own rate and decay.
                let (lw, lb) = (-(lr_of.unsqueeze(1) * scale), -(&lr_of * scale));
                let (gw, gb) = (w.grad(), b.grad());
                sgd::update(&mut w, gw, &mut buf_w, 0.9, Some(&wd_w), &lw);
                sgd::update(&mut b, gb, &mut buf_b, 0.9, Some(&wd_of), &lb);
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
    use super::super::probe::{probe_lr, ProbeFit};
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
