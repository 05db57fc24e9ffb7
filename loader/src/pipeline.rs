//! The batch pipeline: worker threads decode, crop and augment samples into preallocated
//! batch buffers that travel between workers and the consumer through lock-free queues.
//!
//! How it works, and why:
//! - A fixed set of batch slots (`batches_ahead + 1`) is allocated once per [`Loader`]. Free
//!   slots wait in a bounded crossbeam channel (lock-free in the fast path); so do filled
//!   ones on their way to the consumer. Dropping a [`Batch`] returns its slot.
//! - One producer thread per epoch takes a free slot, has the loader's rayon pool fill the
//!   batch's samples in parallel (work stealing, so no core idles while another finishes
//!   the last samples of a batch or an epoch), and sends the batch on. Each pool thread
//!   keeps its own TurboJPEG decoder and scratch buffer, so nothing is allocated per sample.
//! - At most `batches_ahead` finished batches wait for the consumer: that is the
//!   back-pressure. If the consumer keeps every batch alive (collects them), the pool of
//!   slots grows by one rather than deadlock.
//! - Every random choice of a sample comes from the [`crate::seeds::Stream::Augment`] stream
//!   of `(seed, epoch, position)`, where `position` is the draw's place in the epoch (a
//!   sample drawn twice gets two different views), so batches are identical whatever the
//!   thread count or timing.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::seeds::Stream;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use rayon::prelude::*;
use uic_augment::{Augment, Drawn, Preset};

use crate::crop::{center_crop, random_resized_crop, CropDecoder, Rect, RrcConfig};
use crate::error::{Error, Result};
use crate::planes::hwc_to_chw;
use crate::reader::RecordFile;

/// How a sample's crop is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CropMode {
    /// RandomResizedCrop with these ranges (training).
    RandomResized(RrcConfig),
    /// `Resize(resize)` then `CenterCrop(output)` (evaluation).
    Center {
        /// Shorter side after the resize (256 for ImageNet).
        resize: u32,
    },
    /// The whole image, resized to the output size.
    Full,
}

/// Settings of a [`Loader`]. Build with `..Default::default()`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Finished batches that may wait for the consumer.
    pub batches_ahead: usize,
    /// Output height and width.
    pub size: (u32, u32),
    /// Crop choice.
    pub crop: CropMode,
    /// Augmentations after the crop (flip, jitter, grayscale, blur).
    pub augment: Augment,
    /// Independent views per sample (2 for two-view methods).
    pub views: usize,
    /// Drop the last, incomplete batch.
    pub drop_last: bool,
    /// Seed of every random choice.
    pub seed: u64,
    /// Draw the augmentations after the flip (jitter, grayscale, blur) but leave them to the
    /// consumer, which finds every sample's draws in [`Batch::drawn`] (the trainer's
    /// `--augment-on device`). The crop and the flip are done either way.
    pub defer_augment: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 256,
            threads: 0,
            batches_ahead: 3,
            size: (224, 224),
            crop: CropMode::RandomResized(RrcConfig::default()),
            augment: Augment::preset(Preset::Paper),
            views: 1,
            drop_last: false,
            seed: 0,
            defer_augment: false,
        }
    }
}

impl LoaderConfig {
    /// The settings of a preset at `size` (height, width), the rest default: for `paper` and
    /// `strong`, RandomResizedCrop (torchvision's scale and ratio) and the preset's
    /// augmentations; for `eval`, a resize of the shorter side to `side * 256 / 224`
    /// (rounded up) and a centre crop, nothing random. As `uic train` and `uic eval` load.
    pub fn for_preset(preset: Preset, size: (u32, u32)) -> Self {
        let crop = match preset {
            Preset::Eval => CropMode::Center {
                resize: (size.0.min(size.1) * 256).div_ceil(224),
            },
            Preset::Paper | Preset::Strong => CropMode::RandomResized(RrcConfig::default()),
        };
        LoaderConfig {
            size,
            crop,
            augment: Augment::preset(preset),
            ..Default::default()
        }
    }
}

