//! Where a training epoch's batches come from:
//! - on the CPU device, the CPU loader's batches, lent to libtorch without a copy;
//! - on a CUDA device, the CPU loader's batches copied to page-locked memory and uploaded by
//!   an uploader thread, ahead of the trainer, so the trainer's thread only queues kernels;
//! - with `decoder = nvjpeg`, batches decoded on the device by nvJPEG worker threads.
//!
//! Either way the trainer sees `u8` NCHW pixels and the sample indices. With
//! `--augment-on device`, the strong preset's steps after the flip run on each batch's
//! device ([`crate::device_augment`]) where it is made: after the upload or the nvJPEG
//! decode on the worker threads, on the trainer's thread for the CPU device.
//!
//! Worker threads queue their copies and kernels on libtorch's current stream, which is the
//! device's default stream in every thread: a batch's upload (or decode, crop and resize) is
//! queued before its worker sends it, so the training step that receives it is ordered after
//! that work, and a freed batch's device memory is only reused by work queued later on the
//! same stream. Page-locked staging buffers are released to libtorch's host allocator, which
//! records the copy and does not hand them out again before it has finished.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor};

use crate::device_augment::DeviceAugment;
use crate::error::{Error, Result};

/// A batch whose pixels are already on the device.
#[derive(Debug)]
pub(crate) struct DeviceBatch {
    /// `N x 3 x H x W` `u8` on the device.
    pub(crate) pixels: Tensor,
    /// The samples' indices in the record file.
    pub(crate) indices: Vec<u32>,
    /// Samples replaced by grey because no decoder could read them (the CPU loader counts
    /// its own in its stats; this is for decoders outside it).
    pub(crate) substituted: usize,
}

/// One batch, ready for [`super::step::train_step`].
#[derive(Debug)]
pub(crate) enum StepInput {
    /// Pixels in one of the CPU loader's slots (returned to it on drop).
    Cpu(uic_loader::Batch),
    /// Pixels already on the device.
    Device(DeviceBatch),
}

/// `N x 3 x h x w` `u8` pixels of a CPU batch as a tensor that borrows the slot.
///
/// # Safety
/// The tensor must be dropped before `b`, and libtorch must not keep it (or a view of it)
/// past that: it points into `b`'s memory.
unsafe fn lend(b: &uic_loader::Batch, h: i64, w: i64) -> Tensor {
    let px = b.pixels(0);
    let n = b.len() as i64;
    assert_eq!(px.len() as i64, n * 3 * h * w, "batch of another size");
    // SAFETY: `px` is `n*3*h*w` live bytes; the caller keeps `b` alive longer.
    unsafe { Tensor::from_blob(px.as_ptr(), &[n, 3, h, w], &[], Kind::Uint8, Device::Cpu) }
}

/// Copies host `u8` pixels to page-locked memory and queues their copy to `device` on the
/// current stream. `pixels` may be freed on return; the staging buffer stays reserved by
/// libtorch's host allocator until the copy has run.
pub(crate) fn upload_pinned(pixels: &Tensor, device: Device) -> Result<Tensor> {
    Ok(pixels
        .f_pin_memory(device)?
        .f_to_device_(device, Kind::Uint8, true, false)?)
}

impl StepInput {
    /// Samples in the batch.
    pub(crate) fn len(&self) -> usize {
        self.indices().len()
    }

    /// Samples of this batch replaced by grey that the CPU loader's stats do not count.
    pub(crate) fn substituted(&self) -> usize {
        match self {
            StepInput::Cpu(_) => 0,
            StepInput::Device(b) => b.substituted,
        }
    }

    /// The samples' indices in the record file.
    pub(crate) fn indices(&self) -> &[u32] {
        match self {
            StepInput::Cpu(b) => b.indices(),
            StepInput::Device(b) => &b.indices,
        }
    }

    /// Runs `f` on the `N x 3 x h x w` `u8` pixels. A CPU batch is lent to libtorch without
    /// a copy, so nothing `f` returns may hold the tensor ([`super::step::train_step`] returns
    /// plain numbers; its input layer converts to float into new storage, so autograd saves
    /// nothing that points into the slot).
    pub(crate) fn with_pixels<R>(&self, h: i64, w: i64, f: impl FnOnce(&Tensor) -> R) -> R {
        match self {
            StepInput::Cpu(b) => {
                // SAFETY: `t` is dropped at the end of this block, before `b` can be.
                let t = unsafe { lend(b, h, w) };
                let r = f(&t);
                drop(t);
                r
            }
            StepInput::Device(b) => f(&b.pixels),
        }
    }
}

