//! The batch pipeline: worker threads decode, crop and augment samples into preallocated
//! batch buffers that travel between workers and the consumer through lock-free queues.
//!
//! How it works, and why:
//! - A fixed set of batch slots (`threads + batches_ahead`) is allocated once per
//!   [`Loader`]. Free slots wait in a bounded crossbeam channel (lock-free in the fast
//!   path). A worker takes a free slot *before* it claims the next batch number from an
//!   atomic counter, so the batch the consumer waits for always has a slot: no deadlock.
//! - A worker fills a whole batch by itself (no per-sample synchronisation; each thread
//!   keeps its TurboJPEG handle and buffers hot), then sends it to the consumer, who puts
//!   batches back in order. Dropping a [`Batch`] returns its slot to the free queue.
//! - At most `batches_ahead` finished batches wait for the consumer: that is the
//!   back-pressure. Nothing is allocated per sample in the steady state.
//! - Every random choice of a sample comes from `sample_rng(seed, epoch, position)`, where
//!   `position` is the draw's place in the epoch (a sample drawn twice gets two different
//!   views), so batches are identical whatever the thread count or timing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use uic_augment::{sample_rng, FlipConfig};

use crate::crop::{center_crop, random_resized_crop, CropDecoder, Rect, RrcConfig};
use crate::error::{Error, Result};
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
    /// Horizontal flip, if any.
    pub flip: Option<FlipConfig>,
    /// Independent views per sample (2 for two-view methods).
    pub views: usize,
    /// Drop the last, incomplete batch.
    pub drop_last: bool,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 256,
            threads: 0,
            batches_ahead: 3,
            size: (224, 224),
            crop: CropMode::RandomResized(RrcConfig::default()),
            flip: Some(FlipConfig::default()),
            views: 1,
            drop_last: false,
            seed: 0,
        }
    }
}

/// One batch slot's buffers.
#[derive(Debug)]
struct Slot {
    /// `views` blocks of `batch_size x 3 x H x W` u8, NCHW.
    pixels: Vec<u8>,
    /// HWC scratch for one sample.
    scratch: Vec<u8>,
    indices: Vec<u32>,
    labels: Vec<u32>,
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
#[derive(Debug)]
pub struct Loader {
    file: Arc<RecordFile>,
    cfg: LoaderConfig,
    threads: usize,
    free_tx: Sender<Box<Slot>>,
    free_rx: Receiver<Box<Slot>>,
    stats: Arc<LoaderStats>,
}

impl Loader {
    /// A loader with its batch slots allocated.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero batch size, size or view count.
    pub fn new(file: Arc<RecordFile>, cfg: LoaderConfig) -> Result<Self> {
        if cfg.batch_size == 0 || cfg.size.0 == 0 || cfg.size.1 == 0 || cfg.views == 0 {
            return Err(Error::InvalidArgument(format!(
                "invalid loader settings {cfg:?}"
            )));
        }
        let threads = if cfg.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            cfg.threads
        };
        let slots = threads + cfg.batches_ahead.max(1);
        let (free_tx, free_rx) = bounded(slots * 2);
        for _ in 0..slots {
            free_tx
                .send(Box::new(new_slot(&cfg)))
                .expect("channel has room");
        }
        Ok(Loader {
            file,
            cfg,
            threads,
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
        self.threads
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
            epoch,
            next: AtomicUsize::new(start_batch),
            num_batches,
            cancel: AtomicBool::new(false),
            starved: AtomicUsize::new(0),
            stats: self.stats.clone(),
        });
        let (done_tx, done_rx) = bounded(self.threads + self.cfg.batches_ahead.max(1) + 1);
        let workers = (0..self
            .threads
            .min(num_batches.saturating_sub(start_batch))
            .max(1))
            .map(|_| {
                let (shared, free_rx, free_tx, done_tx) = (
                    shared.clone(),
                    self.free_rx.clone(),
                    self.free_tx.clone(),
                    done_tx.clone(),
                );
                std::thread::spawn(move || worker(&shared, &free_rx, &free_tx, &done_tx))
            })
            .collect();
        Ok(Epoch {
            shared,
            done_rx,
            free_tx: self.free_tx.clone(),
            pending: BTreeMap::new(),
            expect: start_batch,
            workers,
            waited: Duration::ZERO,
        })
    }
}

fn new_slot(cfg: &LoaderConfig) -> Slot {
    let (h, w) = (cfg.size.0 as usize, cfg.size.1 as usize);
    Slot {
        pixels: vec![0; cfg.views * cfg.batch_size * 3 * h * w],
        scratch: vec![0; h * w * 3],
        indices: Vec::with_capacity(cfg.batch_size),
        labels: Vec::with_capacity(cfg.batch_size),
        substituted: 0,
        number: 0,
    }
}

#[derive(Debug)]
struct Shared {
    file: Arc<RecordFile>,
    cfg: LoaderConfig,
    indices: Vec<usize>,
    epoch: u64,
    next: AtomicUsize,
    num_batches: usize,
    cancel: AtomicBool,
    starved: AtomicUsize,
    stats: Arc<LoaderStats>,
}