/// One batch slot's buffers.
#[derive(Debug)]
struct Slot {
    /// `views` blocks of `batch_size x 3 x H x W` u8, NCHW.
    pixels: Vec<u8>,
    indices: Vec<u32>,
    labels: Vec<u32>,
    /// `views` blocks of `batch_size` samples' draws.
    drawn: Vec<Drawn>,
    substituted: usize,
    number: usize,
}

/// A batch of samples: u8 pixels in NCHW layout, per view.
///
/// Dropping it hands its buffers back to the loader.
#[derive(Debug)]
pub struct Batch {
    slot: Option<Box<Slot>>,
    free: Sender<Box<Slot>>,
    size: (u32, u32),
    views: usize,
    batch_size: usize,
}

impl Batch {
    fn slot(&self) -> &Slot {
        self.slot.as_ref().expect("slot present until drop")
    }

    /// Number of samples (the last batch may be short).
    pub fn len(&self) -> usize {
        self.slot().indices.len()
    }

    /// Whether the batch is empty (never, for batches a loader yields).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch's number within its epoch.
    pub fn number(&self) -> usize {
        self.slot().number
    }

    /// Pixels of view `v`: `len() x 3 x H x W` bytes, NCHW, RGB.
    ///
    /// # Panics
    /// If `v` is not a view of this loader.
    pub fn pixels(&self, v: usize) -> &[u8] {
        assert!(v < self.views, "view {v} of {}", self.views);
        let (h, w) = self.size;
        let per_view = self.batch_size * 3 * h as usize * w as usize;
        let used = self.len() * 3 * h as usize * w as usize;
        &self.slot().pixels[v * per_view..v * per_view + used]
    }

    /// The sample index of each row.
    pub fn indices(&self) -> &[u32] {
        &self.slot().indices
    }

    /// The stored label of each row, if the file has labels.
    pub fn labels(&self) -> Option<&[u32]> {
        let s = self.slot();
        (!s.labels.is_empty()).then_some(&s.labels[..])
    }

    /// How many samples failed to decode and were replaced by a grey substitute.
    pub fn substituted(&self) -> usize {
        self.slot().substituted
    }

    /// What each row of view `v` drew for its augmentations after the crop: applied already,
    /// or, with [`LoaderConfig::defer_augment`], all but the flip left to the caller.
    ///
    /// # Panics
    /// If `v` is not a view of this loader.
    pub fn drawn(&self, v: usize) -> &[Drawn] {
        assert!(v < self.views, "view {v} of {}", self.views);
        &self.slot().drawn[v * self.batch_size..v * self.batch_size + self.len()]
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let _ = self.free.try_send(slot);
        }
    }
}

/// Counters over a loader's life.
#[derive(Debug, Default)]
pub struct LoaderStats {
    /// Samples decoded.
    pub samples: AtomicU64,
    /// Samples that failed to decode and were substituted.
    pub substituted: AtomicU64,
}

/// A multithreaded loader over one record file.
pub struct Loader {
    file: Arc<RecordFile>,
    cfg: LoaderConfig,
    pool: Arc<rayon::ThreadPool>,
    free_tx: Sender<Box<Slot>>,
    free_rx: Receiver<Box<Slot>>,
    stats: Arc<LoaderStats>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("cfg", &self.cfg)
            .field("threads", &self.threads())
            .finish_non_exhaustive()
    }
}

