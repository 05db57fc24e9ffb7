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
use super::step::{step_in, Sync};
use super::{Observer, Progress, Trainer};
use crate::checkpoint::{EpochFiles, Partial};
use crate::config::Labeler;
use crate::dist::shard;
use crate::error::{Error, Result};
use crate::infer::{self, Layer};
use crate::labels::size_stats;
use crate::metrics::{EpochMetrics, Phase};
use crate::nmi::{nmi, nmi_both, Normalization};
use uic_loader::seeds::{Stream, TorchStream};

/// What the labels phase did.
struct Labelling {
    /// The k-means labeler made this epoch's targets.
    kmeans: bool,
    /// Empty clusters k-means re-seeded.
    reseeded: usize,
    /// Time the labeler took.
    seconds: f64,
}

/// The steps phase so far: sums over all ranks (each step's exchange sums them), and this
/// rank's argmaxes by position in the epoch's order.
struct Steps {
    /// Global batches done (those before a resume included).
    batches: usize,
    /// Samples trained on.
    seen: u64,
    /// Sum of the per-sample losses.
    loss_sum: f64,
    /// Samples whose argmax equalled their target.
    agree: u64,
    /// Time spent waiting for batches (before a resume, and in this process).
    waited: Duration,
    /// Time spent after backward waiting for the ranks' gradient sum.
    synced: Duration,
    /// The rate of the epoch's first step.
    first_lr: f64,
    /// The epoch's order.
    order: Vec<usize>,
    /// This rank's positions in `order` from the batch this process started at; `preds`
    /// holds the argmaxes of the first `preds.len()` of them.
    positions: Vec<usize>,
    preds: Vec<i64>,
    /// Argmaxes recorded before a resume, by position (-1: none).
    carried: Option<Vec<i32>>,
}

/// How an epoch ended.
pub(super) enum EpochEnd {
    /// All its batches: the metrics, and whether the ranks agreed to stop after it.
    Done(EpochMetrics, bool),
    /// Stopped part-way on request, after a checkpoint at global batch `batch`.
    Stopped { batch: usize },
}

/// Where a resumed epoch starts: a checkpoint taken part-way through it.
#[derive(Debug)]
pub(super) struct Resume {
    pub(super) partial: Partial,
    pub(super) files: EpochFiles,
}

impl Trainer {
    /// Trains epoch `e` (0-based) of `phase`; `before` is the labels to compare the new
    /// ones with (default: the current targets). A checkpoint taken part-way through the
    /// epoch (`self.resume`) continues it.
    pub(super) fn train_epoch(
        &mut self,
        e: u64,
        phase: Phase,
        before: Option<Vec<u32>>,
        obs: &mut dyn Observer,
    ) -> Result<EpochEnd> {
        let resume = self.resume.take();
        let start = Instant::now()
            .checked_sub(Duration::from_secs_f64(
                resume.as_ref().map_or(0.0, |r| r.partial.seconds),
            ))
            .unwrap_or_else(Instant::now);
        // Each rank its own dropout masks (rank 0 keeps the single-process run's), not one
        // mask repeated on every rank's share of the batch.
        let rank = self.rank().0 as u64;
        tch::manual_seed(TorchStream::Dropout { epoch: e, rank }.seed(self.cfg.seed));
        let order = self.epoch_order(e);
        let (before, labelling, mut steps) = match resume {
            None => {
                let before = before.unwrap_or_else(|| self.labels.targets().to_vec());
                let labelling = self.make_labels(e, phase)?;
                let steps = self.fresh_steps(phase, order);
                (before, labelling, steps)
            }
            Some(r) => self.resumed_steps(e, r, order)?,
        };
        self.labels.begin_epoch();
        let stop = match self.train_steps(e, phase, &labelling, &before, start, &mut steps, obs)? {
            Some(stop) => stop,
            None => {
                return Ok(EpochEnd::Stopped {
                    batch: steps.batches,
                })
            }
        };
        self.combine_ranks(&mut steps, phase == Phase::Uic && !labelling.kmeans)?;
        let empty_fixed = self.repair(e, phase, &labelling);
        let m = self.epoch_metrics(e, phase, &before, &steps, empty_fixed, &labelling, start);
        Ok(EpochEnd::Done(m, stop))
    }

