//! The cache of remote objects: one folder per object version under the cache folder.
//!
//! A folder holds `data`, a sparse file as long as the object; `chunks`, a byte per chunk
//! (1: the chunk's bytes are in `data`); `meta.json`, what the entry is of; and `lock`.
//! - The folder's name is a hash of the URL, the object's version (its ETag, or its size and
//!   time) and the chunk size, so a changed object gets a new entry, never a mix.
//! - `lock` is held exclusively while the entry is made, then shared while a process uses
//!   the entry: the size limit removes only entries it can lock exclusively, that is, that
//!   nobody uses. `fill.lock` is held by the one process that fills the entry in the
//!   background; the others read what it wrote and fetch only what they need first.
//! - A chunk is written before its byte is set, and both go through the kernel's page
//!   cache, so a process killed at any point leaves no chunk marked that is not whole.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use memmap2::MmapMut;
use object_store::ObjectMeta;

use super::Options;
use crate::error::{Error, Result};

/// One object's entry in the cache, open and in use.
#[derive(Debug)]
pub(crate) struct Entry {
    data_path: PathBuf,
    data: File,
    present: MmapMut,
    chunks: u64,
    dir: PathBuf,
    /// Held shared while in use (exclusive while the entry is made).
    _in_use: File,
    /// The fill lock, once this process holds it.
    fill: Mutex<Option<File>>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Meta {
    url: String,
    size: u64,
    version: String,
    chunk: u64,
}

impl Entry {
    /// Opens the entry of `url` at the version `meta` describes, making it if needed (after
    /// making room under the size limit).
    pub(crate) fn open(opts: &Options, url: &str, meta: &ObjectMeta) -> Result<Entry> {
        let version = match &meta.e_tag {
            Some(t) => format!("etag {t}"),
            None => format!(
                "size {} time {}",
                meta.size,
                meta.last_modified.to_rfc3339()
            ),
        };
        let key = format!("{url}\n{version}\n{}\n{}", meta.size, opts.chunk);
        let rev: Vec<u8> = key.bytes().rev().collect();
        let name = format!(
            "{:08x}{:08x}",
            crc32c::crc32c(key.as_bytes()),
            crc32c::crc32c(&rev)
        );
        let dir = opts.cache_dir.join(name);
        let io = |what: &str, p: &Path, e: std::io::Error| Error::Remote {
            url: url.to_string(),
            reason: format!("cache: cannot {what} {}: {e}", p.display()),
        };
        fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("open", &lock_path, e))?;
        let meta_path = dir.join("meta.json");
        let data_path = dir.join("data");
        let chunks_path = dir.join("chunks");
        let chunks = meta.size.div_ceil(opts.chunk);
        let made = || {
            fs::read(&meta_path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
                .is_some_and(|m| m.size == meta.size && m.chunk == opts.chunk && m.url == url)
                && fs::metadata(&data_path).is_ok_and(|m| m.len() == meta.size)
                && fs::metadata(&chunks_path).is_ok_and(|m| m.len() == chunks)
        };
        // Shared (in use) is enough for an entry already made, also when this process has it
        // open already; making one takes the lock exclusively, which nobody can hold then
        // (a user holds it only once it is made), so the wait is bounded.
        lock.lock_shared().map_err(|e| io("lock", &lock_path, e))?;
        if !made() {
            lock.unlock().map_err(|e| io("unlock", &lock_path, e))?;
            let t = std::time::Instant::now();
            loop {
                match lock.try_lock() {
                    Ok(()) => break,
                    Err(std::fs::TryLockError::WouldBlock)
                        if t.elapsed() < std::time::Duration::from_secs(120) =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    Err(e) => {
                        return Err(Error::Remote {
                            url: url.to_string(),
                            reason: format!(
                                "cache: {} is damaged and in use by another process ({e}); remove it once that process ends",
                                dir.display()
                            ),
                        })
                    }
                }
            }
            if !made() {
                make_room(opts, &dir, meta.size).map_err(|reason| Error::Remote {
                    url: url.to_string(),
                    reason,
                })?;
                let _ = fs::remove_file(&meta_path);
                let data = File::create(&data_path).map_err(|e| io("create", &data_path, e))?;
                data.set_len(meta.size)
                    .map_err(|e| io("size", &data_path, e))?;
                let c = File::create(&chunks_path).map_err(|e| io("create", &chunks_path, e))?;
                c.set_len(chunks).map_err(|e| io("size", &chunks_path, e))?;
                let m = Meta {
                    url: url.to_string(),
                    size: meta.size,
                    version,
                    chunk: opts.chunk,
                };
                let tmp = dir.join("meta.json.tmp");
                fs::write(&tmp, serde_json::to_vec_pretty(&m).expect("plain struct"))
                    .and_then(|()| fs::rename(&tmp, &meta_path))
                    .map_err(|e| io("write", &meta_path, e))?;
            }
            lock.unlock().map_err(|e| io("unlock", &lock_path, e))?;
            lock.lock_shared().map_err(|e| io("lock", &lock_path, e))?;
        }
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&data_path)
            .map_err(|e| io("open", &data_path, e))?;
        let cf = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&chunks_path)
            .map_err(|e| io("open", &chunks_path, e))?;
        // SAFETY: the chunk bytes are shared with other processes on purpose; they are only
        // read and written as atomics (see `present`).
        let present = unsafe { MmapMut::map_mut(&cf) }.map_err(|e| io("map", &chunks_path, e))?;
        // Used now: the limit removes the entries used longest ago first.
        let _ = lock.set_modified(std::time::SystemTime::now());
        Ok(Entry {
            data_path,
            data,
            present,
            chunks,
            dir,
            _in_use: lock,
            fill: Mutex::new(None),
        })
    }

    pub(crate) fn data_path(&self) -> &Path {
        &self.data_path
    }

    pub(crate) fn data_file(&self) -> &File {
        &self.data
    }

    pub(crate) fn chunks(&self) -> u64 {
        self.chunks
    }

    fn byte(&self, c: u64) -> &AtomicU8 {
        assert!(c < self.chunks, "chunk {c} of {}", self.chunks);
        // SAFETY: in bounds (checked above); AtomicU8 has the size and alignment of u8, and
        // the map lives as long as `self`.
        unsafe { &*(self.present.as_ptr().add(c as usize) as *const AtomicU8) }
    }

    /// Whether chunk `c`'s bytes are in the data file.
    pub(crate) fn present(&self, c: u64) -> bool {
        self.byte(c).load(Ordering::Acquire) == 1
    }

    /// Marks chunk `c` present (after its bytes are written) or absent (to fetch it again).
    pub(crate) fn set_present(&self, c: u64, yes: bool) {
        self.byte(c).store(u8::from(yes), Ordering::Release);
    }

    /// Whether every chunk is present.
    pub(crate) fn complete(&self) -> bool {
        (0..self.chunks).all(|c| self.present(c))
    }

    /// Records that the entry is whole, for people looking at the cache.
    pub(crate) fn mark_complete(&self) {
        let _ = fs::write(self.dir.join("complete"), b"");
    }

    /// Takes the fill role if no other process has it; keeps it until the entry closes.
    pub(crate) fn take_fill_role(&self) -> bool {
        let p = self.dir.join("fill.lock");
        let Ok(f) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
        else {
            return false;
        };
        if f.try_lock().is_ok() {
            *self.fill.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
            true
        } else {
            false
        }
    }
}

