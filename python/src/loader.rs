//! `uic.Loader`: batches of a record file as NumPy arrays.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use numpy::ndarray::ArrayView4;
use numpy::{PyArray1, PyArray4};
use pyo3::exceptions::{PyRuntimeError, PyRuntimeWarning, PyTypeError};
use pyo3::prelude::*;
use uic_augment::Preset;
use uic_loader::order::{shard_positions, Order, OrderKind};
use uic_loader::{Batch, Epoch, LoaderConfig, NextError};

use crate::error::{invalid, to_py, warn};
use crate::record::RecordFile;

/// How long one wait for a batch lasts before Python's signal handlers get a turn.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// `size=`: one side, or (height, width).
#[derive(Debug, Clone, Copy, FromPyObject)]
pub enum SizeArg {
    Side(i64),
    Pair(i64, i64),
}

/// A multithreaded loader over a record file: each epoch's batches as
/// `(images, labels, indices)`.
#[derive(Debug)]
#[pyclass(module = "uic", name = "Loader", frozen)]
pub struct Loader {
    loader: Arc<uic_loader::Loader>,
    file: Py<RecordFile>,
    order: Box<dyn Order>,
    order_name: String,
    preset: Preset,
    rank: usize,
    world: usize,
    /// The epoch plain iteration starts next.
    next_epoch: AtomicU64,
    /// This rank's samples per epoch.
    samples: usize,
}

fn count(name: &str, v: i64, least: i64) -> PyResult<usize> {
    if v < least {
        return Err(invalid(format!("{name} {v}: must be at least {least}")));
    }
    usize::try_from(v).map_err(|_| invalid(format!("{name} {v} is too large")))
}

fn side(name: &str, v: i64) -> PyResult<u32> {
    if !(1..=65_535).contains(&v) {
        return Err(invalid(format!("{name} {v}: must be in 1..=65535")));
    }
    Ok(v as u32)
}

