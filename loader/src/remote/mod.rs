//! Record files in object storage: `s3://`, `gs://`, `az://` and `http(s)://` URLs, read
//! through a local cache at the speed of a local file once the cache holds them.
//!
//! How it works, and why:
//! - [`crate::RecordFile::open`] takes a URL wherever it takes a path. The object is read
//!   with the `object_store` crate; credentials and endpoints come from each provider's own
//!   environment variables (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`,
//!   `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...).
//! - The cache holds one sparse file per object version (the ETag, or the size and time
//!   without one), as long as the object, and a byte per chunk saying the chunk is there
//!   (`cache.rs`). The record file is memory-mapped from it, as a local file is: a chunk is
//!   written (`pwrite`) before its byte is set, so a killed run never leaves a chunk marked
//!   present that is not.
//! - Opening fetches the header and the tables first, and checks them as for a local file,
//!   so a bad URL or a corrupt object fails at once.
//! - Chunks come in large aligned range requests, several in flight: on demand for the
//!   records a batch needs ([`crate::RecordFile::fetch`]), ahead of it from the epoch's order
//!   ([`crate::RecordFile::will_need`]), and in the background for the rest (one process per
//!   object does that, the one holding the entry's fill lock; the others read what it wrote).
//! - Every record a batch reads is checked against its CRC-32C once per process. A mismatch
//!   fetches its chunks again, once; a second mismatch is an error naming the record.
//! - Transient errors are retried by `object_store` with backoff and jitter for at most
//!   [`Options::retry_timeout`]; what still fails is an [`Error::Remote`] naming the URL, the
//!   byte range and the cause, never a short epoch or a substituted sample.

mod cache;
mod upload;

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme};

use crate::error::{Error, Result};

pub use upload::upload;

/// The URL schemes read as object storage.
const SCHEMES: &[&str] = &[
    "s3://", "s3a://", "gs://", "az://", "adl://", "azure://", "abfs://", "abfss://", "http://",
    "https://",
];

/// Whether `path` is a URL of object storage (or an HTTP server) rather than a local path.
pub fn is_url(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|s| SCHEMES.iter().any(|p| s.starts_with(p)))
}

/// How remote record files are fetched and cached.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Where cached objects live.
    pub cache_dir: PathBuf,
    /// The most bytes the cache may hold; older entries not in use are removed to make room.
    pub limit: Option<u64>,
    /// How long a failing request is retried before the run stops.
    pub retry_timeout: Duration,
    /// Fetch the whole object in the background (off: only what is read, and its prefetch).
    pub background_fill: bool,
    /// Bytes per range request (and per chunk of the cache).
    pub chunk: u64,
    /// Range requests in flight at once.
    pub in_flight: usize,
}

/// Environment variable naming the cache folder.
pub const CACHE_DIR_VAR: &str = "UIC_CACHE_DIR";
/// Environment variable with the cache's size limit in GB (10^9 bytes).
pub const CACHE_LIMIT_VAR: &str = "UIC_CACHE_LIMIT_GB";
/// Environment variable with the retry bound in seconds.
pub const RETRY_VAR: &str = "UIC_REMOTE_RETRY_SECS";

impl Default for Options {
    fn default() -> Self {
        Options {
            cache_dir: default_cache_dir(),
            limit: None,
            retry_timeout: Duration::from_secs(120),
            background_fill: true,
            chunk: 8 << 20,
            in_flight: 8,
        }
    }
}

impl Options {
    /// The defaults, with the cache folder, size limit and retry bound from
    /// `UIC_CACHE_DIR`, `UIC_CACHE_LIMIT_GB` and `UIC_REMOTE_RETRY_SECS` where set.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a limit or bound that is not a positive number.
    pub fn from_env() -> Result<Options> {
        let mut o = Options::default();
        if let Some(d) = std::env::var_os(CACHE_DIR_VAR).filter(|d| !d.is_empty()) {
            o.cache_dir = PathBuf::from(d);
        }
        let number = |var: &str| -> Result<Option<f64>> {
            match std::env::var(var) {
                Err(_) => Ok(None),
                Ok(v) => match v.trim().parse::<f64>() {
                    Ok(x) if x > 0.0 && x.is_finite() => Ok(Some(x)),
                    _ => Err(Error::InvalidArgument(format!(
                        "{var}={v} is not a positive number"
                    ))),
                },
            }
        };
        if let Some(gb) = number(CACHE_LIMIT_VAR)? {
            o.limit = Some((gb * 1e9) as u64);
        }
        if let Some(s) = number(RETRY_VAR)? {
            o.retry_timeout = Duration::from_secs_f64(s);
        }
        Ok(o)
    }
}