impl Loader {
    /// A loader with its thread pool and batch slots allocated.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero batch size, size or view count, or when the
    /// threads cannot be started.
    pub fn new(file: Arc<RecordFile>, cfg: LoaderConfig) -> Result<Self> {
        if cfg.batch_size == 0 || cfg.size.0 == 0 || cfg.size.1 == 0 || cfg.views == 0 {
            return Err(Error::InvalidArgument(format!(
                "invalid loader settings {cfg:?}"
            )));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .thread_name(|i| format!("uic-loader-{i}"))
            .build()
            .map_err(|e| {
                Error::InvalidArgument(format!("cannot start {} loader threads: {e}", cfg.threads))
            })?;
        let slots = cfg.batches_ahead.max(1) + 1;
        let (free_tx, free_rx) = bounded(slots * 4);
        for _ in 0..slots {
            free_tx
                .send(Box::new(new_slot(&cfg)))
                .expect("channel has room");
        }
        Ok(Loader {
            file,
            cfg,
            pool: Arc::new(pool),
            free_tx,
            free_rx,
            stats: Arc::default(),
        })
    }

    /// The record file.
    pub fn file(&self) -> &Arc<RecordFile> {
        &self.file
    }

    /// The settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// Worker threads used.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Counters over the loader's life.
    pub fn stats(&self) -> &LoaderStats {
        &self.stats
    }

    /// Number of batches an epoch of `n` samples yields.
    pub fn num_batches(&self, n: usize) -> usize {
        if self.cfg.drop_last {
            n / self.cfg.batch_size
        } else {
            n.div_ceil(self.cfg.batch_size)
        }
    }

    /// Starts epoch `epoch` over `indices` (from an [`Order`](crate::order::Order), sharded
    /// if needed), from batch `start_batch` (to resume an epoch part-way).
    ///
    /// # Errors
    /// An index past the end of the file.
    pub fn epoch(&self, epoch: u64, indices: Vec<usize>, start_batch: usize) -> Result<Epoch> {
        self.start(epoch, indices, None, start_batch)
    }

    /// As [`epoch`](Self::epoch), for one shard of a larger epoch: `positions[j]` is
    /// `indices[j]`'s place in the whole epoch's order, and seeds its random draws, so that
    /// a sample gets the same view whichever process or shard loads it (data parallelism).
    ///
    /// # Errors
    /// An index past the end of the file, or not one position per index.
    pub fn epoch_at(
        &self,
        epoch: u64,
        indices: Vec<usize>,
        positions: Vec<usize>,
        start_batch: usize,
    ) -> Result<Epoch> {
        if positions.len() != indices.len() {
            return Err(Error::InvalidArgument(format!(
                "{} positions for {} samples",
                positions.len(),
                indices.len()
            )));
        }
        self.start(epoch, indices, Some(positions), start_batch)
    }

    fn start(
        &self,
        epoch: u64,
        indices: Vec<usize>,
        positions: Option<Vec<usize>>,
        start_batch: usize,
    ) -> Result<Epoch> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.file.len()) {
            return Err(Error::InvalidArgument(format!(
                "sample index {bad} past the {} samples",
                self.file.len()
            )));
        }
        let num_batches = self.num_batches(indices.len());
        let shared = Arc::new(Shared {
            file: self.file.clone(),
            cfg: self.cfg.clone(),
            indices,
            positions,
            epoch,
            num_batches,
            cancel: AtomicBool::new(false),
            starved: AtomicBool::new(false),
            stats: self.stats.clone(),
            failure: std::sync::Mutex::new(None),
            fail_at: std::env::var(FAIL_AT_VAR)
                .ok()
                .and_then(|v| v.trim().parse().ok()),
        });
        let (done_tx, done_rx) = bounded(self.cfg.batches_ahead.max(1));
        let producer = {
            let (shared, pool, free_rx) = (shared.clone(), self.pool.clone(), self.free_rx.clone());
            std::thread::Builder::new()
                .name("uic-loader-producer".into())
                .spawn(move || produce(&shared, &pool, &free_rx, &done_tx, start_batch))
                .map_err(|e| {
                    Error::InvalidArgument(format!("cannot start the loader thread: {e}"))
                })?
        };
        Ok(Epoch {
            shared,
            done_rx,
            free_tx: self.free_tx.clone(),
            expect: start_batch,
            producer: Some(producer),
            waited: Duration::ZERO,
        })
    }
}

fn new_slot(cfg: &LoaderConfig) -> Slot {
    let (h, w) = (cfg.size.0 as usize, cfg.size.1 as usize);
    Slot {
        pixels: vec![0; cfg.views * cfg.batch_size * 3 * h * w],
        indices: Vec::with_capacity(cfg.batch_size),
        labels: Vec::with_capacity(cfg.batch_size),
        drawn: vec![Drawn::default(); cfg.views * cfg.batch_size],
        substituted: 0,
        number: 0,
    }
}

