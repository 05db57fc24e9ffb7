//! The UIC training loop.
//!
//! Each epoch ([`epoch`]): draw a class-balanced order from the label table, stream augmented
//! batches from the loader ([`feed`]), train on the frozen targets with plain cross-entropy
//! ([`step`]), and record each sample's argmax into the table's second buffer. At the end of
//! the epoch, refill empty classes and swap the buffers; then write the metrics line and an
//! atomic checkpoint. Optional further fine-tuning (FFT) follows with labels fixed by a
//! centre-crop pass.

mod epoch;
pub(crate) mod feed;
mod lock;
mod step;

pub use lock::RunLock;
pub use step::{train_step, train_step_with, Sync};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uic_loader::{Loader, RecordFile};

use crate::checkpoint::{self, DataId, EpochFiles, Partial, State};
use crate::config::{set_threads, InitLabels, TrainConfig, PER_RANK, RESUME_MAY_CHANGE};
use crate::data::train_loader_config;
use crate::device_augment::DeviceAugment;
use crate::dist::{self, Collective, Dist, Solo};
use crate::error::{Error, Result};
use crate::infer;
use crate::labels::LabelTable;
use crate::metrics::{self, EpochMetrics, Phase};
use crate::model::Model;
use crate::sgd::Sgd;
use tch::Tensor;
use uic_loader::seeds::Stream;

/// What a running epoch reports after each batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// 1-based epoch.
    pub epoch: u64,
    /// Epochs in the run (UIC and fine-tuning).
    pub epochs: u64,
    /// Batches done in this epoch.
    pub batch: usize,
    /// Batches in this epoch.
    pub batches: usize,
    /// Mean loss so far in this epoch.
    pub loss: f64,
    /// Images per second so far in this epoch.
    pub images_per_s: f64,
    /// Share of this epoch's time spent waiting for data so far.
    pub data_wait: f64,
}

/// Receives progress; the `uic` command draws bars from it. Every method has a no-op default.
pub trait Observer {
    /// After each batch.
    fn batch(&mut self, _p: &Progress) {}
    /// After each epoch's checkpoint.
    fn epoch(&mut self, _m: &EpochMetrics) {}
    /// A one-line notice (resuming, fine-tuning starts, ...).
    fn note(&mut self, _msg: &str) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;
impl Observer for Quiet {}

/// Asks a running [`Trainer`] to stop: at the next step it writes a checkpoint (part-way
/// through the epoch if need be) and [`Trainer::run`] returns [`Ended::Stopped`]. Safe to
/// call from a signal handler's thread. On several ranks, a request on any one stops all of
/// them at the same step.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Requests the stop.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How [`Trainer::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Ended {
    /// Every epoch is done.
    Finished,
    /// Stopped on a [`StopHandle`] request, after a checkpoint holding `epochs` whole epochs
    /// and `batches` batches of the next (0 when it stopped at an epoch's end).
    Stopped {
        /// Epochs completed.
        epochs: u64,
        /// Batches of the next epoch done.
        batches: u64,
    },
}

/// A training run bound to its data file and output folder.
#[derive(Debug)]
pub struct Trainer {
    cfg: TrainConfig,
    out: PathBuf,
    file: Arc<RecordFile>,
    data_id: DataId,
    model: Model,
    opt: Sgd,
    labels: LabelTable,
    loader: Loader,
    /// The preset's steps after the flip, when they run on the device (`augment_on`).
    device_augment: Option<DeviceAugment>,
    /// The nvJPEG decoders when `decoder = nvjpeg`, one per worker thread (lent to the
    /// workers during each epoch).
    #[cfg(feature = "nvjpeg")]
    gpu_loaders: Vec<uic_loader::nvjpeg::NvJpegLoader>,
    /// Samples replaced by grey in batches that did not come from `loader` (nvJPEG's).
    substituted_outside_loader: u64,
    /// Samples replaced by grey on the other ranks (data-parallel runs), up to the last epoch.
    substituted_elsewhere: u64,
    epoch: u64,
    step: u64,
    last_metrics: Option<EpochMetrics>,
    /// The ranks: [`Solo`], or the data-parallel group.
    group: Box<dyn Collective>,
    /// Where the next epoch starts, when a checkpoint part-way through it was restored.
    resume: Option<epoch::Resume>,
    /// Set to stop at the next step.
    stop: StopHandle,
    /// When the last checkpoint was written (for `checkpoint_every`).
    last_checkpoint: Instant,
    /// Rank 0's hold on the output folder.
    _lock: Option<RunLock>,
}

