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
mod step;

pub use step::train_step;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use uic_loader::{Loader, RecordFile};

use crate::checkpoint::{self, DataId, State};
use crate::config::{set_threads, InitLabels, TrainConfig};
use crate::data::train_loader_config;
use crate::error::{Error, Result};
use crate::infer;
use crate::labels::LabelTable;
use crate::metrics::{self, EpochMetrics, Phase};
use crate::model::Model;
use crate::seeds::{stream_rng, STREAM_INIT};
use crate::sgd::Sgd;

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
    truth: Option<Vec<u32>>,
    loader: Loader,
    /// The nvJPEG decoders when `decoder = nvjpeg`, one per worker thread (lent to the
    /// workers during each epoch).
    #[cfg(feature = "nvjpeg")]
    gpu_loaders: Vec<uic_loader::nvjpeg::NvJpegLoader>,
    /// Samples replaced by grey in batches that did not come from `loader` (nvJPEG's).
    substituted_outside_loader: u64,
    epoch: u64,
    step: u64,
    last_metrics: Option<EpochMetrics>,
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
        cfg.validate()?;
        let file = Arc::new(RecordFile::open(data)?);
        check_fits(&cfg, file.len())?;
        let data_id = DataId {
            path: data.display().to_string(),
            samples: file.len() as u64,
            file_len: file.header().file_len,
        };
        // Everything that can refuse the settings runs before the output folder is made.
        let mut t = Trainer::build(cfg, file, data_id, out)?;
        let existing = open_out(out, resume)?;
        match existing {
            Some(ck) => t.restore(ck)?,
            None => t.start_fresh()?,
        }
        Ok(t)
    }

    /// The run's parts at epoch 0: threads, model, optimiser, loaders, random labels.
    fn build(cfg: TrainConfig, file: Arc<RecordFile>, data_id: DataId, out: &Path) -> Result<Self> {
        let n = file.len();
        set_threads(&cfg);
        let model = Model::init(&cfg.model(), cfg.seed, cfg.device.resolve()?)?;
        let opt = Sgd::new(model.named_parameters(), cfg.momentum, cfg.weight_decay);
        let loader = Loader::new(file.clone(), train_loader_config(&cfg, n))?;
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
        Ok(Trainer {
            labels: LabelTable::random(n, cfg.k, &mut stream_rng(cfg.seed, STREAM_INIT, 0))?,
            truth: file.labels(),
            cfg,
            out: out.to_path_buf(),
            file,
            data_id,
            model,
            opt,
            loader,
            #[cfg(feature = "nvjpeg")]
            gpu_loaders,
            substituted_outside_loader: 0,
            epoch: 0,
            step: 0,
            last_metrics: None,
        })
    }

    /// A new run: its `config.toml`, and no metrics of an earlier one.
    fn start_fresh(&self) -> Result<()> {
        let p = self.out.join("config.toml");
        let text = toml::to_string(&self.cfg)
            .map_err(|e| Error::Internal(format!("cannot write the config as TOML: {e}")))?;
        std::fs::write(&p, text).map_err(|e| Error::io("write", &p, e))?;
        let m = self.out.join("metrics.jsonl");
        if m.exists() {
            std::fs::remove_file(&m).map_err(|e| Error::io("remove", &m, e))?;
        }
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
        let mut theirs = s.config.clone();
        theirs.epochs = self.cfg.epochs;
        theirs.fft_epochs = self.cfg.fft_epochs;
        theirs.threads = self.cfg.threads;
        theirs.torch_threads = self.cfg.torch_threads;
        theirs.batches_ahead = self.cfg.batches_ahead;
        theirs.device = self.cfg.device;
        theirs.decoder = self.cfg.decoder;
        if theirs != self.cfg {
            let changed: Vec<String> = theirs
                .differences(&self.cfg)
                .into_iter()
                .map(|(k, was, now)| format!("{k}: checkpoint {was}, now {now}"))
                .collect();
            return Err(Error::checkpoint(
                &ck.dir,
                format!(
                    "its settings differ from this run's ({}); only epochs, fft_epochs, thread \
                     counts, the device and the decoder may change on resume",
                    changed.join("; ")
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

    /// The output folder.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Runs the remaining epochs (UIC, then fine-tuning), checkpointing after each.
    ///
    /// # Errors
    /// A non-finite loss (the last checkpoint is kept), a loader failure, a failed write.
    pub fn run(&mut self, obs: &mut dyn Observer) -> Result<()> {
        let total = self.cfg.epochs + self.cfg.fft_epochs;
        if self.epoch > 0 {
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
            // The first fine-tuning epoch compares its fixed labels with the last UIC ones.
            let mut before = None;
            if phase == Phase::Fft && e == self.cfg.epochs {
                obs.note("further fine-tuning: labels fixed from a centre-crop pass");
                before = Some(self.labels.targets().to_vec());
                let l = self.predict_labels()?;
                self.labels.set_targets(l)?;
                self.step = 0;
            }
            let m = self.train_epoch(e, phase, before, obs)?;
            self.epoch += 1;
            self.save(&m)?;
            self.last_metrics = Some(m.clone());
            obs.epoch(&m);
        }
        Ok(())
    }

    /// The checkpoint after an epoch, then its metrics line (in that order: a crash between
    /// the two loses a line that [`Trainer::restore`] writes again).
    fn save(&self, m: &EpochMetrics) -> Result<()> {
        let state = State {
            format_version: checkpoint::FORMAT_VERSION,
            uic_version: env!("CARGO_PKG_VERSION").to_string(),
            epoch: self.epoch,
            step: self.step,
            config: self.cfg.clone(),
            data: self.data_id.clone(),
            last_metrics: Some(m.clone()),
        };
        checkpoint::save(
            &self.out,
            &state,
            &self.model,
            &self.opt,
            self.labels.targets(),
        )?;
        metrics::append(&self.out.join("metrics.jsonl"), m)
    }

    /// The argmax of the model (eval mode) on the centre crop of every image.
    ///
    /// # Errors
    /// A loader or libtorch failure.
    pub fn predict_labels(&self) -> Result<Vec<u32>> {
        let all: Vec<usize> = (0..self.file.len()).collect();
        infer::assign(&self.model, &self.cfg, &self.file, &all)
    }
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

/// Creates the output folder and returns the run it already holds, which only `resume` may
/// continue.
fn open_out(out: &Path, resume: bool) -> Result<Option<checkpoint::Checkpoint>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io("create", out, e))?;
    let existing = checkpoint::find(out)?;
    if existing.is_some() && !resume {
        return Err(Error::Config(format!(
            "{} already holds a run; pass --resume to continue it, or choose another --out",
            out.display()
        )));
    }
    Ok(existing)
}