/// `$XDG_CACHE_HOME/uic`, else `~/.cache/uic`, else a folder in the temporary directory.
fn default_cache_dir() -> PathBuf {
    let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty());
    let home = || std::env::var_os("HOME").filter(|d| !d.is_empty());
    match (xdg, home()) {
        (Some(x), _) => PathBuf::from(x).join("uic"),
        (None, Some(h)) => PathBuf::from(h).join(".cache").join("uic"),
        (None, None) => std::env::temp_dir().join("uic-cache"),
    }
}

/// Builds the store for `url` from the provider's environment variables, with the retry
/// bound of `opts`, and the object's path in it.
pub(crate) fn store_for(url: &str, opts: &Options) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    let bad = |reason: String| Error::Remote {
        url: url.to_string(),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
    let (scheme, path) =
        ObjectStoreScheme::parse(&parsed).map_err(|e| bad(format!("not a storage URL: {e}")))?;
    if path.as_ref().is_empty() {
        return Err(bad(
            "the URL names no object (a bucket or folder only)".into()
        ));
    }
    let retry = object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5).min(opts.retry_timeout),
            base: 2.0,
        },
        max_retries: 100,
        retry_timeout: opts.retry_timeout,
    };
    let built: object_store::Result<Arc<dyn ObjectStore>> = match scheme {
        ObjectStoreScheme::AmazonS3 => object_store::aws::AmazonS3Builder::from_env()
            .with_url(url)
            .with_retry(retry)
            .build()
            .map(|s| Arc::new(s) as _),
        ObjectStoreScheme::GoogleCloudStorage => {
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as _)
        }
        ObjectStoreScheme::MicrosoftAzure => object_store::azure::MicrosoftAzureBuilder::from_env()
            .with_url(url)
            .with_retry(retry)
            .build()
            .map(|s| Arc::new(s) as _),
        ObjectStoreScheme::Http => object_store::http::HttpBuilder::new()
            .with_url(&parsed[..url::Position::BeforePath])
            .with_retry(retry)
            .with_client_options(
                object_store::ClientOptions::new().with_allow_http(parsed.scheme() == "http"),
            )
            .build()
            .map(|s| Arc::new(s) as _),
        other => return Err(bad(format!("{other:?} URLs are not read here"))),
    };
    let store = built.map_err(|e| bad(one_line(&e)))?;
    Ok((store, path))
}

/// An error's message and its causes on one line.
pub(crate) fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cause = c.source();
    }
    // An S3-style XML error body: its code and message are what a person needs.
    if let Some(at) = s.find("<?xml") {
        let tag = |t: &str| {
            let open = format!("<{t}>");
            let a = s.find(&open)? + open.len();
            let b = a + s[a..].find('<')?;
            Some(s[a..b].to_string())
        };
        let body = match (tag("Code"), tag("Message")) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c,
            _ => String::new(),
        };
        s = format!("{}{body}", &s[..at]);
    }
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.trim_end_matches(':').to_string()
}

/// Checks that `url` can be written, before the work that makes its bytes: starts a
/// multipart upload and aborts it (nothing appears).
///
/// # Errors
/// [`Error::Remote`] when the store refuses (no such bucket, no credentials...).
pub fn check_writable(url: &str, opts: &Options) -> Result<()> {
    let (store, location) = store_for(url, opts)?;
    let rt = runtime()?;
    rt.block_on(async {
        let mut up = store
            .put_multipart(&location)
            .await
            .map_err(|e| Error::Remote {
                url: url.to_string(),
                reason: format!("cannot upload: {}", one_line(&e)),
            })?;
        let _ = up.abort().await;
        Ok(())
    })
}

/// The tokio runtime the requests run on (two threads: the work is waiting).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("uic-remote")
        .enable_all()
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start the I/O runtime: {e}")))
}

/// The most consecutive chunks fetched in one request.
const RUN_CHUNKS: u64 = 4;

