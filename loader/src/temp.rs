//! The temporary files this process is writing (`OUTPUT.tmp<PID>`), so that an interrupt
//! removes them instead of leaving up to a dataset's size behind, and the ones a killed
//! process left, so that a later run removes them.
//!
//! The loader installs no signal handler: the `uic` binary does, and calls
//! [`remove_live`] from it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A set of temporary files being written.
#[derive(Debug, Default)]
struct Live(Mutex<Vec<PathBuf>>);

impl Live {
    const fn new() -> Self {
        Live(Mutex::new(Vec::new()))
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        // A writer that panicked holding the lock left a valid list.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remove_all(&self) -> Vec<PathBuf> {
        let live = std::mem::take(&mut *self.list());
        live.into_iter()
            .filter(|p| std::fs::remove_file(p).is_ok())
            .collect()
    }
}

/// This process's temporary files.
static LIVE: Live = Live::new();

/// The temporary name of `path` for this process: `NAME.tmp<PID>` beside it.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Notes that `tmp` is being written.
pub(crate) fn register(tmp: &Path) {
    LIVE.list().push(tmp.to_path_buf());
}

/// Notes that `tmp` was renamed or removed.
pub(crate) fn unregister(tmp: &Path) {
    LIVE.list().retain(|p| p != tmp);
}

/// Removes every temporary file this process is writing; returns those removed. For a
/// signal handler's thread: the writers stop with the process right after.
pub fn remove_live() -> Vec<PathBuf> {
    LIVE.remove_all()
}

/// Removes the temporary files of `path` (`NAME.tmp<PID>` beside it) whose process is no
/// longer running; returns them with their process ids. Linux: a process is running while
/// `/proc/<PID>` exists.
pub fn remove_stale(path: &Path) -> Vec<(PathBuf, u32)> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.tmp", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists();
        if !alive && std::fs::remove_file(e.path()).is_ok() {
            removed.push((e.path(), pid));
        }
    }
    removed.sort();
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temp_files_of_dead_processes_go_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("train.uicr");
        // No process has pid 4194304 + 1 (above Linux's pid_max limit).
        let dead = dir.path().join("train.uicr.tmp4194305");
        let mine = temp_path(&out);
        let other = dir.path().join("other.uicr.tmp4194305");
        for p in [&dead, &mine, &other] {
            std::fs::write(p, b"partial").unwrap();
        }
        assert_eq!(remove_stale(&out), vec![(dead.clone(), 4194305)]);
        assert!(!dead.exists() && mine.exists() && other.exists());

        // (A registry of its own: the process's one is shared with parallel tests.)
        let live = Live::new();
        live.list().push(mine.clone());
        live.list().push(dir.path().join("gone.tmp1"));
        assert_eq!(live.remove_all(), vec![mine.clone()]);
        assert!(!mine.exists());
        assert!(live.remove_all().is_empty());
    }
}
