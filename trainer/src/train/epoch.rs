//! One training epoch, in named phases:
//! 1. **labels**: with the k-means labeler, an extra centre-crop pass and k-means make this
//!    epoch's targets (UIC needs nothing: the targets are last epoch's argmaxes);
//! 2. **steps**: the class-balanced order, the feed, one [`train_step`] per batch, each
//!    sample's argmax recorded for the next epoch;
//! 3. **repair**: empty classes split off the largest, and the label buffers swapped;
//! 4. **metrics**: the epoch's [`EpochMetrics`].

use std::time::{Duration, Instant};

use tch::{Device, Tensor};
use uic_loader::order::{ClassBalanced, Order};

use super::feed::{Feed, StepInput};
use super::step::{train_step_with, Sync};
use super::{Observer, Progress, Trainer};
use crate::config::Labeler;
use crate::dist::shard;
use crate::error::{Error, Result};
use crate::infer::{self, Layer};
use crate::labels::size_stats;
use crate::metrics::{EpochMetrics, Phase};
use crate::nmi::{nmi, nmi_both, Normalization};
use crate::seeds::{stream_rng, torch_seed, STREAM_EMPTY};

/// What the labels phase did.
struct Labelling {
    /// The k-means labeler made this epoch's targets.
    kmeans: bool,
    /// Empty clusters k-means re-seeded.
    reseeded: usize,
    /// Time the labeler took.
    seconds: f64,
}

/// What the steps phase saw.
struct Steps {
    /// Samples trained on.
    seen: usize,
    /// Sum of the per-sample losses.
    loss_sum: f64,
    /// Samples whose argmax equalled their target.
    agree: usize,
    /// Time spent waiting for batches.
    waited: Duration,
    /// The rate of the epoch's first step.
    first_lr: f64,
    /// Data-parallel runs: the epoch's order, and this rank's (position, argmax) records,
    /// exchanged in the repair phase.
    shared: Option<SharedLabels>,
}

/// One rank's argmaxes of a data-parallel epoch, by position in the global order.
struct SharedLabels {
    order: Vec<usize>,
    positions: Vec<usize>,
    preds: Vec<i64>,
}

impl Trainer {
    /// Trains epoch `e` (0-based) of `phase`; `before` is the labels to compare the new
    /// ones with (default: the current targets).
    pub(super) fn train_epoch(
        &mut self,
        e: u64,
        phase: Phase,
        before: Option<Vec<u32>>,
        obs: &mut dyn Observer,
    ) -> Result<EpochMetrics> {
        let start = Instant::now();
        // Each rank its own dropout masks (rank 0 keeps the single-process run's), not one
        // mask repeated on every rank's share of the batch.
        let rank = self.rank().0 as i64;
        tch::manual_seed(torch_seed(self.cfg.seed, e).wrapping_add(rank.wrapping_mul(0x9e37_79b9)));
        let before = before.unwrap_or_else(|| self.labels.targets().to_vec());
        let labelling = self.make_labels(e, phase)?;
        let mut steps = self.train_steps(e, phase, labelling.kmeans, start, obs)?;
        self.combine_ranks(&mut steps)?;
        let empty_fixed = self.repair(e, phase, &labelling);
        Ok(self.epoch_metrics(e, phase, &before, &steps, empty_fixed, &labelling, start))
    }

    /// Phase 1: the k-means labeler's targets, if it is the labeler of a UIC epoch.
    fn make_labels(&mut self, e: u64, phase: Phase) -> Result<Labelling> {
        let kmeans = phase == Phase::Uic && self.cfg.labeler == Labeler::Kmeans;
        if !kmeans {
            return Ok(Labelling {
                kmeans,
                reseeded: 0,
                seconds: 0.0,
            });
        }
        let t = Instant::now();
        let reseeded = self.cluster(e)?;
        Ok(Labelling {
            kmeans,
            reseeded,
            seconds: t.elapsed().as_secs_f64(),
        })
    }