/// nvJPEG decoder threads (`decoder = nvjpeg`): one thread's per-image kernel launches
/// cannot keep up with a fast GPU.
#[cfg(feature = "nvjpeg")]
const NVJPEG_WORKERS: usize = 4;

impl Trainer {
    /// Prepares a run of `cfg` on record file `data`, writing into folder `out`. With
    /// `resume`, continues from `out`'s checkpoint if there is one; `cfg` must then equal the
    /// checkpoint's settings except `epochs`, `fft_epochs`, `threads`, `torch_threads` and
    /// `batches_ahead` (take the checkpoint's with [`checkpoint::find`] first).
    ///
    /// # Errors
    /// Invalid settings, unreadable data, a folder that already holds a run (without
    /// `resume`), or a checkpoint from another run or data file.
    pub fn new(cfg: TrainConfig, data: &Path, out: &Path, resume: bool) -> Result<Self> {
        Trainer::new_in(cfg, data, out, resume, None)
    }

    /// [`Trainer::new`] as one rank of a data-parallel run (`dist`), or of none. Every rank
    /// checks that all were started with the same settings and data; rank 0 alone opens
    /// `out` (and restores its checkpoint, written by any number of ranks), then sends the
    /// run's state to the others.
    ///
    /// # Errors
    /// As [`Trainer::new`]; settings that differ between ranks, a batch size the ranks
    /// cannot share, and [`Error::Collective`].
    pub fn new_in(
        cfg: TrainConfig,
        data: &Path,
        out: &Path,
        resume: bool,
        dist: Option<Dist>,
    ) -> Result<Self> {
        let mut group: Box<dyn Collective> = match dist {
            Some(d) => Box::new(d),
            None => Box::new(Solo),
        };
        // Resuming, rank 0's settings (the checkpoint's) are the run's: a rank on another
        // node needs neither the run folder nor --config, only its own machine's sizes.
        let cfg = if resume && group.world() > 1 {
            adopt_rank0_settings(&*group, cfg)?
        } else {
            cfg
        };
        cfg.validate()?;
        group.set_overlap(cfg.overlap_sync);
        check_distributed(&cfg, group.world())?;
        let file = Arc::new(RecordFile::open(data)?);
        check_fits(&cfg, file.len())?;
        let data_id = DataId {
            path: data.display().to_string(),
            samples: file.len() as u64,
            file_len: file.header().file_len,
        };
        if group.world() > 1 {
            group.check_same(data_hash(&data_id, &file), "data file")?;
            check_same_settings(&*group, &cfg)?;
        }
        // Everything that can refuse the settings runs before the output folder is made.
        let mut t = Trainer::build(cfg, file, data_id, out, group)?;
        let opened = if t.rank().0 == 0 {
            open_out(out, resume).and_then(|(lock, existing)| {
                t._lock = Some(lock);
                match existing {
                    Some(ck) => t.restore(ck),
                    None => t.start_fresh(),
                }
            })
        } else {
            Ok(())
        };
        t.share_state(opened.is_ok())?;
        opened.map(|()| t)
    }