#[pymethods]
impl Loader {
    #[new]
    #[pyo3(
        text_signature = "(file, batch_size, size=224, threads=0, order='random', seed=0, preset='paper', drop_last=True, rank=0, world_size=1, batches_ahead=3)"
    )]
    #[pyo3(signature = (file, batch_size, size = SizeArg::Side(224), threads = 0, order = "random", seed = 0, preset = "paper", drop_last = true, rank = 0, world_size = 1, batches_ahead = 3))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        file: &Bound<'_, PyAny>,
        batch_size: i64,
        size: SizeArg,
        threads: i64,
        order: &str,
        seed: u64,
        preset: &str,
        drop_last: bool,
        rank: i64,
        world_size: i64,
        batches_ahead: i64,
    ) -> PyResult<Self> {
        let batch_size = count("batch_size", batch_size, 1)?;
        let size = match size {
            SizeArg::Side(s) => (side("size", s)?, side("size", s)?),
            SizeArg::Pair(h, w) => (side("height", h)?, side("width", w)?),
        };
        let mut threads = count("threads", threads, 0)?;
        let world = count("world_size", world_size, 1)?;
        let rank = count("rank", rank, 0)?;
        if rank >= world {
            return Err(invalid(format!(
                "rank {rank} of world_size {world}: rank must be below world_size"
            )));
        }
        let batches_ahead = count("batches_ahead", batches_ahead, 1)?;
        let kind: OrderKind = order.parse().map_err(to_py)?;
        let preset_value = match preset {
            "paper" => Preset::Paper,
            "strong" => Preset::Strong,
            "eval" => Preset::Eval,
            p => {
                return Err(invalid(format!(
                    "preset {p:?}: expected \"paper\", \"strong\" or \"eval\""
                )))
            }
        };
        // As the CLI does: more than 4 threads per core only adds contention.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if threads > 4 * cores {
            warn::<PyRuntimeWarning>(
                py,
                &format!(
                    "threads {threads} capped at {} (4 per core on {cores} cores)",
                    4 * cores
                ),
            )?;
            threads = 4 * cores;
        }

        let file: Py<RecordFile> = match file.extract::<Py<RecordFile>>() {
            Ok(f) => f,
            Err(_) => {
                let path: PathBuf = file.extract().map_err(|_| {
                    PyTypeError::new_err(
                        "file: expected a path (str or os.PathLike) or a uic.RecordFile",
                    )
                })?;
                let opened = py
                    .detach(|| uic_loader::RecordFile::open(&path))
                    .map_err(to_py)?;
                Py::new(
                    py,
                    RecordFile {
                        file: Arc::new(opened),
                    },
                )?
            }
        };
        let records = file.get().file.clone();
        if records.is_empty() {
            return Err(invalid(format!(
                "{} holds no samples",
                records.path().display()
            )));
        }
        let cfg = LoaderConfig {
            batch_size,
            threads,
            batches_ahead,
            drop_last,
            seed,
            ..LoaderConfig::for_preset(preset_value, size)
        };
        let order_box = kind.build(&records, seed);
        // As shard_positions cuts each epoch: every rank gets len / world samples.
        let samples = records.len() / world;
        if samples == 0 {
            return Err(invalid(format!(
                "{} holds {} samples, fewer than world_size {world}: some ranks would get none",
                records.path().display(),
                records.len()
            )));
        }
        if drop_last && samples < batch_size {
            return Err(invalid(format!(
                "batch_size {batch_size} is more than the {samples} samples {} per epoch, so \
                 every epoch would be empty with drop_last=True; lower batch_size or pass \
                 drop_last=False",
                if world == 1 {
                    format!("of {}", records.path().display())
                } else {
                    format!("each of the {world} ranks gets")
                }
            )));
        }
        let loader = py
            .detach(|| uic_loader::Loader::new(records, cfg))
            .map_err(to_py)?;
        Ok(Loader {
            loader: Arc::new(loader),
            file,
            order: order_box,
            order_name: order.replace('-', "_"),
            preset: preset_value,
            rank,
            world,
            next_epoch: AtomicU64::new(0),
            samples,
        })
    }

    /// The batches of epoch `epoch`. The order, the crops and every random draw are a pure
    /// function of (seed, epoch, position), so an epoch can be replayed or resumed.
    fn epoch(&self, py: Python<'_>, epoch: u64) -> PyResult<EpochIter> {
        let (indices, positions) = py.detach(|| {
            let order = self.order.indices(epoch);
            shard_positions(&order, self.rank, self.world)
        });
        let num_batches = self.loader.num_batches(indices.len());
        let inner = self
            .loader
            .epoch_at(epoch, indices, positions, 0)
            .map_err(to_py)?;
        let cfg = self.loader.config();
        Ok(EpochIter {
            inner: Mutex::new(Some(inner)),
            epoch,
            num_batches,
            size: (cfg.size.0 as usize, cfg.size.1 as usize),
        })
    }

    /// Iterating the loader runs the next epoch: 0, then 1, and so on.
    fn __iter__(&self, py: Python<'_>) -> PyResult<EpochIter> {
        let e = self.next_epoch.fetch_add(1, Ordering::SeqCst);
        self.epoch(py, e)
    }

    /// Batches per epoch (for this rank).
    fn __len__(&self) -> usize {
        self.loader.num_batches(self.samples)
    }

    fn __repr__(&self) -> String {
        let cfg = self.loader.config();
        format!(
            "Loader({:?}, batch_size={}, size=({}, {}), threads={}, order={:?}, seed={}, preset={:?}, drop_last={}, rank={}, world_size={})",
            self.file.get().file.path().display().to_string(),
            cfg.batch_size,
            cfg.size.0,
            cfg.size.1,
            self.loader.threads(),
            self.order_name,
            cfg.seed,
            format!("{:?}", self.preset).to_lowercase(),
            if cfg.drop_last { "True" } else { "False" },
            self.rank,
            self.world
        )
    }

    /// The record file.
    #[getter]
    fn file(&self, py: Python<'_>) -> Py<RecordFile> {
        self.file.clone_ref(py)
    }

    /// Samples per batch.
    #[getter]
    fn batch_size(&self) -> usize {
        self.loader.config().batch_size
    }

    /// Output (height, width).
    #[getter]
    fn size(&self) -> (u32, u32) {
        self.loader.config().size
    }

    /// Worker threads in use.
    #[getter]
    fn threads(&self) -> usize {
        self.loader.threads()
    }

    /// This rank's samples per epoch.
    #[getter]
    fn num_samples(&self) -> usize {
        self.samples
    }

    /// The epoch plain iteration runs next; set it to resume (as `set_epoch` in PyTorch's
    /// `DistributedSampler`).
    #[getter]
    fn get_next_epoch(&self) -> u64 {
        self.next_epoch.load(Ordering::SeqCst)
    }

    #[setter]
    fn set_next_epoch(&self, epoch: u64) {
        self.next_epoch.store(epoch, Ordering::SeqCst);
    }

    /// Samples that failed to decode and were replaced by grey, over the loader's life.
    #[getter]
    fn substituted(&self) -> u64 {
        self.loader.stats().substituted.load(Ordering::Relaxed)
    }
}

