//! A per-process scratch folder for targets whose API reads files: in `/dev/shm` when it
//! exists (no disk writes per execution), else the system temp folder.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The path of `name` in this process's scratch folder, created on first use.
pub fn path(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("uic-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot create the scratch folder");
        dir
    });
    dir.join(name)
}

/// Writes `bytes` to `name` in the scratch folder and returns its path.
pub fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let p = path(name);
    std::fs::write(&p, bytes).expect("cannot write to the scratch folder");
    p
}
