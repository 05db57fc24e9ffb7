//! The UIC training loop.
//!
//! Each epoch: draw a class-balanced order from the label table, stream augmented batches
//! from the loader, train on the frozen targets with plain cross-entropy, and record each
//! sample's argmax into the table's second buffer. At the end of the epoch, refill empty
//! classes and swap the buffers; then write the metrics line and an atomic checkpoint.
//! Optional further fine-tuning (FFT) follows with labels fixed by a centre-crop pass.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use tch::{Device, Kind, Tensor};
use uic_augment::{Augment, Preset};
use uic_loader::crop::RrcConfig;
use uic_loader::order::{ClassBalanced, Order};
use uic_loader::{CropMode, Loader, LoaderConfig, RecordFile};

use crate::checkpoint::{self, DataId, State};
use crate::config::{InitLabels, Labeler, TrainConfig, TrainPreset};
use crate::error::{Error, Result};
use crate::eval::Layer;
use crate::feed::{Feed, StepInput};
use crate::labels::{size_stats, LabelTable};
use crate::metrics::{self, EpochMetrics, Phase};
use crate::model::Model;
use crate::nmi::{nmi, nmi_both, Normalization};
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

/// The libtorch seed of epoch `e` (dropout): a pure function of (seed, epoch), so a resumed
/// run draws the same.
fn torch_seed(seed: u64, epoch: u64) -> i64 {
    let mut r = Xoshiro256PlusPlus::seed_from_u64(
        seed ^ 0x7a3d_0c11 ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    (rand::Rng::gen::<u64>(&mut r) >> 1) as i64
}

fn stream_rng(seed: u64, stream: u64, epoch: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(
        seed.wrapping_mul(0xbf58_476d_1ce4_e5b9)
            ^ stream.wrapping_mul(0x94d0_49bb_1331_11eb)
            ^ epoch,
    )
}

/// nvJPEG decoder threads (`decoder = nvjpeg`): one thread's per-image kernel launches
/// cannot keep up with a fast GPU.
#[cfg(feature = "nvjpeg")]
const NVJPEG_WORKERS: usize = 4;

const STREAM_INIT: u64 = 1;
const STREAM_EMPTY: u64 = 2;

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
        let n = file.len();
        if n < cfg.k {
            return Err(Error::Config(format!(
                "k = {} pseudo-classes for {n} images: use k well below the number of images",
                cfg.k
            )));
        }
        if n < cfg.batch_size {
            return Err(Error::Config(format!(
                "batch size {} is larger than the {n} images",
                cfg.batch_size
            )));
        }
        let data_id = DataId {
            path: data.display().to_string(),
            samples: n as u64,
            file_len: file.header().file_len,
        };
        std::fs::create_dir_all(out).map_err(|e| Error::io("create", out, e))?;
        let existing = checkpoint::find(out)?;
        if existing.is_some() && !resume {
            return Err(Error::Config(format!(
                "{} already holds a run; pass --resume to continue it, or choose another --out",
                out.display()
            )));
        }

        set_threads(&cfg);
        let model = init_model(&cfg)?;
        let opt = Sgd::new(model.named_parameters(), cfg.momentum, cfg.weight_decay);
        let truth = file.labels();
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
        let mut t = Trainer {
            labels: LabelTable::random(n, cfg.k, &mut stream_rng(cfg.seed, STREAM_INIT, 0))?,
            cfg,
            out: out.to_path_buf(),
            file,
            data_id,
            model,
            opt,
            truth,
            loader,
            #[cfg(feature = "nvjpeg")]
            gpu_loaders,
            substituted_outside_loader: 0,
            epoch: 0,
            step: 0,
            last_metrics: None,
        };
        match existing {
            Some(ck) => t.restore(ck)?,
            None => {
                t.write_config()?;
                let m = t.out.join("metrics.jsonl");
                if m.exists() {
                    std::fs::remove_file(&m).map_err(|e| Error::io("remove", &m, e))?;
                }
            }
        }
        Ok(t)
    }

    fn write_config(&self) -> Result<()> {
        let p = self.out.join("config.toml");
        let text = toml::to_string(&self.cfg)
            .map_err(|e| Error::Config(format!("cannot write the config as TOML: {e}")))?;
        std::fs::write(&p, text).map_err(|e| Error::io("write", &p, e))
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
            return Err(Error::checkpoint(
                &ck.dir,
                format!(
                    "its settings differ from this run's; only epochs, fft_epochs, thread \
                     counts, the device and the decoder may change on resume.\n  checkpoint: {theirs:?}\n  this run:   {:?}",
                    self.cfg
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
            metrics::append(&self.out.join("metrics.jsonl"), &m)?;
            self.last_metrics = Some(m.clone());
            obs.epoch(&m);
        }
        Ok(())
    }

    fn steps_per_epoch(&self) -> u64 {
        self.loader.num_batches(self.epoch_len()) as u64
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
        let mut order = Vec::with_capacity(self.epoch_len());
        for i in 0..r {
            order.extend(sampler.indices(e * r + i));
        }
        order
    }

    /// Starts epoch `e`'s batches in `order` from the configured decoder: nvJPEG workers,
    /// or the CPU loader (with an uploader thread when the model is on a GPU).
    fn feed(&mut self, e: u64, order: Vec<usize>) -> Result<Feed> {
        let ahead = self.cfg.batches_ahead;
        #[cfg(feature = "nvjpeg")]
        if !self.gpu_loaders.is_empty() {
            let loaders = std::mem::take(&mut self.gpu_loaders);
            let n = loaders[0].num_batches(order.len());
            let order = Arc::new(order);
            let a = crate::feed::Ahead::start("uic-nvjpeg", loaders, n, ahead, move |l, b| {
                let g = l.batch(e, &order, b)?;
                Ok(crate::feed::DeviceBatch {
                    pixels: g.pixels,
                    indices: g.indices,
                    substituted: g.substituted,
                })
            })?;
            return Ok(Feed::Nvjpeg(a));
        }
        let epoch = self.loader.epoch(e, order, 0)?;
        let device = self.model.device();
        if device == Device::Cpu {
            return Ok(Feed::Cpu(epoch));
        }
        let side = i64::from(self.cfg.input_size);
        Feed::upload(epoch, device, (side, side), ahead)
    }

    /// Ends an epoch's feed, taking the nvJPEG decoders back from their threads.
    fn end_feed(&mut self, feed: Feed) -> Result<()> {
        match feed {
            Feed::Cpu(_) => Ok(()),
            Feed::Upload(a) => match a.finish().len() {
                1 => Ok(()),
                _ => Err(Error::Config("the upload thread panicked".into())),
            },
            #[cfg(feature = "nvjpeg")]
            Feed::Nvjpeg(a) => {
                self.gpu_loaders = a.finish();
                if self.gpu_loaders.len() == NVJPEG_WORKERS {
                    Ok(())
                } else {
                    Err(Error::Config("an nvJPEG worker thread panicked".into()))
                }
            }
        }
    }

    fn train_epoch(
        &mut self,
        e: u64,
        phase: Phase,
        before: Option<Vec<u32>>,
        obs: &mut dyn Observer,
    ) -> Result<EpochMetrics> {
        let start = Instant::now();
        tch::manual_seed(torch_seed(self.cfg.seed, e));
        let (base_lr, phase_epochs, phase_start) = match phase {
            Phase::Uic => (self.cfg.lr, self.cfg.epochs, 0),
            Phase::Fft => (self.cfg.fft_lr, self.cfg.fft_epochs, self.cfg.epochs),
        };
        let total_steps = phase_epochs * self.steps_per_epoch();
        debug_assert!(e >= phase_start);
        let before = before.unwrap_or_else(|| self.labels.targets().to_vec());
        let kmeans = phase == Phase::Uic && self.cfg.labeler == Labeler::Kmeans;
        let mut reseeded = 0;
        let labeling_start = Instant::now();
        if kmeans {
            reseeded = self.cluster(e)?;
        }
        let labeling_seconds = if kmeans {
            labeling_start.elapsed().as_secs_f64()
        } else {
            0.0
        };
        let order = self.epoch_order(e);
        self.labels.begin_epoch();
        let (h, w) = (self.cfg.input_size as i64, self.cfg.input_size as i64);
        let first_lr = self.cfg.schedule.lr(base_lr, self.step, total_steps);
        let mut epoch = self.feed(e, order)?;
        let batches = epoch.num_batches();
        let (mut seen, mut loss_sum, mut agree) = (0usize, 0f64, 0usize);
        let mut done = 0usize;
        let mut targets = Vec::with_capacity(self.cfg.batch_size);
        while let Some(batch) = epoch.next() {
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
            let (lv, pred) = batch
                .with_pixels(h, w, |x| train_step(&self.model, &mut self.opt, x, &y, lr))
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
                self.labels.record(batch.indices(), &pred);
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
                images_per_s: seen as f64 / secs,
                data_wait: epoch.waited().as_secs_f64() / secs,
            });
        }
        if done != batches {
            return Err(Error::Config(format!(
                "the loader stopped after {done} of {batches} batches of epoch {}",
                e + 1
            )));
        }
        let waited = epoch.waited();
        self.end_feed(epoch)?;
        let empty_fixed = match phase {
            Phase::Uic if kmeans => reseeded,
            Phase::Uic => {
                self.labels
                    .end_epoch(&mut stream_rng(self.cfg.seed, STREAM_EMPTY, e))
                    .empty_fixed
            }
            Phase::Fft => 0,
        };
        let secs = start.elapsed().as_secs_f64();
        let after = self.labels.targets();
        let (class_min, class_max, class_entropy) = size_stats(&self.labels.class_sizes());
        let (nmi_true, nmi_true_geometric) = match &self.truth {
            Some(t) => {
                let (a, g) = nmi_both(after, t);
                (Some(a), Some(g))
            }
            None => (None, None),
        };
        Ok(EpochMetrics {
            epoch: e + 1,
            phase,
            loss: loss_sum / seen.max(1) as f64,
            lr: first_lr,
            images_per_s: seen as f64 / secs,
            data_wait: waited.as_secs_f64() / secs,
            seconds: secs,
            agree: agree as f64 / seen.max(1) as f64,
            empty_fixed,
            class_min,
            class_max,
            class_entropy,
            nmi_prev: nmi(&before, after, Normalization::Arithmetic),
            nmi_true,
            nmi_true_geometric,
            substituted: self
                .loader
                .stats()
                .substituted
                .load(std::sync::atomic::Ordering::Relaxed)
                + self.substituted_outside_loader,
            labeling_seconds,
        })
    }

    /// The k-means labeler: features of every image (extra centre-crop pass), PCA with
    /// whitening and L2 normalisation, k-means; the result becomes this epoch's targets and
    /// the classifier layer starts afresh. Returns how many empty clusters were re-seeded.
    fn cluster(&mut self, e: u64) -> Result<usize> {
        let all: Vec<usize> = (0..self.file.len()).collect();
        let feats = crate::eval::extract(
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

    /// The argmax of the model (eval mode) on the centre crop of every image.
    ///
    /// # Errors
    /// A loader or libtorch failure.
    pub fn predict_labels(&self) -> Result<Vec<u32>> {
        let all: Vec<usize> = (0..self.file.len()).collect();
        crate::eval::assign(&self.model, &self.cfg, &self.file, &all)
    }
}

/// One UIC optimisation step: the input layer and forward pass on a `u8` NCHW batch,
/// cross-entropy against `targets` (int64), backward, an SGD update with `lr`; returns the
/// loss and the argmax of each sample (the labels the next epoch trains on). This is the
/// whole per-batch work of [`Trainer::run`]; `uic bench step` times it alone.
///
/// # Errors
/// [`Error::NonFinite`] (with epoch and batch 0) if the loss is NaN or infinite; the
/// parameters are then left untouched.
pub fn train_step(
    model: &Model,
    opt: &mut Sgd,
    pixels: &Tensor,
    targets: &Tensor,
    lr: f64,
) -> Result<(f64, Vec<i64>)> {
    let device = model.device();
    let x = if pixels.device() == device {
        pixels.shallow_clone()
    } else {
        // Page-locked staging, then an asynchronous copy queued before the forward pass.
        crate::feed::upload_pinned(pixels, device)?
    };
    let logits = if model.amp() {
        // The loss in float32, as autocast itself would compute it (cross-entropy is on its
        // float32 list): log-softmax in bfloat16 loses precision.
        tch::autocast(true, || model.forward(&x, true)).to_kind(Kind::Float)
    } else {
        model.forward(&x, true)
    };
    let loss = logits.cross_entropy_for_logits(&targets.to_device(device));
    opt.zero_grad();
    loss.backward();
    // One synchronisation per step, after the whole step is queued: the loss and the
    // argmaxes come back together.
    let lv = loss.double_value(&[]);
    if !lv.is_finite() {
        return Err(Error::NonFinite {
            epoch: 0,
            batch: 0,
            value: lv,
        });
    }
    opt.step(lr);
    let pred = logits.detach().argmax(1, false).to_device(Device::Cpu);
    Ok((lv, Vec::try_from(&pred)?))
}

/// A freshly initialised model of `cfg`, exactly as a run with its seed starts.
///
/// # Errors
/// Settings the model rejects.
pub fn init_model(cfg: &TrainConfig) -> Result<Model> {
    tch::manual_seed(torch_seed(cfg.seed, u64::MAX));
    // Initialised on the CPU whatever the device, so the weights do not depend on it.
    let mut m = Model::new(&cfg.model(), Device::Cpu)?;
    let device = cfg.device.resolve()?;
    if device != Device::Cpu {
        m.to_device(device);
        // Fixed input shapes: let cuDNN time its algorithms once and keep the fastest (as
        // `torch.backends.cudnn.benchmark = True` in PyTorch's ImageNet example).
        tch::Cuda::cudnn_set_benchmark(true);
    }
    Ok(m)
}

/// Sets libtorch's intra-op threads from the config (0: one per core).
pub fn set_threads(cfg: &TrainConfig) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = if cfg.torch_threads == 0 {
        cores
    } else {
        cfg.torch_threads
    };
    tch::set_num_threads(t as i32);
}