    /// The run's parts at epoch 0: threads, model, optimiser, loaders, random labels.
    fn build(
        cfg: TrainConfig,
        file: Arc<RecordFile>,
        data_id: DataId,
        out: &Path,
        group: Box<dyn Collective>,
    ) -> Result<Self> {
        let n = file.len();
        set_threads(&cfg);
        let device = match cfg.device.resolve()? {
            tch::Device::Cuda(_) if group.world() > 1 => {
                tch::Device::Cuda(crate::config::rank_gpu(group.local_rank()))
            }
            device => device,
        };
        let model = Model::init(&cfg.model(), cfg.seed, device)?;
        let opt = Sgd::new(model.named_parameters(), cfg.momentum, cfg.weight_decay);
        let mut loader_cfg = train_loader_config(&cfg, n);
        // Each rank loads its share of every global batch; the shards decide the batches
        // (see `dist::shard`), the loader only cuts them.
        loader_cfg.batch_size = cfg.batch_size / group.world();
        loader_cfg.drop_last = false;
        let loader = Loader::new(file.clone(), loader_cfg)?;
        #[cfg(feature = "nvjpeg")]
        let gpu_loaders = match cfg.decoder {
            crate::config::Decoder::Nvjpeg => (0..NVJPEG_WORKERS)
                .map(|_| {
                    uic_loader::nvjpeg::NvJpegLoader::new(
                        file.clone(),
                        train_loader_config(&cfg, n),
                        model.device(),
                    )
                })
                .collect::<uic_loader::Result<Vec<_>>>()?,
            crate::config::Decoder::Cpu => Vec::new(),
        };
        let device_augment = cfg
            .augments_on_device()
            .then(|| DeviceAugment::new(uic_augment::Augment::preset(cfg.preset)))
            .flatten();
        Ok(Trainer {
            labels: LabelTable::random(n, cfg.k, &mut Stream::InitLabels.rng(cfg.seed))?,
            cfg,
            out: out.to_path_buf(),
            file,
            data_id,
            model,
            opt,
            loader,
            device_augment,
            #[cfg(feature = "nvjpeg")]
            gpu_loaders,
            substituted_outside_loader: 0,
            substituted_elsewhere: 0,
            epoch: 0,
            step: 0,
            last_metrics: None,
            group,
            resume: None,
            stop: StopHandle::default(),
            last_checkpoint: Instant::now(),
            _lock: None,
        })
    }

    /// Rank 0's state (epoch, step, weights, BN buffers, momentum, labels, and a partial
    /// epoch's checkpoint) sent to every rank, after rank 0 has restored or started the run
    /// (`ok`: it could). The other ranks need neither the run folder nor its config.
    fn share_state(&mut self, ok: bool) -> Result<()> {
        if self.group.world() == 1 {
            return Ok(()); // nothing to send
        }
        let d = &*self.group;
        let meta = Tensor::from_slice(&[
            i64::from(ok),
            self.epoch as i64,
            self.step as i64,
            i64::from(self.opt.has_momentum()),
        ]);
        d.broadcast(std::slice::from_ref(&meta), "starting the run")?;
        if !ok {
            return Ok(()); // rank 0: the caller returns its own error
        }
        let meta: Vec<i64> = Vec::try_from(&meta)?;
        if meta[0] == 0 {
            // Rank 0 reports its own error; the others name it.
            return Err(Error::Config(
                "rank 0 could not start the run (its output says why)".into(),
            ));
        }
        (self.epoch, self.step) = (meta[1] as u64, meta[2] as u64);
        d.broadcast(&self.model.state_tensors(), "sending rank 0's weights")?;
        if meta[3] == 1 {
            d.broadcast(&self.opt.momentum_buffers(), "sending rank 0's momentum")?;
        }
        let labels: Vec<i64> = self
            .labels
            .targets()
            .iter()
            .map(|&l| i64::from(l))
            .collect();
        let labels = Tensor::from_slice(&labels);
        d.broadcast(std::slice::from_ref(&labels), "sending rank 0's labels")?;
        let labels: Vec<i64> = Vec::try_from(&labels)?;
        self.labels
            .set_targets(labels.into_iter().map(|l| l as u32).collect())?;
        self.share_resume()
    }