    /// Phase 2: every batch of the epoch through [`train_step`], reporting progress; in UIC
    /// epochs each sample's argmax goes into the label table's next buffer.
    fn train_steps(
        &mut self,
        e: u64,
        phase: Phase,
        kmeans: bool,
        start: Instant,
        obs: &mut dyn Observer,
    ) -> Result<Steps> {
        let (base_lr, phase_epochs) = match phase {
            Phase::Uic => (self.cfg.lr, self.cfg.epochs),
            Phase::Fft => (self.cfg.fft_lr, self.cfg.fft_epochs),
        };
        let total_steps = phase_epochs * self.steps_per_epoch();
        let order = self.epoch_order(e);
        self.labels.begin_epoch();
        let (rank, world) = self.rank();
        let global_len = order.len();
        // This rank's samples and their positions in `order`, when there are several ranks.
        let part = self
            .dist
            .is_some()
            .then(|| shard(&order, self.cfg.batch_size, rank, world));
        let mut shared = part.as_ref().map(|(_, positions)| SharedLabels {
            positions: positions.clone(),
            order: order.clone(),
            preds: Vec::new(),
        });
        let (h, w) = (self.cfg.input_size as i64, self.cfg.input_size as i64);
        let first_lr = self.cfg.schedule.lr(base_lr, self.step, total_steps);
        let mut feed = self.feed(e, order, part)?;
        let batches = feed.num_batches();
        let (mut seen, mut loss_sum, mut agree) = (0usize, 0f64, 0usize);
        let mut done = 0usize;
        let mut targets = Vec::with_capacity(self.cfg.batch_size);
        while let Some(batch) = feed.next() {
            let batch: StepInput = batch?;
            self.substituted_outside_loader += batch.substituted() as u64;
            let n = batch.len();
            targets.clear();
            targets.extend(
                batch
                    .indices()
                    .iter()
                    .map(|&i| i64::from(self.labels.targets()[i as usize])),
            );
            let y = Tensor::from_slice(&targets);
            let lr = self.cfg.schedule.lr(base_lr, self.step, total_steps);
            let sync = self.dist.as_ref().map(|d| Sync {
                dist: d,
                share: n as f64
                    / (global_len - done * self.cfg.batch_size).min(self.cfg.batch_size) as f64,
                step: self.step,
            });
            let (lv, pred) = batch
                .with_pixels(h, w, |x| {
                    train_step_with(&self.model, &mut self.opt, x, &y, lr, sync)
                })
                .map_err(|err| match err {
                    Error::NonFinite { value, .. } => Error::NonFinite {
                        epoch: e + 1,
                        batch: done,
                        value,
                    },
                    other => other,
                })?;
            self.step += 1;
            agree += pred.iter().zip(&targets).filter(|(a, b)| a == b).count();
            if phase == Phase::Uic && !kmeans {
                match &mut shared {
                    None => self.labels.record(batch.indices(), &pred),
                    Some(s) => s.preds.extend_from_slice(&pred),
                }
            }
            seen += n;
            loss_sum += lv * n as f64;
            done += 1;
            let secs = start.elapsed().as_secs_f64();
            obs.batch(&Progress {
                epoch: e + 1,
                epochs: self.cfg.epochs + self.cfg.fft_epochs,
                batch: done,
                batches,
                loss: loss_sum / seen as f64,
                // This rank's rate times the ranks: the global rate, near enough for a bar.
                images_per_s: (seen * world) as f64 / secs,
                data_wait: feed.waited().as_secs_f64() / secs,
            });
        }
        if done != batches {
            return Err(Error::Internal(format!(
                "the loader stopped after {done} of {batches} batches of epoch {}",
                e + 1
            )));
        }
        let waited = feed.waited();
        self.end_feed(feed)?;
        Ok(Steps {
            seen,
            loss_sum,
            agree,
            waited,
            first_lr,
            shared,
        })
    }