/// One epoch's batches, in order; `len()` is the epoch's batch count.
#[derive(Debug)]
#[pyclass(module = "uic", name = "Epoch", frozen)]
pub struct EpochIter {
    /// `None` once the epoch is over.
    inner: Mutex<Option<Epoch>>,
    epoch: u64,
    num_batches: usize,
    size: (usize, usize),
}

/// What `__next__` yields: images N x 3 x H x W uint8, labels and indices int64.
type Triple<'py> = (
    Bound<'py, PyArray4<u8>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
);

#[pymethods]
impl EpochIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __len__(&self) -> usize {
        self.num_batches
    }

    /// The epoch's number.
    #[getter]
    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Triple<'py>>> {
        let mut guard = match self.inner.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(PyRuntimeError::new_err(
                    "this epoch is being iterated by another thread",
                ))
            }
        };
        let Some(epoch) = guard.as_mut() else {
            return Ok(None);
        };
        let batch = loop {
            match py.detach(|| epoch.next_timeout(WAIT_SLICE)) {
                Ok(Some(b)) => break b,
                Ok(None) => {
                    *guard = None;
                    return Ok(None);
                }
                Err(NextError::TimedOut) => py.check_signals()?,
                Err(NextError::Stopped(e)) => {
                    *guard = None;
                    return Err(PyRuntimeError::new_err(e.to_string()));
                }
            }
        };
        drop(guard);
        let n = batch.len();
        let labels: Vec<i64> = match batch.labels() {
            Some(l) => l
                .iter()
                .map(|&l| if l == u32::MAX { -1 } else { i64::from(l) })
                .collect(),
            None => vec![-1; n],
        };
        let indices: Vec<i64> = batch.indices().iter().map(|&i| i64::from(i)).collect();
        let (substituted, number) = (batch.substituted(), batch.number());
        let owner = Bound::new(py, BatchBuffer { batch })?;
        let (h, w) = self.size;
        let view = ArrayView4::from_shape((n, 3, h, w), owner.get().batch.pixels(0))
            .map_err(|e| PyRuntimeError::new_err(format!("batch shape: {e}")))?;
        // SAFETY: `owner` becomes the array's base object, so it lives as long as the array.
        // It owns the `Batch`, whose pixel buffer (a boxed slot's Vec) is neither moved,
        // reallocated nor written by the loader until the `Batch` is dropped, which happens
        // only when the last array over it is freed.
        let images = unsafe { PyArray4::borrow_from_array(&view, owner.clone().into_any()) };
        if substituted > 0 {
            warn::<PyRuntimeWarning>(
                py,
                &format!(
                    "{substituted} samples of batch {number} failed to decode and were replaced by grey (RecordFile.verify() checks the file)"
                ),
            )?;
        }
        Ok(Some((
            images,
            PyArray1::from_vec(py, labels),
            PyArray1::from_vec(py, indices),
        )))
    }
}

/// Owns one batch while NumPy arrays over its pixels exist (their base object).
#[derive(Debug)]
#[pyclass(module = "uic", name = "_BatchBuffer", frozen)]
pub struct BatchBuffer {
    batch: Batch,
}

#[pymethods]
impl BatchBuffer {
    fn __len__(&self) -> usize {
        self.batch.len()
    }
}