/// The batches of one epoch, in order.
#[derive(Debug)]
pub(crate) enum Feed {
    /// The CPU loader's batches, used where they are, or augmented by libtorch ops into new
    /// tensors (`--augment-on device` on the CPU device).
    Cpu(uic_loader::Epoch, Option<(DeviceAugment, (i64, i64))>),
    /// The CPU loader's batches, uploaded to the device by a thread.
    Upload(Ahead<uic_loader::Epoch>),
    /// nvJPEG batches, made by worker threads.
    #[cfg(feature = "nvjpeg")]
    Nvjpeg(Ahead<uic_loader::nvjpeg::NvJpegLoader>),
}

impl Feed {
    /// Uploads `epoch`'s batches from batch `start` on to `device` on a thread, up to
    /// `ahead` batches in front. With `augment`, each batch's deferred steps run on the device
    /// after its upload.
    pub(crate) fn upload(
        epoch: uic_loader::Epoch,
        start: usize,
        device: Device,
        size: (i64, i64),
        ahead: usize,
        augment: Option<DeviceAugment>,
    ) -> Result<Feed> {
        let n = epoch.num_batches().saturating_sub(start);
        let (h, w) = size;
        let a = Ahead::start("uic-upload", vec![epoch], n, ahead, move |ep, b| {
            let batch = ep.next().ok_or_else(|| {
                Error::Internal(format!("the loader ended before batch {b} of {n}"))
            })??;
            // SAFETY: `host` is dropped right after the copy, before `batch`.
            let host = unsafe { lend(&batch, h, w) };
            let pixels = upload_pinned(&host, device)?;
            drop(host);
            let pixels = match &augment {
                Some(a) => a.apply(&pixels, batch.drawn(0))?,
                None => pixels,
            };
            Ok(DeviceBatch {
                pixels,
                indices: batch.indices().to_vec(),
                // Counted by the CPU loader's stats.
                substituted: 0,
            })
        })?;
        Ok(Feed::Upload(a))
    }

    /// The next batch; `None` at the end of the epoch. A loader that stopped early gives
    /// its error (the caller also counts the batches).
    pub(crate) fn next(&mut self) -> Option<Result<StepInput>> {
        match self {
            Feed::Cpu(e, None) => e.next().map(|b| Ok(StepInput::Cpu(b?))),
            Feed::Cpu(e, Some((a, (h, w)))) => e.next().map(|b| {
                let b = b?;
                // SAFETY: `t` is dropped before `b`, and `apply` returns new storage.
                let t = unsafe { lend(&b, *h, *w) };
                let pixels = a.apply(&t, b.drawn(0));
                drop(t);
                Ok(StepInput::Device(DeviceBatch {
                    pixels: pixels?,
                    indices: b.indices().to_vec(),
                    // Counted by the CPU loader's stats.
                    substituted: 0,
                }))
            }),
            Feed::Upload(a) => a.next().map(|r| r.map(StepInput::Device)),
            #[cfg(feature = "nvjpeg")]
            Feed::Nvjpeg(a) => a.next().map(|r| r.map(StepInput::Device)),
        }
    }

    /// Time the trainer spent waiting for batches so far.
    pub(crate) fn waited(&self) -> Duration {
        match self {
            Feed::Cpu(e, _) => e.waited(),
            Feed::Upload(a) => a.waited,
            #[cfg(feature = "nvjpeg")]
            Feed::Nvjpeg(a) => a.waited,
        }
    }
}

type Made = Result<DeviceBatch>;

/// One worker thread and the channel of the batches it makes.
#[derive(Debug)]
struct Worker<S> {
    rx: Option<Receiver<Made>>,
    handle: Option<JoinHandle<S>>,
}

/// Batches made by worker threads ahead of the trainer. With `W` workers, worker `k` makes
/// batches `k, k + W, k + 2W, ...` from its own state (a decoder, a loader epoch); the
/// trainer takes them in order, round-robin, so the order never depends on timing.
#[derive(Debug)]
pub(crate) struct Ahead<S> {
    workers: Vec<Worker<S>>,
    next: usize,
    pub(crate) num_batches: usize,
    pub(crate) waited: Duration,
}

