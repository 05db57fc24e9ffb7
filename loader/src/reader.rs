//! [`RecordFile`]: a memory-mapped, fully validated, O(1) random-access record file.

use std::borrow::Cow;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;

use crate::error::{Error, IoContext, Result};
use crate::format::{
    get_u64, Entry, Header, HeaderError, ENTRY_CONVERTED, ENTRY_LEN, HEADER_LEN, NO_LABEL, VERSION,
};
use crate::remote::{self, Remote};
use crate::StorageMode;

/// One sample, borrowed from the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample<'a> {
    /// Index in the file.
    pub index: usize,
    /// The stored bytes: a JPEG file, or RGB HWC pixels in raw mode.
    pub data: &'a [u8],
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Class index, if the dataset has labels.
    pub label: Option<u32>,
    /// How `data` is stored.
    pub mode: StorageMode,
    /// Whether `data` differs from the source file's bytes.
    pub converted: bool,
    /// CRC-32C of `data` as written.
    pub crc: u32,
}

/// A record that failed its checksum.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadRecord {
    /// Index in the file.
    pub index: usize,
    /// Source path relative to the conversion's input root (lossy UTF-8).
    pub path: String,
    /// CRC-32C stored in the sample table.
    pub expected: u32,
    /// CRC-32C of the bytes now in the file.
    pub actual: u32,
}

/// A byte-string table (class names or source paths), located in the map.
#[derive(Debug, Clone)]
struct StringTable {
    offsets_at: usize,
    blob: Range<usize>,
}

/// A read-only record file.
///
/// [`RecordFile::open`] checks the header, the table checksum and every sample-table entry
/// against the file length before it returns, so every later access is a bounds-checked
/// O(1) slice of the map that cannot fail: a truncated or tampered file is an error at
/// open time, never a panic or an out-of-bounds read later.
///
/// # Safety of the mapping
/// The file is memory-mapped. If another process truncates or rewrites it while it is
/// mapped, reads may see changed bytes or fault (SIGBUS). `uic convert` never does this:
/// it writes a new file and renames it over the old one, so an open map keeps the old,
/// complete file. Checksums ([`RecordFile::verify`]) detect bytes changed in place.
#[derive(Debug)]
pub struct RecordFile {
    map: Mmap,
    path: PathBuf,
    header: Header,
    classes: StringTable,
    paths: StringTable,
    /// The object and its cache, for a file opened from a URL.
    remote: Option<Remote>,
}