/// A remote record file's fetching side: the store, the cache entry and the fill thread.
/// [`crate::RecordFile`] maps [`Remote::data_path`] and asks for bytes before reading them.
#[derive(Debug)]
pub(crate) struct Remote {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: String,
    store: Arc<dyn ObjectStore>,
    location: ObjectPath,
    rt: tokio::runtime::Runtime,
    size: u64,
    chunk: u64,
    in_flight: usize,
    entry: cache::Entry,
    /// Chunks being fetched by this process, and the signal when one finishes.
    fetching: Mutex<HashSet<u64>>,
    fetched: Condvar,
    /// Chunks to fetch ahead, from [`Remote::will_need`].
    hints: Mutex<VecDeque<u64>>,
    /// Records whose CRC this process has checked, a bit each (sized once the tables are
    /// read).
    checked: OnceLock<Vec<AtomicU64>>,
    stop: AtomicBool,
}

impl Remote {
    /// Opens `url`: asks the store for the object's size and version, opens (or makes) its
    /// cache entry, and fetches the header and tables. Starts the fill thread.
    pub(crate) fn open(url: &str, opts: &Options) -> Result<Remote> {
        if opts.chunk == 0 || opts.in_flight == 0 {
            return Err(Error::InvalidArgument(
                "the chunk size and the requests in flight must be positive".into(),
            ));
        }
        let (store, location) = store_for(url, opts)?;
        let rt = runtime()?;
        let meta = rt
            .block_on(store.head(&location))
            .map_err(|e| Error::Remote {
                url: url.to_string(),
                reason: format!("cannot read the object's size: {}", one_line(&e)),
            })?;
        if meta.size < crate::format::HEADER_LEN as u64 {
            return Err(Error::Remote {
                url: url.to_string(),
                reason: format!(
                    "the object is {} bytes, too short for a record file",
                    meta.size
                ),
            });
        }
        let entry = cache::Entry::open(opts, url, &meta)?;
        let chunks = meta.size.div_ceil(opts.chunk);
        let inner = Arc::new(Inner {
            url: url.to_string(),
            store,
            location,
            rt,
            size: meta.size,
            chunk: opts.chunk,
            in_flight: opts.in_flight,
            entry,
            fetching: Mutex::new(HashSet::new()),
            fetched: Condvar::new(),
            hints: Mutex::new(VecDeque::new()),
            checked: OnceLock::new(),
            stop: AtomicBool::new(false),
        });
        debug_assert_eq!(inner.entry.chunks(), chunks);
        Ok(Remote { inner })
    }