impl<S: Send + 'static> Ahead<S> {
    /// Starts one thread per state in `states`; `make(state, b)` makes batch `b`. In all,
    /// about `ahead` batches wait made (at least one per worker).
    pub(crate) fn start<F>(
        name: &str,
        states: Vec<S>,
        num_batches: usize,
        ahead: usize,
        make: F,
    ) -> Result<Self>
    where
        F: Fn(&mut S, usize) -> Made + Send + Sync + 'static,
    {
        let w = states.len().max(1);
        let per_worker = ahead.div_ceil(w).max(1);
        let make = Arc::new(make);
        let mut a = Ahead {
            workers: Vec::with_capacity(w),
            next: 0,
            num_batches,
            waited: Duration::ZERO,
        };
        for (k, mut state) in states.into_iter().enumerate() {
            let (tx, rx) = sync_channel::<Made>(per_worker);
            let make = make.clone();
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{k}"))
                .spawn(move || {
                    let mut b = k;
                    while b < num_batches {
                        let r = make(&mut state, b);
                        let failed = r.is_err();
                        // A closed channel means the trainer stopped early.
                        if tx.send(r).is_err() || failed {
                            break;
                        }
                        b += w;
                    }
                    state
                })
                .map_err(|e| Error::Internal(format!("cannot start a {name} thread: {e}")))?;
            a.workers.push(Worker {
                rx: Some(rx),
                handle: Some(handle),
            });
        }
        Ok(a)
    }

    /// The next batch in order, or `None` after the last (or if its worker died).
    pub(crate) fn next(&mut self) -> Option<Made> {
        if self.next >= self.num_batches || self.workers.is_empty() {
            return None;
        }
        let k = self.next % self.workers.len();
        let t = Instant::now();
        let r = self.workers[k].rx.as_ref()?.recv().ok();
        self.waited += t.elapsed();
        self.next += 1;
        r
    }

    /// Stops the workers (those still running stop at their next batch) and gives their
    /// states back, in order; a worker that panicked gives nothing.
    pub(crate) fn finish(mut self) -> Vec<S> {
        // Closing the channels first makes every worker's next send fail, so none blocks.
        for w in &mut self.workers {
            w.rx = None;
        }
        self.workers
            .iter_mut()
            .filter_map(|w| w.handle.take().and_then(|h| h.join().ok()))
            .collect()
    }
}

impl<S> Drop for Ahead<S> {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.rx = None;
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(b: usize) -> Made {
        Ok(DeviceBatch {
            pixels: Tensor::from_slice(&[b as u8]),
            indices: vec![b as u32],
            substituted: 0,
        })
    }

    #[test]
    fn workers_hand_over_batches_in_order_and_give_their_states_back() {
        // Worker k sleeps longer than the others, so completion order differs from batch
        // order; the trainer must still see 0, 1, 2, ...
        let states: Vec<u64> = vec![3, 0, 1];
        let mut a = Ahead::start("test", states, 10, 2, |s: &mut u64, b| {
            std::thread::sleep(Duration::from_millis(*s));
            batch(b)
        })
        .unwrap();
        let got: Vec<u32> = std::iter::from_fn(|| a.next())
            .map(|r| r.unwrap().indices[0])
            .collect();
        assert_eq!(got, (0..10).collect::<Vec<u32>>());
        assert_eq!(a.finish(), vec![3, 0, 1]);
    }

    #[test]
    fn an_error_ends_the_epoch_and_an_early_stop_does_not_hang() {
        let mut a = Ahead::start("test", vec![(), ()], 100, 2, |_: &mut (), b| {
            if b == 3 {
                Err(Error::Config("bad batch 3".into()))
            } else {
                batch(b)
            }
        })
        .unwrap();
        for want in 0..3 {
            assert_eq!(a.next().unwrap().unwrap().indices[0], want);
        }
        let err = a.next().unwrap().unwrap_err().to_string();
        assert!(err.contains("bad batch 3"), "{err}");
        // Worker 0 is blocked on a full channel; finishing must still return.
        assert_eq!(a.finish().len(), 2);
    }
}
