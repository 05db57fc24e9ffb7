//! Record files of images, JPEG decoding, and converting image folders into record files.
//!
//! - [`RecordWriter`] streams samples into a record file, atomically; [`RecordFile`] maps
//!   one, validates every table entry against the file length on open, and gives O(1)
//!   random access to [`Sample`]s. The byte layout is in [`format`](mod@format) and `docs/format.md`.
//! - [`jpeg`] wraps libjpeg-turbo (TurboJPEG 3): header, scaled decode into caller
//!   buffers, encode.
//! - [`convert`] turns an ImageFolder tree, a flat folder plus labels CSV, or a file list
//!   into a record file, reporting every skipped or altered file.
//! - [`crop`] decodes only the region a crop keeps (fused RandomResizedCrop, centre crop,
//!   ten-crop); [`order`] gives each epoch's indices (sequential, random, quasi-random,
//!   subset, class-balanced; sharded); the [`Loader`] turns them into batches on
//!   worker threads.
//! - [`planes`] copies packed RGB into a batch's planes (SIMD), mirroring on the way.
//! - [`synth`] draws synthetic labelled images for demos and tests, and writes data sets of
//!   any size for the scale bench.
//!
//! ```
//! use uic_loader::{convert, RecordFile};
//! let dir = tempfile::tempdir().unwrap();
//! let input = dir.path().join("images");
//! uic_loader::synth::write_image_folder(&input, &uic_loader::synth::SynthOptions { classes: 2, per_class: 3, size: 32, seed: 1 }).unwrap();
//! let out = dir.path().join("train.uicr");
//! let report = convert::convert(&input, &out, &Default::default(), &|_| {}).unwrap();
//! assert_eq!(report.kept, 6);
//! let file = RecordFile::open(&out).unwrap();
//! assert_eq!((file.len(), file.num_classes()), (6, 2));
//! ```

pub mod convert;
pub mod crop;
mod error;
pub mod format;
pub mod jpeg;
mod mode;
#[cfg(feature = "nvjpeg")]
pub mod nvjpeg;
pub mod order;
mod pipeline;
pub mod planes;
mod reader;
pub mod remote;
pub mod seeds;
pub mod synth;
pub mod temp;
mod writer;

pub use error::{Error, Result};
pub use mode::StorageMode;
pub use pipeline::{
    Batch, CropMode, Epoch, Loader, LoaderConfig, LoaderStats, NextError, FAIL_AT_VAR,
};
pub use reader::{BadRecord, RecordFile, Sample};
pub use writer::{write_atomic, NewSample, RecordWriter, WriterOptions, WrittenFile};
