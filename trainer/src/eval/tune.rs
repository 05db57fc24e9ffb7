//! Choosing a probe's learning rate, weight decay and standardisation per feature set, by
//! accuracy on training images held out from the probe ([`tune_probe`], or [`ProbeGrid`] in
//! steps for held-out views that are streamed).

use serde::Serialize;
use tch::Tensor;
use uic_loader::seeds::Stream;

use super::features::Features;
use super::grid::{train_fits, FitSpec};
use super::probe::{Probe, ProbeConfig};
use super::split::split;
use crate::error::Result;

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
    split(n, 1.0 - search.val_frac, Stream::TuneSplit.seed(cfg.seed))
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
/// As [`train_probe`](super::train_probe); or if the held-out share leaves either part empty, `val_views` does
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
    /// As [`train_probe`](super::train_probe); or if the held-out share leaves either part empty, or the grid
    /// is empty.
    pub fn fit(
        train: &Tensor,
        labels: &[u32],
        classes: usize,
        cfg: &ProbeConfig,
        search: &ProbeSearch,
    ) -> Self {
        let held = Features::Held(vec![train.shallow_clone()]);
        Self::fit_layers(&held, labels, classes, cfg, search)
            .expect("features held in memory")
            .pop()
            .expect("one grid per layer")
    }

    /// [`ProbeGrid::fit`] for each layer of `train` at once: one read of the fitting rows
    /// per epoch trains every layer's grid (and both standardisations, if searched), so
    /// streamed features cost one backbone pass per epoch.
    ///
    /// # Errors
    /// A loader failure (streamed features).
    ///
    /// # Panics
    /// As [`ProbeGrid::fit`].
    pub fn fit_layers(
        train: &Features,
        labels: &[u32],
        classes: usize,
        cfg: &ProbeConfig,
        search: &ProbeSearch,
    ) -> Result<Vec<Self>> {
        let n = labels.len();
        let (fit_idx, held_out) = tune_split(n, cfg, search);
        assert!(
            !fit_idx.is_empty() && !held_out.is_empty(),
            "the held-out share {} of {n} images leaves a part empty",
            search.val_frac
        );
        let rates: Vec<(f64, f64)> = search
            .lrs
            .iter()
            .flat_map(|&lr| search.weight_decays.iter().map(move |&wd| (lr, wd)))
            .collect();
        assert!(
            !rates.is_empty() && !search.standardize.is_empty(),
            "an empty search grid"
        );
        // Per layer, one grid per standardisation, in the search's order.
        let specs: Vec<FitSpec> = (0..train.layers())
            .flat_map(|layer| {
                let rates = &rates;
                search.standardize.iter().map(move |&standardize| FitSpec {
                    layer,
                    standardize,
                    grid: rates.clone(),
                })
            })
            .collect();
        let mut trained = train_fits(train, &fit_idx, labels, classes, cfg, &specs)?.into_iter();
        let held_labels: Vec<u32> = held_out.iter().map(|&i| labels[i]).collect();
        Ok((0..train.layers())
            .map(|_| {
                let (mut trials, mut probes) = (Vec::new(), Vec::new());
                for &standardize in &search.standardize {
                    let grid = trained.next().expect("one grid per spec");
                    for (p, &(lr, weight_decay)) in grid.into_iter().zip(&rates) {
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
                    held_labels: held_labels.clone(),
                    held_out: held_out.clone(),
                    scored: 0,
                }
            })
            .collect())
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

    /// Scores each grid (one per layer of `train`, from [`ProbeGrid::fit_layers`]) on the
    /// held-out rows of `train`, read in batches of `batch`.
    ///
    /// # Errors
    /// A loader failure (streamed features).
    ///
    /// # Panics
    /// As [`ProbeGrid::score`]; or if the grids do not hold out the same rows.
    pub fn score_features(grids: &mut [Self], train: &Features, batch: usize) -> Result<()> {
        let Some(first) = grids.first() else {
            return Ok(());
        };
        let held = first.held_out.clone();
        assert!(grids.iter().all(|g| g.held_out == held));
        train.each(&held, batch, |r, feats| {
            for (g, f) in grids.iter_mut().zip(feats) {
                g.score(r.clone(), f);
            }
        })
    }

    /// The best setting by held-out accuracy (the first in grid order on ties: standardise,
    /// then rate, then decay), trained on all of `train`, with every setting's score.
    ///
    /// # Panics
    /// If some held-out image was not scored; as [`train_probe`](super::train_probe).
    pub fn choose(
        self,
        train: &Tensor,
        labels: &[u32],
        classes: usize,
        cfg: &ProbeConfig,
    ) -> (Probe, ProbeChoice) {
        let held = Features::Held(vec![train.shallow_clone()]);
        Self::choose_layers(vec![self], &held, labels, classes, cfg)
            .expect("features held in memory")
            .pop()
            .expect("one probe per grid")
    }

    /// [`ProbeGrid::choose`] for each layer of `train` (grid `i` for layer `i`), the chosen
    /// probes trained together: one read of the training rows per epoch.
    ///
    /// # Errors
    /// A loader failure (streamed features).
    ///
    /// # Panics
    /// As [`ProbeGrid::choose`], or if there is not one grid per layer.
    pub fn choose_layers(
        grids: Vec<Self>,
        train: &Features,
        labels: &[u32],
        classes: usize,
        cfg: &ProbeConfig,
    ) -> Result<Vec<(Probe, ProbeChoice)>> {
        assert_eq!(grids.len(), train.layers(), "one grid per layer");
        let choices: Vec<ProbeChoice> = grids.into_iter().map(ProbeGrid::best).collect();
        // The chosen rate and decay go in the grid; standardisation in the spec.
        let specs: Vec<FitSpec> = choices
            .iter()
            .enumerate()
            .map(|(layer, c)| FitSpec {
                layer,
                standardize: c.chosen.standardize,
                grid: vec![(c.chosen.lr, c.chosen.weight_decay)],
            })
            .collect();
        let rows: Vec<usize> = (0..labels.len()).collect();
        let probes = train_fits(train, &rows, labels, classes, cfg, &specs)?;
        Ok(probes
            .into_iter()
            .zip(choices)
            .map(|(mut p, c)| (p.pop().expect("a grid of one"), c))
            .collect())
    }

    /// Every setting's held-out score and the best one (the first in grid order on ties).
    ///
    /// # Panics
    /// If some held-out image was not scored.
    fn best(self) -> ProbeChoice {
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
        ProbeChoice { chosen, tried }
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::super::grid::train_probe;
    use super::*;

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
}