    /// The steps phase of an epoch from its start.
    fn fresh_steps(&self, phase: Phase, order: Vec<usize>) -> Steps {
        let (base_lr, total_steps) = self.schedule_of(phase);
        let (rank, world) = self.rank();
        let (_, positions) = shard(&order, self.cfg.batch_size, rank, world);
        Steps {
            batches: 0,
            seen: 0,
            loss_sum: 0.0,
            agree: 0,
            waited: Duration::ZERO,
            synced: Duration::ZERO,
            first_lr: self.cfg.schedule.lr(base_lr, self.step, total_steps),
            order,
            positions,
            preds: Vec::new(),
            carried: None,
        }
    }

    /// The steps phase of an epoch a checkpoint stopped part-way: its sums, its argmaxes
    /// so far, and libtorch's generator where this rank's stood (at another world size,
    /// a generator seeded afresh for the rest of the epoch).
    fn resumed_steps(
        &self,
        e: u64,
        r: Resume,
        order: Vec<usize>,
    ) -> Result<(Vec<u32>, Labelling, Steps)> {
        let p = &r.partial;
        let (rank, world) = self.rank();
        if r.files.records.len() != order.len() || r.files.before.len() != self.file.len() {
            return Err(Error::Config(format!(
                "the checkpoint part-way through epoch {} holds {} argmaxes for an epoch of {}:                  it was written for other data or settings",
                e + 1,
                r.files.records.len(),
                order.len()
            )));
        }
        let device = self.model.device();
        let restored = r.files.rng.len() == world
            && uic_c10d::rng::set_state(device, &r.files.rng[rank]).is_ok();
        if !restored {
            let stream = TorchStream::DropoutAfterResume {
                epoch: e,
                rank: rank as u64,
                batches: p.batches,
            };
            tch::manual_seed(stream.seed(self.cfg.seed));
        }
        let batches = p.batches as usize;
        let (_, mut positions) = shard(&order, self.cfg.batch_size, rank, world);
        let from = positions.partition_point(|&q| q < batches * self.cfg.batch_size);
        positions.drain(..from);
        let labelling = Labelling {
            kmeans: self.cfg.labeler == Labeler::Kmeans && e < self.cfg.epochs,
            reseeded: p.reseeded as usize,
            seconds: p.labeling_seconds,
        };
        let steps = Steps {
            batches,
            seen: p.seen,
            loss_sum: p.loss_sum,
            agree: p.agree,
            waited: Duration::from_secs_f64(p.waited),
            synced: Duration::from_secs_f64(p.sync_waited),
            first_lr: p.first_lr,
            order,
            positions,
            preds: Vec::new(),
            carried: Some(r.files.records),
        };
        Ok((r.files.before, labelling, steps))
    }