    /// Data-parallel runs: the epoch's counts summed over the ranks (the wait: the worst
    /// rank's), and every rank's argmaxes recorded into the label table in the order of the
    /// global epoch, as one process would have recorded them.
    fn combine_ranks(&mut self, s: &mut Steps) -> Result<()> {
        let Some(d) = &self.dist else { return Ok(()) };
        let substituted = self
            .loader
            .stats()
            .substituted
            .load(std::sync::atomic::Ordering::Relaxed) as f64;
        let mine = [
            s.seen as f64,
            s.loss_sum,
            s.agree as f64,
            s.waited.as_secs_f64(),
            substituted,
        ];
        let all = d.allgather_f64(&mine, "summing the epoch's counts")?;
        s.seen = all.iter().map(|v| v[0] as usize).sum();
        s.loss_sum = all.iter().map(|v| v[1]).sum();
        s.agree = all.iter().map(|v| v[2] as usize).sum();
        s.waited = Duration::from_secs_f64(all.iter().map(|v| v[3]).fold(0.0, f64::max));
        self.substituted_elsewhere =
            all.iter().map(|v| v[4] as u64).sum::<u64>() - substituted as u64;
        let Some(shared) = s.shared.take() else {
            return Ok(());
        };
        let recorded = &shared.positions[..shared.preds.len()];
        let all = d.gather_by_position(
            recorded,
            &shared.preds,
            shared.order.len(),
            "gathering the epoch's labels",
        )?;
        let (idx, preds): (Vec<u32>, Vec<i64>) = all
            .iter()
            .enumerate()
            .filter(|(_, &p)| p >= 0)
            .map(|(pos, &p)| (shared.order[pos] as u32, p))
            .unzip();
        self.labels.record(&idx, &preds);
        Ok(())
    }

    /// Phase 3: in UIC epochs, the empty classes refilled and the label buffers swapped.
    /// Returns how many classes were empty (k-means: how many clusters it re-seeded).
    fn repair(&mut self, e: u64, phase: Phase, labelling: &Labelling) -> usize {
        match phase {
            Phase::Uic if labelling.kmeans => labelling.reseeded,
            Phase::Uic => {
                self.labels
                    .end_epoch(&mut stream_rng(self.cfg.seed, STREAM_EMPTY, e))
                    .empty_fixed
            }
            Phase::Fft => 0,
        }
    }

    /// Phase 4: the epoch's metrics line.
    #[allow(clippy::too_many_arguments)]
    fn epoch_metrics(
        &self,
        e: u64,
        phase: Phase,
        before: &[u32],
        s: &Steps,
        empty_fixed: usize,
        labelling: &Labelling,
        start: Instant,
    ) -> EpochMetrics {
        let secs = start.elapsed().as_secs_f64();
        let after = self.labels.targets();
        let (class_min, class_max, class_entropy) = size_stats(&self.labels.class_sizes());
        // The true labels are read from the file here, not kept: 4 bytes per image less
        // while the epoch runs.
        let (nmi_true, nmi_true_geometric) = match self.file.labels() {
            Some(t) => {
                let (a, g) = nmi_both(after, &t);
                (Some(a), Some(g))
            }
            None => (None, None),
        };
        EpochMetrics {
            epoch: e + 1,
            phase,
            loss: s.loss_sum / s.seen.max(1) as f64,
            lr: s.first_lr,
            images_per_s: s.seen as f64 / secs,
            data_wait: s.waited.as_secs_f64() / secs,
            seconds: secs,
            agree: s.agree as f64 / s.seen.max(1) as f64,
            empty_fixed,
            class_min,
            class_max,
            class_entropy,
            nmi_prev: nmi(before, after, Normalization::Arithmetic),
            nmi_true,
            nmi_true_geometric,
            substituted: self
                .loader
                .stats()
                .substituted
                .load(std::sync::atomic::Ordering::Relaxed)
                + self.substituted_outside_loader
                + self.substituted_elsewhere,
            labeling_seconds: labelling.seconds,
        }
    }

    fn steps_per_epoch(&self) -> u64 {
        match &self.dist {
            None => self.loader.num_batches(self.epoch_len()) as u64,
            Some(d) => {
                let (n, b) = (self.epoch_len(), self.cfg.batch_size);
                // As `dist::shard` cuts them: a partial last batch only if every rank gets 2.
                (n / b + usize::from(n % b >= 2 * d.world())) as u64
            }
        }
    }

    /// Samples an epoch visits: the data `epoch_repeats` times.
    fn epoch_len(&self) -> usize {
        self.file.len() * self.cfg.epoch_repeats as usize
    }