/// The loader settings of training: RandomResizedCrop with `min_scale` and the preset.
pub fn train_loader_config(cfg: &TrainConfig, n: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: cfg.batch_size,
        threads: cfg.threads,
        batches_ahead: cfg.batches_ahead,
        size: (cfg.input_size, cfg.input_size),
        crop: CropMode::RandomResized(RrcConfig {
            scale: (cfg.min_scale, 1.0),
            ..Default::default()
        }),
        augment: Augment::preset(match cfg.preset {
            TrainPreset::Paper => Preset::Paper,
            TrainPreset::Strong => Preset::Strong,
        }),
        views: 1,
        // A last batch of one sample cannot be batch-normalised.
        drop_last: (n * cfg.epoch_repeats as usize) % cfg.batch_size == 1,
        seed: cfg.seed,
    }
}

/// The loader settings of evaluation passes: resize to `size * 256 / 224`, centre crop.
pub fn eval_loader_config(cfg: &TrainConfig) -> LoaderConfig {
    LoaderConfig {
        batch_size: cfg.batch_size,
        threads: cfg.threads,
        batches_ahead: cfg.batches_ahead,
        size: (cfg.input_size, cfg.input_size),
        crop: CropMode::Center {
            resize: (cfg.input_size * 256).div_ceil(224),
        },
        augment: Augment::none(),
        views: 1,
        drop_last: false,
        seed: cfg.seed,
    }
}