    /// Rank 0's partial epoch (its [`Partial`] and epoch files), when it restored one.
    fn share_resume(&mut self) -> Result<()> {
        let d = &*self.group;
        let text = match &self.resume {
            Some(r) => serde_json::to_string(&(
                &r.partial,
                &r.files.records,
                &r.files.before,
                &r.files.rng,
            ))
            .map_err(|e| Error::Internal(format!("cannot send the partial epoch: {e}")))?,
            None => String::new(),
        };
        let bytes = d.broadcast_bytes(text.as_bytes(), "sending rank 0's partial epoch")?;
        if d.rank() == 0 || bytes.is_empty() {
            return Ok(());
        }
        type Sent = (Partial, Vec<i32>, Vec<u32>, Vec<Vec<u8>>);
        let (partial, records, before, rng): Sent = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Internal(format!("rank 0's partial epoch: {e}")))?;
        self.resume = Some(epoch::Resume {
            partial,
            files: EpochFiles {
                records,
                before,
                rng,
            },
        });
        Ok(())
    }

    /// This rank's place: `(rank, world)`, `(0, 1)` in one process.
    pub fn rank(&self) -> (usize, usize) {
        (self.group.rank(), self.group.world())
    }

    /// A handle that stops [`Trainer::run`] at the next step, with a checkpoint.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// A new run: its `config.toml`, and no metrics of an earlier one.
    fn start_fresh(&self) -> Result<()> {
        self.write_config()?;
        let m = self.out.join("metrics.jsonl");
        if m.exists() {
            std::fs::remove_file(&m).map_err(|e| Error::io("remove", &m, e))?;
        }
        Ok(())
    }

    /// `config.toml`: the settings this run goes on with (written atomically).
    fn write_config(&self) -> Result<()> {
        let p = self.out.join("config.toml");
        let text = toml::to_string(&self.cfg)
            .map_err(|e| Error::Internal(format!("cannot write the config as TOML: {e}")))?;
        uic_loader::write_atomic(&p, text.as_bytes())?;
        Ok(())
    }

    fn restore(&mut self, ck: checkpoint::Checkpoint) -> Result<()> {
        let s = &ck.state;
        if s.data.samples != self.data_id.samples || s.data.file_len != self.data_id.file_len {
            return Err(Error::checkpoint(
                &ck.dir,
                format!(
                    "it trained on {} ({} images, {} bytes), not on this file ({} images, {} bytes)",
                    s.data.path,
                    s.data.samples,
                    s.data.file_len,
                    self.data_id.samples,
                    self.data_id.file_len
                ),
            ));
        }
        let theirs = s.config.with_settings_of(&self.cfg, RESUME_MAY_CHANGE);
        if theirs != self.cfg {
            let changed: Vec<String> = theirs
                .differences(&self.cfg)
                .into_iter()
                .map(|(k, was, now)| format!("{k}: checkpoint {was}, now {now}"))
                .collect();
            return Err(Error::checkpoint(
                &ck.dir,
                format!(
                    "its settings differ from this run's ({}); only {} may change on resume",
                    changed.join("; "),
                    RESUME_MAY_CHANGE.join(", ")
                ),
            ));
        }
        checkpoint::load_weights(&ck.dir, &mut self.model)?;
        checkpoint::load_optimizer(&ck.dir, &mut self.opt, self.model.device())?;
        let labels = checkpoint::load_labels(&ck.dir)?;
        self.labels
            .set_targets(labels)
            .map_err(|e| Error::checkpoint(&ck.dir, e.to_string()))?;
        self.epoch = s.epoch;
        self.step = s.step;
        self.last_metrics = s.last_metrics.clone();
        if let Some(partial) = &s.partial {
            self.resume = Some(epoch::Resume {
                partial: partial.clone(),
                files: checkpoint::load_epoch(&ck.dir)?,
            });
        }
        // The metrics file may hold epochs after the checkpoint (a crash between the two
        // writes is impossible in that order, but a crash mid-epoch leaves nothing extra);
        // keep exactly the checkpoint's epochs.
        let mpath = self.out.join("metrics.jsonl");
        let mut lines = if mpath.exists() {
            metrics::read_metrics(&mpath)?
        } else {
            Vec::new()
        };
        lines.retain(|m| m.epoch <= s.epoch);
        if let Some(last) = &s.last_metrics {
            if lines.last().map(|m| m.epoch) != Some(last.epoch) {
                lines.push(last.clone());
            }
        }
        metrics::rewrite(&mpath, &lines)?;
        // What runs from here (a new epoch count, thread count...). A resume with nothing
        // left to do runs nothing, so the file keeps saying what ran.
        if self.epoch < self.cfg.epochs + self.cfg.fft_epochs {
            self.write_config()?;
        }
        Ok(())
    }

    /// The settings.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The current label table's targets.
    pub fn labels(&self) -> &[u32] {
        self.labels.targets()
    }

    /// Epochs completed (restored ones included).
    pub fn epochs_done(&self) -> u64 {
        self.epoch
    }

    /// Whether the run continues a checkpoint taken part-way through an epoch.
    pub fn resumes_part_way(&self) -> bool {
        self.resume.is_some()
    }

    /// The output folder.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Runs the remaining epochs (UIC, then fine-tuning), checkpointing after each (and
    /// part-way through one every `checkpoint_every` minutes). A [`StopHandle`] request
    /// ends it at the next step, after a checkpoint: [`Ended::Stopped`].
    ///
    /// # Errors
    /// A non-finite loss (the last checkpoint is kept), a loader failure, a failed write.
    pub fn run(&mut self, obs: &mut dyn Observer) -> Result<Ended> {
        let total = self.cfg.epochs + self.cfg.fft_epochs;
        if let Some(r) = &self.resume {
            obs.note(&format!(
                "resuming part-way through epoch {} of {total}, after batch {} of {}",
                self.epoch + 1,
                r.partial.batches,
                self.steps_per_epoch()
            ));
        } else if self.epoch > 0 {
            obs.note(&format!("resuming after epoch {} of {total}", self.epoch));
        } else if self.cfg.init_labels == InitLabels::Inference {
            obs.note("initial labels from one centre-crop inference pass");
            let l = self.predict_labels()?;
            self.labels.set_targets(l)?;
        }
        while self.epoch < total {
            let e = self.epoch;
            let phase = if e < self.cfg.epochs {
                Phase::Uic
            } else {
                Phase::Fft
            };
            // The first fine-tuning epoch compares its fixed labels with the last UIC ones
            // (a resumed one has both in its checkpoint).
            let mut before = None;
            if phase == Phase::Fft && e == self.cfg.epochs && self.resume.is_none() {
                obs.note("further fine-tuning: labels fixed from a centre-crop pass");
                before = Some(self.labels.targets().to_vec());
                let l = self.predict_labels()?;
                self.labels.set_targets(l)?;
                self.step = 0;
            }
            let (m, stop) = match self.train_epoch(e, phase, before, obs)? {
                epoch::EpochEnd::Done(m, stop) => (m, stop),
                epoch::EpochEnd::Stopped { batch } => {
                    return Ok(Ended::Stopped {
                        epochs: self.epoch,
                        batches: batch as u64,
                    })
                }
            };
            self.epoch += 1;
            self.agree_after_epoch()?;
            self.last_metrics = Some(m.clone());
            self.write_checkpoint(None)?;
            if self.rank().0 == 0 {
                metrics::append(&self.out.join("metrics.jsonl"), &m)?;
            }
            obs.epoch(&m);
            if stop && self.epoch < total {
                return Ok(Ended::Stopped {
                    epochs: self.epoch,
                    batches: 0,
                });
            }
        }
        Ok(Ended::Finished)
    }

    /// Rank 0 writes a checkpoint: after an epoch (then its metrics line follows: a crash
    /// between the two loses a line that [`Trainer::restore`] writes again), or part-way
    /// through one with `partial`.
    fn write_checkpoint(&mut self, partial: Option<(Partial, EpochFiles)>) -> Result<()> {
        self.last_checkpoint = Instant::now();
        if self.rank().0 != 0 {
            return Ok(());
        }
        let (partial, files) = match partial {
            Some((p, f)) => (Some(p), Some(f)),
            None => (None, None),
        };
        let state = State {
            format_version: if partial.is_some() {
                checkpoint::FORMAT_VERSION_PARTIAL
            } else {
                checkpoint::FORMAT_VERSION
            },
            uic_version: env!("CARGO_PKG_VERSION").to_string(),
            epoch: self.epoch,
            step: self.step,
            config: self.cfg.clone(),
            data: self.data_id.clone(),
            last_metrics: self.last_metrics.clone(),
            partial,
        };
        checkpoint::save(
            &self.out,
            &state,
            &self.model,
            &self.opt,
            self.labels.targets(),
            files.as_ref(),
        )
    }

    /// Whether `checkpoint_every` minutes have passed since the last checkpoint.
    fn checkpoint_due(&self) -> bool {
        self.cfg.checkpoint_every > 0.0
            && self.last_checkpoint.elapsed()
                >= Duration::from_secs_f64(self.cfg.checkpoint_every * 60.0)
    }

    /// The argmax of the model (eval mode) on the centre crop of every image.
    ///
    /// # Errors
    /// A loader or libtorch failure.
    pub fn predict_labels(&self) -> Result<Vec<u32>> {
        let n = self.file.len();
        let d = &*self.group;
        // Each rank predicts a contiguous share; all gather the whole.
        let (r, w) = (d.rank(), d.world());
        let mine: Vec<usize> = (n * r / w..n * (r + 1) / w).collect();
        let local = infer::assign(&self.model, &self.cfg, &self.file, &mine)?;
        let local: Vec<i64> = local.into_iter().map(i64::from).collect();
        let all = d.gather_by_position(&mine, &local, n, "gathering the centre-crop labels")?;
        all.into_iter()
            .map(|l| u32::try_from(l).map_err(|_| Error::Internal("a sample had no label".into())))
            .collect()
    }

    /// After a data-parallel epoch: rank 0's BN statistics on every rank (each rank's are of
    /// its own shares), then a check that all ranks hold bit-identical weights, buffers and
    /// labels, which identical averaged gradients guarantee.
    fn agree_after_epoch(&self) -> Result<()> {
        if self.group.world() == 1 {
            return Ok(()); // nothing to compare
        }
        let d = &*self.group;
        let buffers: Vec<Tensor> = self
            .model
            .state_tensors()
            .into_iter()
            .filter(|t| !t.requires_grad())
            .collect();
        d.broadcast(&buffers, "sending rank 0's batch-norm statistics")?;
        let mut h = dist::hash_tensors(&self.model.state_tensors())?;
        for l in self.labels.targets() {
            h = dist::hash_bytes(h, &l.to_le_bytes());
        }
        d.check_same(
            h,
            &format!("weights or label table after epoch {}", self.epoch),
        )
    }
}