/// Removes entries nobody uses, oldest use first, until `need` more bytes fit under the
/// limit; checks the disk has room for them either way.
fn make_room(opts: &Options, keep: &Path, need: u64) -> std::result::Result<(), String> {
    if let Some(free) = free_bytes(&opts.cache_dir) {
        if free < need {
            return Err(format!(
                "the cache folder {} has {:.2} GB free, the object needs {:.2} GB (set UIC_CACHE_DIR or --cache-dir to a larger disk)",
                opts.cache_dir.display(),
                free as f64 / 1e9,
                need as f64 / 1e9
            ));
        }
    }
    let Some(limit) = opts.limit else {
        return Ok(());
    };
    if need > limit {
        return Err(format!(
            "the object is {:.2} GB, over the cache limit of {:.2} GB (raise UIC_CACHE_LIMIT_GB or --cache-limit-gb)",
            need as f64 / 1e9,
            limit as f64 / 1e9
        ));
    }
    let mut entries: Vec<(std::time::SystemTime, PathBuf, u64)> = fs::read_dir(&opts.cache_dir)
        .map_err(|e| format!("cache: cannot list {}: {e}", opts.cache_dir.display()))?
        .filter_map(|d| d.ok())
        .map(|d| d.path())
        .filter(|p| p != keep && p.join("meta.json").exists())
        .map(|p| {
            let used = fs::metadata(p.join("lock"))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            let bytes = on_disk(&p);
            (used, p, bytes)
        })
        .collect();
    let mut total: u64 = entries.iter().map(|e| e.2).sum();
    entries.sort();
    for (_, p, bytes) in entries {
        if total + need <= limit {
            break;
        }
        let Ok(l) = OpenOptions::new().write(true).open(p.join("lock")) else {
            continue;
        };
        if l.try_lock().is_ok() {
            tracing::info!("cache: removing {} to stay under the limit", p.display());
            if fs::remove_dir_all(&p).is_ok() {
                total -= bytes;
            }
        }
    }
    if total + need > limit {
        return Err(format!(
            "the cache limit of {:.2} GB cannot hold {:.2} GB more beside the {:.2} GB of entries in use (raise UIC_CACHE_LIMIT_GB or --cache-limit-gb)",
            limit as f64 / 1e9,
            need as f64 / 1e9,
            total as f64 / 1e9
        ));
    }
    Ok(())
}

/// Bytes an entry takes on disk (its sparse data file counts what is written).
fn on_disk(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|d| d.ok()?.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

/// Free bytes on the file system holding `dir`, if it can be asked.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed struct for the kernel to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}