    /// The base rate and the steps of `phase`'s schedule.
    fn schedule_of(&self, phase: Phase) -> (f64, u64) {
        let (base_lr, phase_epochs) = match phase {
            Phase::Uic => (self.cfg.lr, self.cfg.epochs),
            Phase::Fft => (self.cfg.fft_lr, self.cfg.fft_epochs),
        };
        (base_lr, phase_epochs * self.steps_per_epoch())
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

    /// Phase 2: the epoch's batches from `s.batches` on through the step, reporting
    /// progress; in UIC epochs each sample's argmax is kept by position for the label table.
    /// Each step's exchange also sums the ranks' requests: to checkpoint (a stop, or
    /// `checkpoint_every`'s time on rank 0) and to stop, so every rank acts on them at the
    /// same step. Returns whether the ranks asked to stop at the epoch's last step, or
    /// `None` after a checkpoint and stop part-way.
    #[allow(clippy::too_many_arguments)]
    fn train_steps(
        &mut self,
        e: u64,
        phase: Phase,
        labelling: &Labelling,
        before: &[u32],
        start: Instant,
        s: &mut Steps,
        obs: &mut dyn Observer,
    ) -> Result<Option<bool>> {
        let (base_lr, total_steps) = self.schedule_of(phase);
        let rank = self.rank().0;
        let record = phase == Phase::Uic && !labelling.kmeans;
        let global_len = s.order.len();
        let b = self.cfg.batch_size;
        let batches = self.steps_per_epoch() as usize;
        let (h, w) = (self.cfg.input_size as i64, self.cfg.input_size as i64);
        let waited_before = s.waited;
        let mut feed = self.feed(e, &s.order, s.batches)?;
        let mut targets = Vec::with_capacity(b);
        let mut stop_at_end = false;
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
            let global_n = (global_len - s.batches * b).min(b);
            let want_stop = self.stop.requested();
            let want_checkpoint = want_stop || (rank == 0 && self.checkpoint_due());
            let flags = [
                f64::from(u8::from(want_checkpoint)),
                f64::from(u8::from(want_stop)),
            ];
            let sync = Sync {
                group: &*self.group,
                share: n as f64 / global_n as f64,
                step: self.step,
            };
            let (model, opt, done) = (&self.model, &mut self.opt, s.batches);
            let out = batch
                .with_pixels(h, w, |x| step_in(model, opt, x, &y, lr, sync, &flags))
                .map_err(|err| match err {
                    Error::NonFinite { value, .. } => Error::NonFinite {
                        epoch: e + 1,
                        batch: done,
                        value,
                    },
                    other => other,
                })?;
            drop(batch);
            self.step += 1;
            s.agree += out.agree;
            s.synced += out.sync_wait;
            s.seen += global_n as u64;
            s.loss_sum += out.loss * global_n as f64;
            if record {
                s.preds.extend_from_slice(&out.pred);
            }
            s.batches += 1;
            let secs = start.elapsed().as_secs_f64();
            let waited = waited_before + feed.waited();
            obs.batch(&Progress {
                epoch: e + 1,
                epochs: self.cfg.epochs + self.cfg.fft_epochs,
                batch: s.batches,
                batches,
                loss: s.loss_sum / s.seen as f64,
                images_per_s: s.seen as f64 / secs,
                data_wait: waited.as_secs_f64() / secs,
            });
            let (checkpoint, stop) = (out.flags[0] > 0.0, out.flags[1] > 0.0);
            if s.batches == batches {
                // The epoch's own checkpoint follows at once.
                stop_at_end = stop;
            } else if checkpoint {
                s.waited = waited;
                self.save_partial(s, labelling, before, secs, record)?;
                if stop {
                    self.end_feed(feed)?;
                    return Ok(None);
                }
            }
        }
        if s.batches != batches {
            return Err(Error::Internal(format!(
                "the loader stopped after {} of {batches} batches of epoch {}",
                s.batches,
                e + 1
            )));
        }
        s.waited = waited_before + feed.waited();
        self.end_feed(feed)?;
        Ok(Some(stop_at_end))
    }

    /// Every rank's argmaxes so far, by position in the epoch's order (-1: none yet), with
    /// those recorded before a resume.
    fn gathered_records(&self, s: &Steps) -> Result<Vec<i64>> {
        let recorded = &s.positions[..s.preds.len()];
        let mut all = self.group.gather_by_position(
            recorded,
            &s.preds,
            s.order.len(),
            "gathering the epoch's labels",
        )?;
        if let Some(c) = &s.carried {
            for (a, &c) in all.iter_mut().zip(c) {
                if *a < 0 {
                    *a = i64::from(c);
                }
            }
        }
        Ok(all)
    }

    /// A checkpoint part-way through the epoch, after global batch `s.batches`: the ranks'
    /// argmaxes so far and generator states are gathered; rank 0 writes.
    fn save_partial(
        &mut self,
        s: &Steps,
        labelling: &Labelling,
        before: &[u32],
        secs: f64,
        record: bool,
    ) -> Result<()> {
        let records: Vec<i32> = if record {
            self.gathered_records(s)?
                .into_iter()
                .map(|v| v as i32)
                .collect()
        } else {
            vec![-1; s.order.len()]
        };
        let mine = uic_c10d::rng::state(self.model.device()).map_err(|err| {
            Error::Internal(format!("cannot read libtorch's generator state: {err}"))
        })?;
        let as_f64: Vec<f64> = mine.iter().map(|&b| f64::from(b)).collect();
        let rng: Vec<Vec<u8>> = self
            .group
            .allgather_f64(&as_f64, "gathering the generator states")?
            .into_iter()
            .map(|v| v.into_iter().map(|b| b as u8).collect())
            .collect();
        let partial = Partial {
            batches: s.batches as u64,
            seen: s.seen,
            loss_sum: s.loss_sum,
            agree: s.agree,
            first_lr: s.first_lr,
            seconds: secs,
            waited: s.waited.as_secs_f64(),
            labeling_seconds: labelling.seconds,
            reseeded: labelling.reseeded as u64,
            sync_waited: s.synced.as_secs_f64(),
        };
        let files = EpochFiles {
            records,
            before: before.to_vec(),
            rng,
        };
        self.write_checkpoint(Some((partial, files)))
    }

