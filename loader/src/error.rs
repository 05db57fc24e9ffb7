//! The one error type of the loader crate.

use std::path::PathBuf;

/// Everything that can go wrong while writing, reading, decoding or converting records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on a named file failed.
    #[error("{op} ({path})")]
    Io {
        /// What was being done, e.g. "cannot open".
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The record file is not valid: truncated, tampered with, or not a record file at all.
    #[error("invalid record file: {reason} ({path})")]
    Format {
        /// The record file.
        path: PathBuf,
        /// What exactly is wrong, precise enough to find the bad bytes.
        reason: String,
    },
    /// The record file was written by a format version this build does not read.
    #[error("record file has format version {found}, this build reads version {supported}; re-convert the dataset with this version of `uic convert` ({path})")]
    Version {
        /// The record file.
        path: PathBuf,
        /// The version in the file's header.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// libjpeg-turbo rejected an image.
    #[error("jpeg: {0}")]
    Jpeg(String),
    /// A non-JPEG image could not be decoded.
    #[error("image: {0}")]
    Image(String),
    /// An image declares more pixels than the configured limit (a decompression bomb, say).
    #[error("image is {width}x{height} = {} pixels, over the limit of {limit} (raise it with --max-pixels)", *width as u64 * *height as u64)]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The limit in force.
        limit: u64,
    },
    /// A caller passed something inconsistent (a label without classes, a wrong buffer size...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The input of a conversion is unusable as a whole (no images, a bad labels CSV...).
    #[error("{0}")]
    Input(String),
    /// A remote record file could not be read (or written): the URL, and what failed after
    /// the retries (the byte range and the cause, or the record whose CRC is wrong).
    #[error("{url}: {reason}")]
    Remote {
        /// The object's URL.
        url: String,
        /// What failed, in one line.
        reason: String,
    },
    /// An epoch's producer stopped before its last batch (with the cause when known): the
    /// epoch is not complete.
    #[error("{0}")]
    LoaderStopped(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path and an operation to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}
