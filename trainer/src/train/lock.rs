//! One run per folder: rank 0 of a run holds an exclusive lock on `DIR/.lock` for as long
//! as it trains. The kernel drops the lock when the process ends, however it ends (`kill -9`
//! included), so a lock is never stale. Readers (`uic eval`, `uic plot`) do not take it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// The lock file's name in a run folder.
pub const LOCK_FILE: &str = ".lock";

/// A held run-folder lock; dropping it releases the folder.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock of run folder `dir` (which must exist), or refuses at once, naming
    /// the process that holds it.
    ///
    /// # Errors
    /// [`Error::Config`] when another process holds it; [`Error::Io`] when the lock file
    /// cannot be opened or locked.
    pub fn take(dir: &Path) -> Result<RunLock> {
        let p = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .map_err(|e| Error::io("open", &p, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    holder.to_string()
                };
                return Err(Error::Config(format!(
                    "{} is in use by another training run ({who}); wait for it to end, or \
                     choose another output folder",
                    dir.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &p, e)),
        }
        let me = format!("PID {} on host {}", std::process::id(), host_name());
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()))
            .and_then(|()| file.flush());
        written.map_err(|e| Error::io("write", &p, e))?;
        Ok(RunLock { _file: file })
    }
}

/// This machine's name, as `hostname` prints it.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_by_name_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::take(dir.path()).unwrap();
        // A second open file description conflicts even within one process.
        let e = RunLock::take(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("PID {}", std::process::id())), "{e}");
        assert!(e.contains("in use"), "{e}");
        drop(first);
        let again = RunLock::take(dir.path());
        assert!(again.is_ok(), "the lock is free once dropped");
    }
}