impl RecordFile {
    /// Maps and validates a record file.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, [`Error::Version`] for another format
    /// version, [`Error::Format`] for anything truncated, inconsistent or tampered with.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        if remote::is_url(path.as_ref()) {
            let url = path.as_ref().to_str().expect("a URL is UTF-8");
            return Self::open_url(url, &remote::Options::from_env()?);
        }
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).at("cannot open", &path)?;
        let meta = file.metadata().at("cannot stat", &path)?;
        if meta.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{} is a folder, not a record file",
                path.display()
            )));
        }
        let len = meta.len();
        if len < HEADER_LEN as u64 {
            return Err(Error::Format {
                path,
                reason: format!(
                    "file is {len} bytes, shorter than the {HEADER_LEN}-byte header (truncated, or not a record file)"
                ),
            });
        }
        // SAFETY: the map is read-only; see "Safety of the mapping" on the type.
        let map = unsafe { Mmap::map(&file) }.at("cannot memory-map", &path)?;
        Self::from_map(map, path, len, None)
    }

    /// Opens a record file in object storage (`s3://`, `gs://`, `az://`, `http(s)://`)
    /// through the local cache that `opts` describes ([`crate::remote`]). The header and
    /// tables are fetched and checked first; records are fetched as they are asked for
    /// ([`RecordFile::fetch`]), ahead of use ([`RecordFile::will_need`]) and in the
    /// background.
    ///
    /// # Errors
    /// [`Error::Remote`] when the object cannot be reached or cached, and the errors of a
    /// local file for what it holds.
    pub fn open_url(url: &str, opts: &remote::Options) -> Result<Self> {
        let r = Remote::open(url, opts)?;
        let path = PathBuf::from(url);
        let len = r.size();
        if len < HEADER_LEN as u64 {
            return Err(Error::Format {
                path,
                reason: format!(
                    "object is {len} bytes, shorter than the {HEADER_LEN}-byte header (not a record file)"
                ),
            });
        }
        r.ensure(0..HEADER_LEN as u64)?;
        let file = remote::open_cached(&r)?;
        // SAFETY: the cached copy is only written where no chunk is marked present, and
        // read only where one is (see `crate::remote`).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::Remote {
            url: url.to_string(),
            reason: format!("cannot memory-map the cached copy: {e}"),
        })?;
        // The tables, when the header is sane; an insane one is reported below.
        if let Ok(h) = Header::decode(&map[..HEADER_LEN]) {
            if h.samples_offset < len {
                r.ensure(h.samples_offset..len)?;
            }
        }
        let f = Self::from_map(map, path, len, Some(r))?;
        if let Some(r) = &f.remote {
            r.start(f.len(), opts);
        }
        Ok(f)
    }

    fn from_map(map: Mmap, path: PathBuf, len: u64, remote: Option<Remote>) -> Result<Self> {
        let p = path.clone();
        let bad = move |reason: String| Error::Format {
            path: p.clone(),
            reason,
        };
        let header = match Header::decode(&map[..HEADER_LEN]) {
            Ok(h) => h,
            Err(HeaderError::Magic) => {
                return Err(bad("bad magic bytes: not a uic record file".into()));
            }
            Err(HeaderError::Version(found)) => {
                return Err(Error::Version {
                    path,
                    found,
                    supported: VERSION,
                });
            }
            Err(HeaderError::Short(n)) => return Err(bad(format!("header is only {n} bytes"))),
            Err(HeaderError::Invalid(reason)) => return Err(bad(reason)),
        };
        if header.file_len != len {
            return Err(bad(format!(
                "file is {len} bytes but its header says {} (truncated or appended to)",
                header.file_len
            )));
        }
        let samples_len = header.samples_len().ok_or_else(|| {
            bad(format!(
                "{} samples overflow the sample table",
                header.num_samples
            ))
        })?;
        // The regions, in file order, must not overlap and must end inside the file.
        let regions = [
            ("data region", header.data_offset, header.data_len),
            ("sample table", header.samples_offset, samples_len),
            ("class table", header.classes_offset, header.classes_len),
            ("path table", header.paths_offset, header.paths_len),
        ];
        let mut prev_end = HEADER_LEN as u64;
        for (name, off, n) in regions {
            let end = off.checked_add(n).filter(|&e| e <= len).ok_or_else(|| {
                bad(format!(
                    "{name} at {off}+{n} runs past the end of the {len}-byte file"
                ))
            })?;
            if off < prev_end {
                return Err(bad(format!(
                    "{name} at {off} overlaps the region before it (ends at {prev_end})"
                )));
            }
            prev_end = end;
        }
        if !header.data_offset.is_multiple_of(header.align as u64) {
            return Err(bad(format!(
                "data region at {} is not {}-aligned",
                header.data_offset, header.align
            )));
        }
        let tables = header.samples_offset as usize..len as usize;
        let mut crc =
            crc32c::crc32c(&map[header.samples_offset as usize..][..samples_len as usize]);
        crc = crc32c::crc32c_append(
            crc,
            &map[header.classes_offset as usize..][..header.classes_len as usize],
        );
        crc = crc32c::crc32c_append(
            crc,
            &map[header.paths_offset as usize..][..header.paths_len as usize],
        );
        if crc != header.tables_crc {
            return Err(bad(format!(
                "table checksum mismatch (stored {:#010x}, computed {crc:#010x}): the tables at {}..{} were altered",
                header.tables_crc, tables.start, tables.end
            )));
        }
        let classes = string_table(
            &map,
            header.classes_offset,
            header.classes_len,
            header.num_classes as u64,
        )
        .map_err(|r| bad(format!("class table: {r}")))?;
        let paths = string_table(
            &map,
            header.paths_offset,
            header.paths_len,
            header.num_samples,
        )
        .map_err(|r| bad(format!("path table: {r}")))?;
        let f = RecordFile {
            map,
            path,
            header,
            classes,
            paths,
            remote,
        };
        for i in 0..f.len() {
            f.check_entry(i)
                .map_err(|r| bad(format!("sample {i} ({}): {r}", f.source_path_lossy(i))))?;
        }
        Ok(f)
    }

    fn check_entry(&self, i: usize) -> std::result::Result<(), String> {
        let e = self.entry(i);
        let h = &self.header;
        if e.mode != h.mode.code() {
            return Err(format!(
                "storage mode code {} differs from the file's {}",
                e.mode, h.mode
            ));
        }
        if e.channels != 3 {
            return Err(format!("{} channels, expected 3", e.channels));
        }
        if e.flags & !ENTRY_CONVERTED != 0 {
            return Err(format!("unknown flags {:#x}", e.flags));
        }
        if e.len == 0 || e.width == 0 || e.height == 0 {
            return Err(format!(
                "empty record ({} bytes, {}x{})",
                e.len, e.width, e.height
            ));
        }
        let data_end = h.data_offset + h.data_len;
        let end = e.offset.checked_add(e.len as u64);
        if e.offset < h.data_offset || end.is_none_or(|end| end > data_end) {
            return Err(format!(
                "data at {}+{} lies outside the data region {}..{data_end}",
                e.offset, e.len, h.data_offset
            ));
        }
        if !e.offset.is_multiple_of(h.align as u64) {
            return Err(format!("data at {} is not {}-aligned", e.offset, h.align));
        }
        if h.mode == StorageMode::Raw && e.len as u64 != e.width as u64 * e.height as u64 * 3 {
            return Err(format!(
                "raw record of {} bytes for a {}x{} image",
                e.len, e.width, e.height
            ));
        }
        match (h.has_labels(), e.label) {
            (true, l) if l < h.num_classes => Ok(()),
            (false, NO_LABEL) => Ok(()),
            (_, l) => Err(format!("label {l} does not fit {} classes", h.num_classes)),
        }
    }

    /// Sample `i`'s entry in the sample table: its place, size, label and CRC, without
    /// reading its bytes (for a file opened from a URL, nothing is fetched).
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn record_entry(&self, i: usize) -> Entry {
        assert!(
            i < self.len(),
            "sample {i} out of range ({} samples)",
            self.len()
        );
        self.entry(i)
    }

    fn entry(&self, i: usize) -> Entry {
        let at = self.header.samples_offset as usize + i * ENTRY_LEN;
        Entry::decode(&self.map[at..at + ENTRY_LEN])
    }

    fn string(&self, t: &StringTable, i: usize) -> &[u8] {
        let a = get_u64(&self.map, t.offsets_at + 8 * i) as usize;
        let b = get_u64(&self.map, t.offsets_at + 8 * (i + 1)) as usize;
        &self.map[t.blob.start + a..t.blob.start + b]
    }

    /// The path the file was opened from (the URL, for a remote file).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The URL, for a file opened from one.
    pub fn url(&self) -> Option<&str> {
        self.remote.as_ref().map(|r| r.url())
    }

    /// Makes the records' bytes readable: for a file opened from a URL, fetches those not
    /// cached (together, several requests at once) and checks each record's CRC-32C the
    /// first time this process reads it. Nothing to do for a local file.
    ///
    /// # Errors
    /// [`Error::Remote`] when a range cannot be fetched within the retry bound, or a record
    /// fails its CRC twice (fetched again in between).
    pub fn fetch(&self, records: &[usize]) -> Result<()> {
        let Some(r) = &self.remote else {
            return Ok(());
        };
        r.fetch(
            records,
            |i| {
                let e = self.entry(i);
                (e.offset, e.len, e.crc)
            },
            |i| {
                let e = self.entry(i);
                crc32c::crc32c(&self.map[e.offset as usize..][..e.len as usize])
            },
            |i| self.source_path_lossy(i).into_owned(),
        )
    }

    /// Whether record `i`'s bytes are on this machine (always, for a local file): for a file
    /// opened from a URL, whether the cache holds its chunks.
    pub fn is_cached(&self, i: usize) -> bool {
        match &self.remote {
            None => true,
            Some(r) => {
                let e = self.entry(i);
                r.is_present(e.offset..e.offset + e.len as u64)
            }
        }
    }

    /// Hints that these records will be read soon: a file opened from a URL fetches them in
    /// the background. Nothing to do for a local file.
    pub fn will_need(&self, records: &[usize]) {
        if let Some(r) = &self.remote {
            r.will_need(records.iter().map(|&i| {
                let e = self.entry(i);
                e.offset..e.offset + e.len as u64
            }));
        }
    }

    /// For a file opened from a URL, fetches every byte not cached yet (for a full scan such
    /// as [`RecordFile::verify`]). Nothing to do for a local file.
    ///
    /// # Errors
    /// [`Error::Remote`] when a range cannot be fetched within the retry bound.
    pub fn fetch_all(&self) -> Result<()> {
        match &self.remote {
            Some(r) => r.ensure_all(),
            None => Ok(()),
        }
    }

    /// For a file opened from a URL, the bytes of it the local cache holds.
    pub fn cached_bytes(&self) -> Option<u64> {
        self.remote.as_ref().map(|r| r.cached_bytes())
    }

    /// The decoded header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.header.num_samples as usize
    }

    /// Whether the file holds no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The storage mode of every sample.
    pub fn mode(&self) -> StorageMode {
        self.header.mode
    }

    /// Number of classes (0 for an unlabeled dataset).
    pub fn num_classes(&self) -> usize {
        self.header.num_classes as usize
    }

    /// Whether samples carry labels.
    pub fn has_labels(&self) -> bool {
        self.header.has_labels()
    }

    /// The name of class `c` (lossy UTF-8).
    ///
    /// # Panics
    /// If `c >= num_classes()`.
    pub fn class_name(&self, c: usize) -> Cow<'_, str> {
        assert!(
            c < self.num_classes(),
            "class {c} out of range ({} classes)",
            self.num_classes()
        );
        String::from_utf8_lossy(self.string(&self.classes, c))
    }

    /// All class names, in label order.
    pub fn class_names(&self) -> Vec<Cow<'_, str>> {
        (0..self.num_classes())
            .map(|c| self.class_name(c))
            .collect()
    }

    /// The source path of sample `i`, relative to the conversion's input root, as raw bytes.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn source_path(&self, i: usize) -> &[u8] {
        assert!(
            i < self.len(),
            "sample {i} out of range ({} samples)",
            self.len()
        );
        self.string(&self.paths, i)
    }

    /// The source path of sample `i` as lossy UTF-8, for messages.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn source_path_lossy(&self, i: usize) -> Cow<'_, str> {
        String::from_utf8_lossy(self.source_path(i))
    }

    /// Sample `i`, or `None` past the end. O(1), no copy.
    ///
    /// # Panics
    /// For a file opened from a URL, if the record's bytes are not cached and cannot be
    /// fetched: call [`RecordFile::fetch`] first to have that as an error.
    pub fn get(&self, i: usize) -> Option<Sample<'_>> {
        if i >= self.len() {
            return None;
        }
        let e = self.entry(i);
        if let Some(r) = &self.remote {
            if let Err(err) = r.ensure(e.offset..e.offset + e.len as u64) {
                panic!("{err}");
            }
        }
        Some(Sample {
            index: i,
            data: &self.map[e.offset as usize..e.offset as usize + e.len as usize],
            width: e.width,
            height: e.height,
            label: (e.label != NO_LABEL).then_some(e.label),
            mode: self.header.mode,
            converted: e.flags & ENTRY_CONVERTED != 0,
            crc: e.crc,
        })
    }

    /// Sample `i`. O(1), no copy.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn sample(&self, i: usize) -> Sample<'_> {
        self.get(i)
            .unwrap_or_else(|| panic!("sample {i} out of range ({} samples)", self.len()))
    }

    /// The label of every sample (`None` for an unlabeled dataset), in index order.
    pub fn labels(&self) -> Option<Vec<u32>> {
        self.has_labels()
            .then(|| (0..self.len()).map(|i| self.entry(i).label).collect())
    }

    /// The file offset and length of every record, in index order (for page planning).
    pub fn extents(&self) -> Vec<(u64, u32)> {
        (0..self.len())
            .map(|i| self.entry(i))
            .map(|e| (e.offset, e.len))
            .collect()
    }

    /// Recomputes every record's checksum (in parallel) and returns those that differ,
    /// in index order.
    pub fn verify(&self) -> Vec<BadRecord> {
        (0..self.len())
            .into_par_iter()
            .filter_map(|i| {
                let s = self.sample(i);
                let actual = crc32c::crc32c(s.data);
                (actual != s.crc).then(|| BadRecord {
                    index: i,
                    path: self.source_path_lossy(i).into_owned(),
                    expected: s.crc,
                    actual,
                })
            })
            .collect()
    }
}

fn string_table(
    map: &[u8],
    off: u64,
    len: u64,
    expected: u64,
) -> std::result::Result<StringTable, String> {
    let (off, len) = (off as usize, len as usize);
    if len < 16 {
        return Err(format!("{len} bytes is too short"));
    }
    let count = get_u64(map, off);
    if count != expected {
        return Err(format!("holds {count} strings, expected {expected}"));
    }
    let offsets_len = count
        .checked_add(1)
        .and_then(|n| n.checked_mul(8))
        .filter(|&n| n <= (len - 8) as u64)
        .ok_or_else(|| format!("{count} offsets do not fit in {len} bytes"))?
        as usize;
    let offsets_at = off + 8;
    let blob = offsets_at + offsets_len..off + len;
    let mut prev = 0u64;
    for i in 0..=count as usize {
        let o = get_u64(map, offsets_at + 8 * i);
        if (i == 0 && o != 0) || o < prev {
            return Err(format!("offset {i} ({o}) is out of order"));
        }
        prev = o;
    }
    if prev != blob.len() as u64 {
        return Err(format!(
            "strings end at {prev} but the blob is {} bytes",
            blob.len()
        ));
    }
    Ok(StringTable { offsets_at, blob })
}