    /// Sizes the per-record CRC bits and starts the fill thread, once the tables are known.
    pub(crate) fn start(&self, records: usize, opts: &Options) {
        let inner = &self.inner;
        let _ = inner.checked.set(
            (0..records.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        );
        if inner.entry.complete() {
            return;
        }
        let fill = opts.background_fill && inner.entry.take_fill_role();
        let worker = Arc::downgrade(inner);
        let started = std::thread::Builder::new()
            .name("uic-fill".into())
            .spawn(move || Inner::fill(worker, fill));
        if let Err(e) = started {
            tracing::warn!("cannot start the cache's fill thread ({e}); chunks come on demand");
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.inner.url
    }

    pub(crate) fn size(&self) -> u64 {
        self.inner.size
    }

    pub(crate) fn data_path(&self) -> &Path {
        self.inner.entry.data_path()
    }

    /// Whether bytes `r` of the object are in the cache.
    pub(crate) fn is_present(&self, r: Range<u64>) -> bool {
        let inner = &self.inner;
        r.start < r.end
            && r.end <= inner.size
            && (r.start / inner.chunk..=(r.end - 1) / inner.chunk).all(|c| inner.entry.present(c))
    }

    /// Makes bytes `r` of the object present in the cache.
    pub(crate) fn ensure(&self, r: Range<u64>) -> Result<()> {
        if self.is_present(r.clone()) {
            return Ok(());
        }
        self.inner.ensure(&self.inner.chunks_of(r))
    }

    /// Makes the records' bytes present, fetching their chunks together, and checks each
    /// record's CRC once. `extent` gives a record's offset, length and CRC.
    pub(crate) fn fetch(
        &self,
        records: &[usize],
        extent: impl Fn(usize) -> (u64, u32, u32),
        data: impl Fn(usize) -> u32,
        name: impl Fn(usize) -> String,
    ) -> Result<()> {
        let inner = &self.inner;
        let todo: Vec<usize> = records
            .iter()
            .copied()
            .filter(|&i| !inner.is_checked(i))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let mut chunks: Vec<u64> = todo
            .iter()
            .flat_map(|&i| {
                let (off, len, _) = extent(i);
                inner.chunks_of(off..off + len as u64)
            })
            .collect();
        chunks.sort_unstable();
        chunks.dedup();
        inner.ensure(&chunks)?;
        for i in todo {
            let (off, len, crc) = extent(i);
            if data(i) != crc {
                // Fetched again, once: the cache's copy may be what is wrong.
                let again = inner.chunks_of(off..off + len as u64);
                for &c in &again {
                    inner.entry.set_present(c, false);
                }
                inner.ensure(&again)?;
                let actual = data(i);
                if actual != crc {
                    return Err(Error::Remote {
                        url: inner.url.clone(),
                        reason: format!(
                            "record {i} ({}) at bytes {off}..{} fails its CRC-32C: stored {crc:#010x}, fetched {actual:#010x}",
                            name(i),
                            off + len as u64
                        ),
                    });
                }
            }
            inner.set_checked(i);
        }
        Ok(())
    }

    /// Asks for these byte ranges to be fetched ahead, without waiting.
    pub(crate) fn will_need(&self, ranges: impl Iterator<Item = Range<u64>>) {
        let inner = &self.inner;
        let mut hints = inner.hints.lock().unwrap_or_else(|e| e.into_inner());
        for r in ranges {
            for c in inner.chunks_of(r) {
                if !inner.entry.present(c) && !hints.contains(&c) {
                    hints.push_back(c);
                }
            }
        }
    }

    /// Fetches every chunk not yet present.
    pub(crate) fn ensure_all(&self) -> Result<()> {
        let missing: Vec<u64> = (0..self.inner.entry.chunks())
            .filter(|&c| !self.inner.entry.present(c))
            .collect();
        for part in missing.chunks(64) {
            self.inner.ensure(part)?;
        }
        Ok(())
    }

    /// How many bytes of the object the cache holds.
    pub(crate) fn cached_bytes(&self) -> u64 {
        let e = &self.inner.entry;
        (0..e.chunks())
            .filter(|&c| e.present(c))
            .map(|c| {
                let r = self.inner.range(c);
                r.end - r.start
            })
            .sum()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
    }
}

impl Inner {
    fn range(&self, c: u64) -> Range<u64> {
        c * self.chunk..((c + 1) * self.chunk).min(self.size)
    }

    fn chunks_of(&self, r: Range<u64>) -> Vec<u64> {
        if r.start >= r.end || r.start >= self.size {
            return Vec::new();
        }
        let end = r.end.min(self.size);
        (r.start / self.chunk..end.div_ceil(self.chunk)).collect()
    }

    fn is_checked(&self, i: usize) -> bool {
        self.checked
            .get()
            .and_then(|c| c.get(i / 64))
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (i % 64)) != 0)
    }

    fn set_checked(&self, i: usize) {
        if let Some(w) = self.checked.get().and_then(|c| c.get(i / 64)) {
            w.fetch_or(1 << (i % 64), Ordering::AcqRel);
        }
    }

    /// Makes `chunks` present: fetches those nobody in this process is fetching, several at
    /// once, then waits for the rest.
    fn ensure(&self, chunks: &[u64]) -> Result<()> {
        let mut mine = Vec::new();
        let mut theirs = Vec::new();
        {
            let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
            for &c in chunks {
                if self.entry.present(c) {
                    continue;
                }
                if fetching.insert(c) {
                    mine.push(c);
                } else {
                    theirs.push(c);
                }
            }
        }
        let result = if mine.is_empty() {
            Ok(())
        } else {
            // Consecutive chunks go in one request (fewer requests, the same cache).
            mine.sort_unstable();
            let mut runs: Vec<(u64, u64)> = Vec::new();
            for &c in &mine {
                match runs.last_mut() {
                    Some((first, n)) if *first + *n == c && *n < RUN_CHUNKS => *n += 1,
                    _ => runs.push((c, 1)),
                }
            }
            let fetches = futures::stream::iter(runs.iter().map(|&(c, n)| self.fetch_run(c, n)))
                .buffer_unordered(self.in_flight)
                .try_collect::<()>();
            self.rt.block_on(fetches)
        };
        {
            let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
            for c in &mine {
                fetching.remove(c);
            }
        }
        self.fetched.notify_all();
        result?;
        for c in theirs {
            let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
            while fetching.contains(&c) {
                fetching = self
                    .fetched
                    .wait(fetching)
                    .unwrap_or_else(|e| e.into_inner());
            }
            drop(fetching);
            if !self.entry.present(c) {
                // The other fetch failed: try it here, and report our own error.
                self.ensure(&[c])?;
            }
        }
        Ok(())
    }