    /// At the epoch's end: the wait (the worst rank's) and the substituted samples summed
    /// over the ranks, and, when `record`, every rank's argmaxes recorded into the label
    /// table in the order of the global epoch, as one process records them.
    fn combine_ranks(&mut self, s: &mut Steps, record: bool) -> Result<()> {
        let substituted = self
            .loader
            .stats()
            .substituted
            .load(std::sync::atomic::Ordering::Relaxed) as f64;
        let all = self.group.allgather_f64(
            &[s.waited.as_secs_f64(), substituted, s.synced.as_secs_f64()],
            "summing the epoch's counts",
        )?;
        s.waited = Duration::from_secs_f64(all.iter().map(|v| v[0]).fold(0.0, f64::max));
        s.synced = Duration::from_secs_f64(all.iter().map(|v| v[2]).fold(0.0, f64::max));
        self.substituted_elsewhere =
            all.iter().map(|v| v[1] as u64).sum::<u64>() - substituted as u64;
        if !record {
            return Ok(());
        }
        let all = self.gathered_records(s)?;
        let (idx, preds): (Vec<u32>, Vec<i64>) = all
            .iter()
            .enumerate()
            .filter(|(_, &p)| p >= 0)
            .map(|(pos, &p)| (s.order[pos] as u32, p))
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
                    .end_epoch(&mut Stream::EmptySplit { epoch: e }.rng(self.cfg.seed))
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
            sync_wait: s.synced.as_secs_f64() / secs,
        }
    }

    /// Global batches in an epoch, as [`shard`] cuts them: a partial last batch only if
    /// every rank gets 2 samples of it (one process: unless it holds a single sample).
    pub(super) fn steps_per_epoch(&self) -> u64 {
        let (n, b) = (self.epoch_len(), self.cfg.batch_size);
        (n / b + usize::from(n % b >= 2 * self.rank().1)) as u64
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

    /// Starts epoch `e`'s batches in `order`, from global batch `start`, from the configured
    /// decoder: nvJPEG workers, or the CPU loader (with an uploader thread when the model is
    /// on a GPU). Each rank loads its share of every global batch ([`shard`]).
    fn feed(&mut self, e: u64, order: &[usize], start: usize) -> Result<Feed> {
        let ahead = self.cfg.batches_ahead;
        #[cfg(feature = "nvjpeg")]
        if !self.gpu_loaders.is_empty() {
            // One process only (`check_distributed`): the shard is the whole order.
            let loaders = std::mem::take(&mut self.gpu_loaders);
            let n = loaders[0].num_batches(order.len());
            let order = std::sync::Arc::new(order.to_vec());
            let augment = self.device_augment;
            let a = super::feed::Ahead::start(
                "uic-nvjpeg",
                loaders,
                n.saturating_sub(start),
                ahead,
                move |l, b| {
                    let g = l.batch(e, &order, start + b)?;
                    let pixels = match &augment {
                        Some(a) => a.apply(&g.pixels, &g.drawn)?,
                        None => g.pixels,
                    };
                    Ok(super::feed::DeviceBatch {
                        pixels,
                        indices: g.indices,
                        substituted: g.substituted,
                    })
                },
            )?;
            return Ok(Feed::Nvjpeg(a));
        }
        let (rank, world) = self.rank();
        let (local, positions) = shard(order, self.cfg.batch_size, rank, world);
        let epoch = self.loader.epoch_at(e, local, positions, start)?;
        let device = self.model.device();
        let side = i64::from(self.cfg.input_size);
        if device == Device::Cpu {
            return Ok(Feed::Cpu(
                epoch,
                self.device_augment.map(|a| (a, (side, side))),
            ));
        }
        Feed::upload(
            epoch,
            start,
            device,
            (side, side),
            ahead,
            self.device_augment,
        )
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
        let seed = Stream::KMeans { epoch: e }.seed(self.cfg.seed);
        let c = crate::kmeans::kmeans(&x, self.cfg.k, self.cfg.kmeans_iters, seed);
        self.labels.set_targets(c.assignment)?;
        tch::manual_seed(TorchStream::HeadReset { epoch: e }.seed(self.cfg.seed));
        self.model.reset_head();
        self.opt.reset_state("top_layer.");
        Ok(c.reseeded)
    }
}