#[derive(Debug)]
struct Shared {
    file: Arc<RecordFile>,
    cfg: LoaderConfig,
    indices: Vec<usize>,
    /// Each sample's place in the whole epoch, when this is a shard of it.
    positions: Option<Vec<usize>>,
    epoch: u64,
    num_batches: usize,
    cancel: AtomicBool,
    starved: AtomicBool,
    stats: Arc<LoaderStats>,
    /// Why the producer stopped early, for the consumer's error.
    failure: std::sync::Mutex<Option<String>>,
    /// [`FAIL_AT_VAR`]: the batch before which the producer stops, as a failure would stop it.
    fail_at: Option<usize>,
}

/// A test hook of the failure path: with `UIC_LOADER_FAIL_AT=k` in the environment, every
/// epoch's producer stops before batch `k` as if a worker had failed there, so that a test
/// (in Rust or Python) can check that the consumer sees an error, not a short epoch.
pub const FAIL_AT_VAR: &str = "UIC_LOADER_FAIL_AT";

/// The text of a panic's payload.
fn panic_text(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}

/// The producer: one batch after another, each filled by the whole pool.
fn produce(
    shared: &Shared,
    pool: &rayon::ThreadPool,
    free_rx: &Receiver<Box<Slot>>,
    done_tx: &Sender<Box<Slot>>,
    start: usize,
) {
    let bs = shared.cfg.batch_size;
    let n = shared.indices.len();
    for k in start..shared.num_batches {
        // A remote file's records, this batch's and the next ones', asked for ahead
        // (nothing for a local file).
        let a = k * bs;
        let ahead = ((k + 2 + shared.cfg.batches_ahead) * bs).min(n);
        shared.file.will_need(&shared.indices[a..ahead]);
        shared.starved.store(true, Ordering::SeqCst);
        let mut slot = loop {
            if shared.cancel.load(Ordering::Relaxed) {
                return;
            }
            match free_rx.recv_timeout(Duration::from_millis(20)) {
                Ok(s) => break s,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        shared.starved.store(false, Ordering::SeqCst);
        if shared.fail_at == Some(k) {
            *shared.failure.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(format!("stopped by {FAIL_AT_VAR}={k}"));
            return;
        }
        // A worker's panic (a bug) stops the epoch with its message, which the consumer
        // returns as an error: never a silently short epoch.
        let filled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| fill(shared, k, &mut slot))
        }));
        match filled {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                *shared.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                return;
            }
            Err(p) => {
                *shared.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
                    "a loader thread panicked: {}",
                    panic_text(p.as_ref())
                ));
                return;
            }
        }
        if done_tx.send(slot).is_err() {
            return;
        }
    }
}

/// A pool thread's decoder (None if it could not be created), HWC scratch and blur scratch.
type WorkerState = (Option<CropDecoder>, Vec<u8>, Vec<f32>);

thread_local! {
    /// Each pool thread's state, kept across batches and epochs.
    static WORKER: RefCell<Option<WorkerState>> = const { RefCell::new(None) };
}

