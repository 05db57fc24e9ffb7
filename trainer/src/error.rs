//! The trainer's error type.

use std::path::PathBuf;

/// Everything that can go wrong while training or evaluating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A libtorch call failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The data pipeline failed.
    #[error(transparent)]
    Loader(#[from] uic_loader::Error),
    /// Reading or writing a file failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "read", ...).
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A setting is invalid, alone or with the data it is used on.
    #[error("invalid setting: {0}")]
    Config(String),
    /// A checkpoint is missing, incomplete, from another run or from another version.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "the loss is {value} at epoch {epoch}, batch {batch}: training stopped; the last good \
         checkpoint (if any) is kept. Try a lower --lr"
    )]
    NonFinite {
        /// 1-based epoch.
        epoch: u64,
        /// Batch within the epoch.
        batch: usize,
        /// The bad loss value.
        value: f64,
    },
}

/// The trainer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