    /// Fetches chunks `c..c + n` in one request, writes them, then marks them present.
    async fn fetch_run(&self, c: u64, n: u64) -> Result<()> {
        let r = self.range(c).start..self.range(c + n - 1).end;
        let fail = |reason: String| Error::Remote {
            url: self.url.clone(),
            reason: format!("cannot fetch bytes {}..{}: {reason}", r.start, r.end),
        };
        let bytes = self
            .store
            .get_range(&self.location, r.clone())
            .await
            .map_err(|e| fail(one_line(&e)))?;
        if bytes.len() as u64 != r.end - r.start {
            return Err(fail(format!(
                "the server sent {} bytes (the object changed?)",
                bytes.len()
            )));
        }
        self.entry
            .data_file()
            .write_all_at(&bytes, r.start)
            .map_err(|e| fail(format!("cannot write the cache: {e}")))?;
        for k in c..c + n {
            self.entry.set_present(k, true);
        }
        Ok(())
    }

    /// The fill thread: fetches the chunks asked for ahead, then (with `everything`) the
    /// rest in file order, until the object is cached or the file is closed. It holds the
    /// file only while it fetches, so closing the file ends it after the requests in flight.
    fn fill(this: std::sync::Weak<Self>, everything: bool) {
        let mut next = 0u64;
        let mut failures = 0u32;
        loop {
            let Some(me) = this.upgrade() else {
                return;
            };
            if me.stop.load(Ordering::SeqCst) {
                return;
            }
            let mut batch: Vec<u64> = {
                let mut hints = me.hints.lock().unwrap_or_else(|e| e.into_inner());
                let mut b = Vec::new();
                while b.len() < me.in_flight {
                    match hints.pop_front() {
                        Some(c) if !me.entry.present(c) => b.push(c),
                        Some(_) => {}
                        None => break,
                    }
                }
                b
            };
            if batch.is_empty() && everything {
                while next < me.entry.chunks() && batch.len() < me.in_flight * RUN_CHUNKS as usize {
                    if !me.entry.present(next) {
                        batch.push(next);
                    }
                    next += 1;
                }
                if batch.is_empty() {
                    if let Some(c) = (0..me.entry.chunks()).find(|&c| !me.entry.present(c)) {
                        next = c;
                        continue;
                    }
                    me.entry.mark_complete();
                    return;
                }
            }
            if batch.is_empty() {
                drop(me);
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            match me.ensure(&batch) {
                Ok(()) => failures = 0,
                Err(e) => {
                    // The reads that need these bytes report the error; the fill waits.
                    failures += 1;
                    tracing::debug!("cache fill: {e}");
                    drop(me);
                    std::thread::sleep(Duration::from_millis(200 << failures.min(5)));
                }
            }
        }
    }
}

/// Opens the file a [`Remote`] caches, read-only, for mapping.
pub(crate) fn open_cached(remote: &Remote) -> Result<File> {
    File::open(remote.data_path()).map_err(|e| Error::Remote {
        url: remote.url().to_string(),
        reason: format!(
            "cannot open the cached copy {}: {e}",
            remote.data_path().display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        for u in [
            "s3://b/k.uicr",
            "gs://b/k",
            "az://c/k",
            "https://h/x",
            "http://127.0.0.1:9/x",
        ] {
            assert!(is_url(Path::new(u)), "{u}");
        }
        for p in ["train.uicr", "/data/s3://x", "./https:/x", "s3:/x"] {
            assert!(!is_url(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn a_url_without_an_object_is_refused_in_one_line() {
        let e = store_for("s3://bucket", &Options::default())
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("names no object") && e.contains("s3://bucket"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn an_xml_error_body_shrinks_to_its_code_and_message() {
        let e = std::io::Error::other(
            "Error performing POST http://h/b/k - 404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><RequestId>X</RequestId></Error>",
        );
        assert_eq!(
            one_line(&e),
            "Error performing POST http://h/b/k - 404 Not Found: NoSuchBucket: The specified bucket does not exist"
        );
    }

    #[test]
    fn the_environment_sets_the_cache_and_bounds() {
        // Read-only use of the environment: the defaults hold without the variables.
        let o = Options::default();
        assert!(o.cache_dir.ends_with("uic") || o.cache_dir.ends_with("uic-cache"));
        assert_eq!(o.retry_timeout, Duration::from_secs(120));
        assert!(o.chunk >= 1 << 20 && o.in_flight > 1);
    }
}