/// Fills batch `k` into `slot`. A remote file's records are decoded as they arrive, those
/// the cache holds first (every sample's place in the batch and its draws are fixed, so the
/// order of the work changes nothing); a local file's all at once.
///
/// # Errors
/// A remote record that cannot be fetched or fails its CRC.
fn fill(shared: &Shared, k: usize, slot: &mut Slot) -> Result<()> {
    let cfg = &shared.cfg;
    let bs = cfg.batch_size;
    let (start, end) = (k * bs, ((k + 1) * bs).min(shared.indices.len()));
    let (h, w) = (cfg.size.0 as usize, cfg.size.1 as usize);
    let plane = h * w;
    let per_view = bs * 3 * plane;
    slot.number = k;
    slot.indices.clear();
    slot.labels.clear();
    slot.indices
        .extend(shared.indices[start..end].iter().map(|&i| i as u32));
    if shared.file.has_labels() {
        let labels = slot
            .indices
            .iter()
            .map(|&i| shared.file.record_entry(i as usize).label);
        slot.labels.extend(labels);
    }
    let substituted = AtomicUsize::new(0);
    let n = end - start;
    let mut done = vec![false; n];
    let mut left = n;
    while left > 0 {
        let ready: Vec<bool> = (0..n)
            .map(|r| !done[r] && shared.file.is_cached(shared.indices[start + r]))
            .collect();
        let now: Vec<usize> = (0..n)
            .filter(|&r| ready[r])
            .map(|r| shared.indices[start + r])
            .collect();
        if now.is_empty() {
            // Nothing cached yet: wait for (or fetch) the first record left.
            let first = (0..n).find(|&r| !done[r]).expect("records left");
            shared.file.fetch(&[shared.indices[start + first]])?;
            continue;
        }
        shared.file.fetch(&now)?;
        for v in 0..cfg.views {
            let rows = &mut slot.pixels[v * per_view..v * per_view + n * 3 * plane];
            let drawn = &mut slot.drawn[v * bs..v * bs + n];
            rows.par_chunks_mut(3 * plane)
                .zip(drawn.par_iter_mut())
                .enumerate()
                .filter(|(row, _)| ready[*row])
                .for_each(|(row, (dst, drawn))| {
                    WORKER.with(|cell| {
                        let mut cell = cell.borrow_mut();
                        let (decoder, scratch, blur) = cell.get_or_insert_with(|| {
                            let d = CropDecoder::new()
                                .map_err(|e| {
                                    tracing::error!(
                                        "cannot create a JPEG decoder: {e}; samples are substituted"
                                    )
                                })
                                .ok();
                            (d, Vec::new(), Vec::new())
                        });
                        scratch.resize(plane * 3, 0);
                        let ok = sample_into(
                            shared,
                            start + row,
                            v,
                            decoder.as_mut(),
                            scratch,
                            blur,
                            drawn,
                        );
                        if !ok {
                            substituted.fetch_add(1, Ordering::Relaxed);
                        }
                        hwc_to_chw(scratch, dst, w, h, drawn.mirror);
                    });
                });
        }
        for r in 0..n {
            if ready[r] {
                done[r] = true;
                left -= 1;
            }
        }
    }
    slot.substituted = substituted.into_inner();
    shared
        .stats
        .samples
        .fetch_add((end - start) as u64, Ordering::Relaxed);
    shared
        .stats
        .substituted
        .fetch_add(slot.substituted as u64, Ordering::Relaxed);
    Ok(())
}

/// Decodes, crops and augments the sample at epoch position `pos` (view `v`) into `hwc`,
/// and writes its draws to `drawn`. Returns whether it decoded (false: replaced by grey).
/// The flip is left to the copy out ([`hwc_to_chw`], from `drawn.mirror`), and the other
/// steps to the consumer with [`LoaderConfig::defer_augment`].
fn sample_into(
    shared: &Shared,
    pos: usize,
    v: usize,
    decoder: Option<&mut CropDecoder>,
    hwc: &mut [u8],
    blur: &mut Vec<f32>,
    drawn: &mut Drawn,
) -> bool {
    let cfg = &shared.cfg;
    let idx = shared.indices[pos];
    let s = shared.file.sample(idx);
    let at = shared.positions.as_ref().map_or(pos, |p| p[pos]);
    let mut rng = Stream::Augment {
        epoch: shared.epoch,
        draw: (at * cfg.views + v) as u64,
    }
    .rng(cfg.seed);
    let crop = match cfg.crop {
        CropMode::RandomResized(rrc) => random_resized_crop(s.width, s.height, &rrc, &mut rng),
        CropMode::Center { resize } => {
            center_crop(s.width, s.height, resize, cfg.size.1.min(cfg.size.0))
        }
        CropMode::Full => Rect::full(s.width, s.height),
    };
    let result = match decoder {
        Some(d) => d.decode(
            s.mode,
            s.data,
            s.width,
            s.height,
            crop,
            (cfg.size.1, cfg.size.0),
            hwc,
        ),
        None => Err(Error::Jpeg("no decoder".into())),
    };
    let ok = match result {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                "record {idx} ({}) failed to decode, substituted with grey: {e}",
                shared.file.source_path_lossy(idx)
            );
            hwc.fill(128);
            false
        }
    };
    let (w, h) = (cfg.size.1 as usize, cfg.size.0 as usize);
    *drawn = cfg.augment.draw(&mut rng);
    if !cfg.defer_augment {
        cfg.augment.apply_drawn(drawn, hwc, w, h, blur);
    }
    ok
}