/// Refuses settings a data-parallel run of `world` ranks cannot keep the meaning of.
fn check_distributed(cfg: &TrainConfig, world: usize) -> Result<()> {
    if world == 1 {
        return Ok(());
    }
    if cfg.batch_size.checked_rem(world) != Some(0) || cfg.batch_size / world < 2 {
        return Err(Error::Config(format!(
            "batch size {} cannot be shared by {world} ranks: batch_size is the global batch, \
             and must be a multiple of the rank count with at least 2 samples per rank",
            cfg.batch_size
        )));
    }
    if cfg.labeler == crate::config::Labeler::Kmeans {
        return Err(Error::Config(
            "the k-means labeler runs in one process only: use labeler uic, or one rank".into(),
        ));
    }
    if cfg.decoder == crate::config::Decoder::Nvjpeg {
        return Err(Error::Config(
            "the nvJPEG decoder runs in one process only for now: use decoder cpu with \
             several ranks"
                .into(),
        ));
    }
    Ok(())
}

/// The settings every rank must share: all but [`PER_RANK`], which each rank may size to
/// its machine.
fn rank_settings(cfg: &TrainConfig) -> TrainConfig {
    cfg.with_settings_of(&TrainConfig::default(), PER_RANK)
}

/// Refuses to go on unless every rank has the same [`rank_settings`]. On a difference, every
/// rank learns it (the comparison is a collective); rank 0 then sends its settings, and each
/// rank that differs names the settings with both values.
///
/// # Errors
/// [`Error::Config`], or [`Error::Collective`].
fn check_same_settings(d: &dyn Collective, cfg: &TrainConfig) -> Result<()> {
    let mine = rank_settings(cfg);
    let text = toml::to_string(&mine).unwrap_or_default();
    let Err(e) = d.check_same(
        dist::hash_bytes(dist::HASH_START, text.as_bytes()),
        "settings",
    ) else {
        return Ok(());
    };
    let zero = d.broadcast_bytes(text.as_bytes(), "sending rank 0's settings")?;
    let Ok(zero) = toml::from_str::<TrainConfig>(&String::from_utf8_lossy(&zero)) else {
        return Err(e);
    };
    let r = d.rank();
    let diffs = zero.differences(&mine);
    if diffs.is_empty() {
        return Err(e);
    }
    let each: Vec<String> = diffs
        .into_iter()
        .map(|(k, a, b)| format!("{k}: rank 0 {a}, rank {r} {b}"))
        .collect();
    Err(Error::Config(format!(
        "rank {r}'s settings differ from rank 0's ({}): start every rank with the same settings",
        each.join("; ")
    )))
}