    /// Epoch `e`'s order: `epoch_repeats` class-balanced draws, one after the other (with
    /// one repeat, exactly the sampler's order for epoch `e`).
    fn epoch_order(&self, e: u64) -> Vec<usize> {
        let sampler = ClassBalanced::new(self.labels.targets(), self.cfg.k, self.cfg.seed);
        let r = self.cfg.epoch_repeats;
        // The first draw is the order itself: one repeat copies nothing.
        let mut order = sampler.indices(e * r);
        order.reserve_exact(self.epoch_len().saturating_sub(order.len()));
        for i in 1..r {
            order.extend(sampler.indices(e * r + i));
        }
        order
    }

    /// Starts epoch `e`'s batches in `order` from the configured decoder: nvJPEG workers,
    /// or the CPU loader (with an uploader thread when the model is on a GPU). With `part`
    /// (this rank's samples and their positions in `order`), only those.
    fn feed(
        &mut self,
        e: u64,
        order: Vec<usize>,
        part: Option<(Vec<usize>, Vec<usize>)>,
    ) -> Result<Feed> {
        let ahead = self.cfg.batches_ahead;
        #[cfg(feature = "nvjpeg")]
        if !self.gpu_loaders.is_empty() {
            let loaders = std::mem::take(&mut self.gpu_loaders);
            let n = loaders[0].num_batches(order.len());
            let order = std::sync::Arc::new(order);
            let augment = self.device_augment;
            let a = super::feed::Ahead::start("uic-nvjpeg", loaders, n, ahead, move |l, b| {
                let g = l.batch(e, &order, b)?;
                let pixels = match &augment {
                    Some(a) => a.apply(&g.pixels, &g.drawn)?,
                    None => g.pixels,
                };
                Ok(super::feed::DeviceBatch {
                    pixels,
                    indices: g.indices,
                    substituted: g.substituted,
                })
            })?;
            return Ok(Feed::Nvjpeg(a));
        }
        let epoch = match part {
            None => self.loader.epoch(e, order, 0)?,
            Some((local, positions)) => self.loader.epoch_at(e, local, positions, 0)?,
        };
        let device = self.model.device();
        let side = i64::from(self.cfg.input_size);
        if device == Device::Cpu {
            return Ok(Feed::Cpu(
                epoch,
                self.device_augment.map(|a| (a, (side, side))),
            ));
        }
        Feed::upload(epoch, device, (side, side), ahead, self.device_augment)
    }

    /// Ends an epoch's feed, taking the nvJPEG decoders back from their threads.
    fn end_feed(&mut self, feed: Feed) -> Result<()> {
        match feed {
            Feed::Cpu(..) => Ok(()),
            Feed::Upload(a) => match a.finish().len() {
                1 => Ok(()),
                _ => Err(Error::Internal("the upload thread panicked".into())),
            },
            #[cfg(feature = "nvjpeg")]
            Feed::Nvjpeg(a) => {
                self.gpu_loaders = a.finish();
                if self.gpu_loaders.len() == super::NVJPEG_WORKERS {
                    Ok(())
                } else {
                    Err(Error::Internal("an nvJPEG worker thread panicked".into()))
                }
            }
        }
    }

    /// The k-means labeler: features of every image (extra centre-crop pass), PCA with
    /// whitening and L2 normalisation, k-means; the result becomes this epoch's targets and
    /// the classifier layer starts afresh. Returns how many empty clusters were re-seeded.
    fn cluster(&mut self, e: u64) -> Result<usize> {
        let all: Vec<usize> = (0..self.file.len()).collect();
        let feats = infer::extract(
            &self.model,
            &self.cfg,
            &self.file,
            &all,
            &[Layer::Final],
            false,
        )?;
        let x = crate::kmeans::pca_whiten_l2(&feats[0], i64::from(self.cfg.pca_dims));
        let seed = self.cfg.seed ^ e.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let c = crate::kmeans::kmeans(&x, self.cfg.k, self.cfg.kmeans_iters, seed);
        self.labels.set_targets(c.assignment)?;
        tch::manual_seed(torch_seed(self.cfg.seed, e ^ 0x5eed));
        self.model.reset_head();
        self.opt.reset_state("top_layer.");
        Ok(c.reseeded)
    }
}