/// One epoch's batches, in order. Dropping it stops the producer.
#[derive(Debug)]
pub struct Epoch {
    shared: Arc<Shared>,
    done_rx: Receiver<Box<Slot>>,
    free_tx: Sender<Box<Slot>>,
    expect: usize,
    producer: Option<JoinHandle<()>>,
    waited: Duration,
}

impl Epoch {
    /// Time the consumer spent waiting for batches so far.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Number of batches in the whole epoch (including skipped ones before the start).
    pub fn num_batches(&self) -> usize {
        self.shared.num_batches
    }

    /// The next batch, waiting at most about `timeout` for it: `Ok(None)` after the last
    /// batch. For callers that must stay responsive while they wait (to an interrupt, say);
    /// [`next`](Iterator::next) waits as long as it takes.
    ///
    /// # Errors
    /// [`NextError::TimedOut`] when the batch is not ready yet (call again), and
    /// [`NextError::Stopped`] if the loader's thread stopped before delivering it (it does
    /// not, short of a bug); later calls then give `Ok(None)`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Batch>, NextError> {
        if self.expect >= self.shared.num_batches {
            return Ok(None);
        }
        let t = Instant::now();
        let deadline = t + timeout;
        let slot = loop {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50));
            match self.done_rx.recv_timeout(wait) {
                Ok(s) => break s,
                Err(RecvTimeoutError::Timeout) => {
                    // The producer waits for a free slot while the caller holds them all
                    // (keeps old batches): grow the pool by one rather than hang.
                    if self.shared.starved.load(Ordering::SeqCst) {
                        tracing::debug!(
                            "all batch slots are held by the consumer; allocating one more"
                        );
                        let _ = self.free_tx.try_send(Box::new(new_slot(&self.shared.cfg)));
                    }
                    if Instant::now() >= deadline {
                        self.waited += t.elapsed();
                        return Err(NextError::TimedOut);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let at = self.expect;
                    self.expect = self.shared.num_batches;
                    let why = self
                        .shared
                        .failure
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                        .map_or(String::new(), |w| format!(": {w}"));
                    return Err(NextError::Stopped(Error::LoaderStopped(format!(
                        "the loader stopped before batch {at} of {}{why}",
                        self.shared.num_batches
                    ))));
                }
            }
        };
        self.waited += t.elapsed();
        self.expect += 1;
        let cfg = &self.shared.cfg;
        Ok(Some(Batch {
            slot: Some(slot),
            free: self.free_tx.clone(),
            size: cfg.size,
            views: cfg.views,
            batch_size: cfg.batch_size,
        }))
    }
}

/// Why [`Epoch::next_timeout`] gave no batch.
#[derive(Debug)]
pub enum NextError {
    /// Not ready within the timeout; call again.
    TimedOut,
    /// The loader's thread stopped early; the epoch is over.
    Stopped(Error),
}

/// The epoch's batches in order. A loader that stops before the last batch yields one
/// `Err` (a short epoch is never silent), then `None`.
impl Iterator for Epoch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        loop {
            match self.next_timeout(Duration::from_secs(3600)) {
                Ok(b) => return b.map(Ok),
                Err(NextError::TimedOut) => continue,
                Err(NextError::Stopped(e)) => return Some(Err(e)),
            }
        }
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        self.shared.cancel.store(true, Ordering::SeqCst);
        if let Some(p) = self.producer.take() {
            // Unblock a producer waiting to send, then wait for it.
            while !p.is_finished() {
                while let Ok(s) = self.done_rx.try_recv() {
                    let _ = self.free_tx.try_send(s);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = p.join();
        }
        while let Ok(s) = self.done_rx.try_recv() {
            let _ = self.free_tx.try_send(s);
        }
    }
}