fn worker(
    shared: &Shared,
    free_rx: &Receiver<Box<Slot>>,
    free_tx: &Sender<Box<Slot>>,
    done_tx: &Sender<(usize, Box<Slot>)>,
) {
    let mut decoder = match CropDecoder::new() {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!(
                "cannot create a JPEG decoder: {e}; this worker substitutes every sample"
            );
            None
        }
    };
    loop {
        shared.starved.fetch_add(1, Ordering::SeqCst);
        let slot = loop {
            if shared.cancel.load(Ordering::Relaxed) {
                shared.starved.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            match free_rx.recv_timeout(Duration::from_millis(20)) {
                Ok(s) => break s,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    shared.starved.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
            }
        };
        shared.starved.fetch_sub(1, Ordering::SeqCst);
        let k = shared.next.fetch_add(1, Ordering::SeqCst);
        if k >= shared.num_batches || shared.cancel.load(Ordering::Relaxed) {
            // Nothing left: give the slot back for the next epoch.
            let _ = free_tx.try_send(slot);
            return;
        }
        let mut slot = slot;
        fill(shared, k, &mut slot, decoder.as_mut());
        if done_tx.send((k, slot)).is_err() {
            return;
        }
    }
}

fn fill(shared: &Shared, k: usize, slot: &mut Slot, mut decoder: Option<&mut CropDecoder>) {
    let cfg = &shared.cfg;
    let bs = cfg.batch_size;
    let start = k * bs;
    let end = (start + bs).min(shared.indices.len());
    let (h, w) = (cfg.size.0 as usize, cfg.size.1 as usize);
    let plane = h * w;
    let per_view = bs * 3 * plane;
    slot.number = k;
    slot.indices.clear();
    slot.labels.clear();
    slot.substituted = 0;
    let labeled = shared.file.has_labels();
    for (row, pos) in (start..end).enumerate() {
        let idx = shared.indices[pos];
        let s = shared.file.sample(idx);
        slot.indices.push(idx as u32);
        if labeled {
            slot.labels.push(s.label.unwrap_or(u32::MAX));
        }
        for v in 0..cfg.views {
            let mut rng = sample_rng(cfg.seed, shared.epoch, (pos * cfg.views + v) as u64);
            let crop = match cfg.crop {
                CropMode::RandomResized(rrc) => {
                    random_resized_crop(s.width, s.height, &rrc, &mut rng)
                }
                CropMode::Center { resize } => {
                    center_crop(s.width, s.height, resize, cfg.size.1.min(cfg.size.0))
                }
                CropMode::Full => Rect::full(s.width, s.height),
            };
            let result = match decoder.as_deref_mut() {
                Some(d) => d.decode(
                    s.mode,
                    s.data,
                    s.width,
                    s.height,
                    crop,
                    (cfg.size.1, cfg.size.0),
                    &mut slot.scratch,
                ),
                None => Err(Error::Jpeg("no decoder".into())),
            };
            if let Err(e) = result {
                tracing::warn!(
                    "record {idx} ({}) failed to decode, substituted with grey: {e}",
                    shared.file.source_path_lossy(idx)
                );
                slot.scratch.fill(128);
                slot.substituted += 1;
                shared.stats.substituted.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(flip) = cfg.flip {
                flip.apply(&mut slot.scratch, w, h, 3, &mut rng);
            }
            // HWC -> CHW into the batch.
            let base = v * per_view + row * 3 * plane;
            let dst = &mut slot.pixels[base..base + 3 * plane];
            hwc_to_chw(&slot.scratch, dst, plane);
        }
        shared.stats.samples.fetch_add(1, Ordering::Relaxed);
    }
}

/// Splits packed RGB into three planes.
pub fn hwc_to_chw(hwc: &[u8], chw: &mut [u8], plane: usize) {
    let (r, rest) = chw.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in hwc.chunks_exact(3).enumerate().take(plane) {
        r[i] = px[0];
        g[i] = px[1];
        b[i] = px[2];
    }
}

/// One epoch's batches, in order. Dropping it stops the workers.
#[derive(Debug)]
pub struct Epoch {
    shared: Arc<Shared>,
    done_rx: Receiver<(usize, Box<Slot>)>,
    free_tx: Sender<Box<Slot>>,
    pending: BTreeMap<usize, Box<Slot>>,
    expect: usize,
    workers: Vec<JoinHandle<()>>,
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
}

impl Iterator for Epoch {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.expect >= self.shared.num_batches {
            return None;
        }
        let t = Instant::now();
        let slot = loop {
            if let Some(s) = self.pending.remove(&self.expect) {
                break s;
            }
            match self.done_rx.recv_timeout(Duration::from_millis(50)) {
                Ok((k, s)) => {
                    self.pending.insert(k, s);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    // Every live worker waits for a free slot: the caller holds them all
                    // (keeps old batches). Grow the pool by one rather than hang.
                    let live = self.workers.iter().filter(|w| !w.is_finished()).count();
                    if live > 0 && self.shared.starved.load(Ordering::SeqCst) == live {
                        tracing::debug!(
                            "all batch slots are held by the consumer; allocating one more"
                        );
                        let _ = self.free_tx.try_send(Box::new(new_slot(&self.shared.cfg)));
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    tracing::error!("loader workers stopped before batch {}", self.expect);
                    return None;
                }
            }
        };
        self.waited += t.elapsed();
        self.expect += 1;
        let cfg = &self.shared.cfg;
        Some(Batch {
            slot: Some(slot),
            free: self.free_tx.clone(),
            size: cfg.size,
            views: cfg.views,
            batch_size: cfg.batch_size,
        })
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        self.shared.cancel.store(true, Ordering::SeqCst);
        // Unblock workers waiting to send, then wait for them.
        for w in self.workers.drain(..) {
            while !w.is_finished() {
                while let Ok((_, s)) = self.done_rx.try_recv() {
                    let _ = self.free_tx.try_send(s);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = w.join();
        }
        for (_, s) in std::mem::take(&mut self.pending) {
            let _ = self.free_tx.try_send(s);
        }
    }
}
