//! The trainer's error type.

use std::path::PathBuf;

/// Everything that can go wrong while training or evaluating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A libtorch call failed (its message is in this one, so it is not also a source).
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
    /// The data pipeline failed.
    #[error(transparent)]
    Loader(#[from] uic_loader::Error),
    /// Reading or writing a file failed; the cause is the source (shown after a colon by
    /// `{:#}` in `anyhow`, and by any error report that walks the chain).
    #[error("cannot {op} {}", path.display())]
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
    /// Something that should not happen did: a worker thread panicked, a loader stopped
    /// early. A bug to report, not a user's mistake.
    #[error("internal error, please report it: {0}")]
    Internal(String),
    /// A checkpoint is missing, incomplete, from another run or from another version.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A collective between the ranks of a data-parallel run failed: another rank stopped,
    /// hung past the timeout, or the network failed.
    #[error(
        "rank {rank} of {world}: {what}: {error} (another rank stopped or hung: see its output)"
    )]
    Collective {
        /// This process's rank.
        rank: usize,
        /// Number of ranks.
        world: usize,
        /// What the ranks were doing.
        what: String,
        /// c10d's error.
        error: uic_c10d::Error,
    },
    /// The output folder holds a run already, and the caller did not ask to resume it.
    #[error("{} already holds a run: resume it, or choose another output folder", path.display())]
    RunExists {
        /// The output folder.
        path: PathBuf,
    },
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "the loss is {value} at epoch {epoch}, batch {batch}: training stopped; the last good \
         checkpoint (if any) is kept. Try a lower lr"
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

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Torch(e)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each message says its cause once, whether printed alone or with its source chain.
    #[test]
    fn causes_are_not_repeated_along_the_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Error::io("read", "/x/y", io);
        let mut chain = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            chain += &format!(": {s}");
            src = s.source();
        }
        assert_eq!(chain, "cannot read /x/y: gone");
        let t = Error::from(tch::TchError::Torch("bad shape".into()));
        assert!(std::error::Error::source(&t).is_none());
        assert_eq!(t.to_string(), "libtorch: Internal torch error: bad shape");
    }
}