/// Rank 0's settings on every rank, each rank keeping its own [`PER_RANK`] values.
///
/// # Errors
/// [`Error::Collective`], or rank 0's settings unreadable.
fn adopt_rank0_settings(d: &dyn Collective, cfg: TrainConfig) -> Result<TrainConfig> {
    let text = toml::to_string(&cfg)
        .map_err(|e| Error::Internal(format!("cannot write the config as TOML: {e}")))?;
    let zero = d.broadcast_bytes(text.as_bytes(), "sending rank 0's settings")?;
    if d.rank() == 0 {
        return Ok(cfg);
    }
    let zero: TrainConfig = toml::from_str(&String::from_utf8_lossy(&zero))
        .map_err(|e| Error::Internal(format!("rank 0's settings: {e}")))?;
    Ok(zero.with_settings_of(&cfg, PER_RANK))
}

/// What every rank must share of the data: a fingerprint of the whole file from its index,
/// without reading the images: the size, the tables' CRC-32C, and every record's length,
/// label and CRC-32C (which covers the record's bytes). Two copies of one file agree; a
/// different file, order or labelling does not.
fn data_hash(id: &DataId, file: &RecordFile) -> u64 {
    let mut h = dist::HASH_START;
    h = dist::hash_bytes(h, &id.samples.to_le_bytes());
    h = dist::hash_bytes(h, &id.file_len.to_le_bytes());
    h = dist::hash_bytes(h, &file.header().tables_crc.to_le_bytes());
    for i in 0..file.len() {
        let e = file.record_entry(i);
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&e.crc.to_le_bytes());
        b[4..8].copy_from_slice(&e.len.to_le_bytes());
        b[8..].copy_from_slice(&e.label.to_le_bytes());
        h = dist::hash_bytes(h, &b);
    }
    h
}

/// Refuses data too small for the settings: fewer images than pseudo-classes, or than one
/// batch.
fn check_fits(cfg: &TrainConfig, n: usize) -> Result<()> {
    if n < cfg.k {
        return Err(Error::Config(format!(
            "k = {} pseudo-classes for {n} images: use k well below the number of images \
             (README, \"Your own images\")",
            cfg.k
        )));
    }
    if n < cfg.batch_size {
        return Err(Error::Config(format!(
            "batch size {} is larger than the {n} images",
            cfg.batch_size
        )));
    }
    Ok(())
}

/// Creates the output folder, takes its lock, and returns the run it already holds, which
/// only `resume` may continue.
fn open_out(out: &Path, resume: bool) -> Result<(RunLock, Option<checkpoint::Checkpoint>)> {
    std::fs::create_dir_all(out).map_err(|e| Error::io("create", out, e))?;
    let lock = RunLock::take(out)?;
    let existing = checkpoint::find(out)?;
    if existing.is_some() && !resume {
        return Err(Error::RunExists {
            path: out.to_path_buf(),
        });
    }
    Ok((lock, existing))
}
