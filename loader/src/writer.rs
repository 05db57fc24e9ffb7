//! [`RecordWriter`]: streams samples into a record file, atomically.
//!
//! Samples are appended in order; the tables and the header are written by
//! [`RecordWriter::finish`]. Until then the bytes live in a temporary file beside the
//! target whose header is all zeros, so no crash, kill or error can leave anything that
//! opens as a valid record file: the header is written last, the file is fsynced, renamed
//! over the target, and the directory is fsynced.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::{
    align_up, encode_strings, Entry, Header, CHECKSUM_CRC32C, DEFAULT_ALIGN, ENTRY_CONVERTED,
    ENTRY_LEN, FLAG_HAS_LABELS, HEADER_LEN, NO_LABEL, VERSION,
};
use crate::temp::{self, temp_path};
use crate::StorageMode;

/// Settings of a new record file.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Storage mode of every sample.
    pub mode: StorageMode,
    /// Record alignment in the data region, a power of two (default 4096, one page).
    pub align: u32,
    /// Class names; empty for an unlabeled dataset. Labels index into this list.
    pub classes: Vec<Vec<u8>>,
    /// FFCV-style page grouping: no record smaller than this many bytes straddles a
    /// multiple of it (padding instead). `None` (the default) packs records; this exists to
    /// measure the choice (see docs/format.md), and readers need not know it was used.
    pub group: Option<u64>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            mode: StorageMode::Jpeg,
            align: DEFAULT_ALIGN,
            classes: Vec::new(),
            group: None,
        }
    }
}

/// One sample to append.
#[derive(Debug, Clone, Copy)]
pub struct NewSample<'a> {
    /// The stored bytes: a JPEG file, or `width * height * 3` RGB bytes in raw mode.
    pub data: &'a [u8],
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Class index; required when the dataset has classes, forbidden otherwise.
    pub label: Option<u32>,
    /// Source path relative to the input root, as raw bytes (need not be UTF-8).
    pub source: &'a [u8],
    /// Whether `data` differs from the source file's bytes (re-encoded or converted).
    pub converted: bool,
}

/// What [`RecordWriter::finish`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// The final path.
    pub path: PathBuf,
    /// Number of samples.
    pub num_samples: u64,
    /// Size of the file in bytes.
    pub file_len: u64,
    /// Sum of the record lengths, without padding.
    pub payload_bytes: u64,
    /// Record alignment used.
    pub align: u32,
}

/// Streams samples into a record file. See the module docs for the crash guarantees.
///
/// ```
/// use uic_loader::{NewSample, RecordFile, RecordWriter, StorageMode, WriterOptions};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("tiny.uicr");
/// let mut w = RecordWriter::create(&path, WriterOptions { mode: StorageMode::Raw, ..Default::default() }).unwrap();
/// let pixels = [255u8, 0, 0, 0, 255, 0]; // 2x1 RGB
/// w.append(&NewSample { data: &pixels, width: 2, height: 1, label: None, source: b"a.png", converted: true }).unwrap();
/// w.finish().unwrap();
/// let f = RecordFile::open(&path).unwrap();
/// assert_eq!(f.sample(0).data, &pixels);
/// ```
#[derive(Debug)]
pub struct RecordWriter {
    out: BufWriter<File>,
    tmp_path: PathBuf,
    path: PathBuf,
    opts: WriterOptions,
    pos: u64,
    entries: Vec<u8>,
    /// The path table as it will be written, less its count: `n + 1` little-endian `u64`
    /// offsets and the blob of paths. Kept encoded (8 bytes plus the path per sample), not
    /// as one allocation per path, so that a million samples cost tens of megabytes.
    path_offsets: Vec<u8>,
    path_blob: Vec<u8>,
    count: usize,
    payload: u64,
    finished: bool,
}

impl RecordWriter {
    /// Starts a record file at `path` (written to a temporary file until [`finish`]).
    ///
    /// [`finish`]: RecordWriter::finish
    ///
    /// # Errors
    /// An invalid alignment, more than `u32::MAX - 1` classes, or an I/O error.
    pub fn create(path: impl AsRef<Path>, opts: WriterOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if opts
            .group
            .is_some_and(|g| !g.is_power_of_two() || g < opts.align as u64)
        {
            return Err(Error::InvalidArgument(
                "page group must be a power of two, at least the alignment".into(),
            ));
        }
        if !opts.align.is_power_of_two() || opts.align < 8 {
            return Err(Error::InvalidArgument(format!(
                "record alignment {} must be a power of two of at least 8",
                opts.align
            )));
        }
        if opts.classes.len() >= NO_LABEL as usize {
            return Err(Error::InvalidArgument(format!(
                "{} classes is too many",
                opts.classes.len()
            )));
        }
        path.file_name().ok_or_else(|| {
            Error::InvalidArgument(format!("output {} has no file name", path.display()))
        })?;
        // Named here, or the error would name the temporary file.
        match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(dir) if !dir.is_dir() => {
                return Err(Error::InvalidArgument(format!(
                    "cannot create {}: the folder {} does not exist",
                    path.display(),
                    dir.display()
                )))
            }
            _ => {}
        }
        let tmp_path = temp_path(&path);
        let file = File::create(&tmp_path).at("cannot create", &tmp_path)?;
        temp::register(&tmp_path);
        let mut out = BufWriter::with_capacity(1 << 20, file);
        // A zero header until finish(): the file cannot be mistaken for a valid one.
        let data_offset = align_up(HEADER_LEN as u64, opts.align as u64);
        out.write_all(&vec![0u8; data_offset as usize])
            .at("cannot write", &tmp_path)?;
        Ok(RecordWriter {
            out,
            tmp_path,
            path,
            opts,
            pos: data_offset,
            entries: Vec::new(),
            path_offsets: 0u64.to_le_bytes().to_vec(),
            path_blob: Vec::new(),
            count: 0,
            payload: 0,
            finished: false,
        })
    }

    /// Number of samples appended so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no sample was appended yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Reserves table space for `samples` more samples whose source paths total about
    /// `path_bytes`: with the count known up front, the tables never grow by copying,
    /// which at a million samples saves up to half their memory (about 80 bytes a sample).
    pub fn reserve(&mut self, samples: usize, path_bytes: usize) {
        self.entries.reserve_exact(samples * ENTRY_LEN);
        self.path_offsets.reserve_exact(samples * 8);
        self.path_blob.reserve_exact(path_bytes);
    }

    /// Appends one sample.
    ///
    /// # Errors
    /// A label that does not fit the class list, raw bytes that do not match the size,
    /// an empty record, or an I/O error.
    pub fn append(&mut self, s: &NewSample<'_>) -> Result<()> {
        let label = match (s.label, self.opts.classes.is_empty()) {
            (Some(l), false) if (l as usize) < self.opts.classes.len() => l,
            (None, true) => NO_LABEL,
            (Some(l), _) => {
                return Err(Error::InvalidArgument(format!(
                    "label {l} of {} does not fit {} classes",
                    String::from_utf8_lossy(s.source),
                    self.opts.classes.len()
                )))
            }
            (None, false) => {
                return Err(Error::InvalidArgument(format!(
                    "{} has no label but the dataset has classes",
                    String::from_utf8_lossy(s.source)
                )))
            }
        };
        if s.data.is_empty() || s.width == 0 || s.height == 0 {
            return Err(Error::InvalidArgument(format!(
                "empty record for {}",
                String::from_utf8_lossy(s.source)
            )));
        }
        if self.opts.mode == StorageMode::Raw
            && s.data.len() as u64 != s.width as u64 * s.height as u64 * 3
        {
            return Err(Error::InvalidArgument(format!(
                "raw record of {} has {} bytes, expected {}x{}x3",
                String::from_utf8_lossy(s.source),
                s.data.len(),
                s.width,
                s.height
            )));
        }
        let len = u32::try_from(s.data.len()).map_err(|_| {
            Error::InvalidArgument(format!(
                "record of {} is over 4 GiB",
                String::from_utf8_lossy(s.source)
            ))
        })?;
        if let Some(group) = self.opts.group {
            let start_in_group = self.pos % group;
            if start_in_group + len as u64 > group && (len as u64) <= group {
                let next = align_up(self.pos, group.max(self.opts.align as u64));
                self.write_zeros(next - self.pos)?;
                self.pos = next;
            }
        }
        let entry = Entry {
            offset: self.pos,
            len,
            width: s.width,
            height: s.height,
            label,
            crc: crc32c::crc32c(s.data),
            mode: self.opts.mode.code(),
            channels: 3,
            flags: if s.converted { ENTRY_CONVERTED } else { 0 },
        };
        self.out
            .write_all(s.data)
            .at("cannot write", &self.tmp_path)?;
        let end = self.pos + len as u64;
        let next = align_up(end, self.opts.align as u64);
        self.write_zeros(next - end)?;
        self.pos = next;
        self.payload += len as u64;
        self.entries.extend_from_slice(&entry.encode());
        self.path_blob.extend_from_slice(s.source);
        self.path_offsets
            .extend_from_slice(&(self.path_blob.len() as u64).to_le_bytes());
        self.count += 1;
        Ok(())
    }

    /// Writes the tables and the header, syncs, and renames the file into place.
    ///
    /// # Errors
    /// An I/O error; the temporary file is removed and the target is left untouched.
    pub fn finish(mut self) -> Result<WrittenFile> {
        let data_offset = align_up(HEADER_LEN as u64, self.opts.align as u64);
        let data_len = self.pos - data_offset;
        let classes = encode_strings(self.opts.classes.iter().map(Vec::as_slice));
        // The path table, as `encode_strings` lays it out: count, offsets, blob.
        let path_count = (self.count as u64).to_le_bytes();
        let paths_len = (8 + self.path_offsets.len() + self.path_blob.len()) as u64;
        let samples_offset = self.pos;
        let classes_offset = samples_offset + self.entries.len() as u64;
        let paths_offset = classes_offset + classes.len() as u64;
        let file_len = paths_offset + paths_len;
        let mut crc = crc32c::crc32c(&self.entries);
        crc = crc32c::crc32c_append(crc, &classes);
        for part in [&path_count[..], &self.path_offsets, &self.path_blob] {
            crc = crc32c::crc32c_append(crc, part);
        }
        let header = Header {
            version: VERSION,
            flags: if self.opts.classes.is_empty() {
                0
            } else {
                FLAG_HAS_LABELS
            },
            align: self.opts.align,
            num_samples: self.count as u64,
            num_classes: self.opts.classes.len() as u32,
            mode: self.opts.mode,
            checksum: CHECKSUM_CRC32C,
            data_offset,
            data_len,
            samples_offset,
            classes_offset,
            classes_len: classes.len() as u64,
            paths_offset,
            paths_len,
            file_len,
            tables_crc: crc,
        };
        let tmp = self.tmp_path.clone();
        let entries = std::mem::take(&mut self.entries);
        let offsets = std::mem::take(&mut self.path_offsets);
        let blob = std::mem::take(&mut self.path_blob);
        for part in [&entries[..], &classes, &path_count, &offsets, &blob] {
            self.out.write_all(part).at("cannot write", &tmp)?;
        }
        self.out.flush().at("cannot write", &tmp)?;
        let file = self.out.get_mut();
        file.seek(SeekFrom::Start(0)).at("cannot seek", &tmp)?;
        file.write_all(&header.encode()).at("cannot write", &tmp)?;
        file.sync_all().at("cannot sync", &tmp)?;
        std::fs::rename(&tmp, &self.path).at("cannot rename temporary file onto", &self.path)?;
        temp::unregister(&tmp);
        self.finished = true;
        sync_parent_dir(&self.path);
        Ok(WrittenFile {
            path: self.path.clone(),
            num_samples: header.num_samples,
            file_len,
            payload_bytes: self.payload,
            align: self.opts.align,
        })
    }

    fn write_zeros(&mut self, mut n: u64) -> Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.out
                .write_all(&ZEROS[..k])
                .at("cannot write", &self.tmp_path)?;
            n -= k as u64;
        }
        Ok(())
    }
}

impl Drop for RecordWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.tmp_path);
            temp::unregister(&self.tmp_path);
        }
    }
}

/// Makes a rename durable. Best effort: some file systems refuse to sync directories.
pub(crate) fn sync_parent_dir(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename.
///
/// # Errors
/// Any I/O error, with the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    temp::register(&tmp);
    let result = (|| {
        let mut f = File::create(&tmp).at("cannot create", &tmp)?;
        f.write_all(bytes).at("cannot write", &tmp)?;
        f.sync_all().at("cannot sync", &tmp)?;
        std::fs::rename(&tmp, path).at("cannot rename temporary file onto", path)
    })();
    temp::unregister(&tmp);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else {
        sync_parent_dir(path);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordFile;

    #[test]
    fn the_path_table_is_encode_strings_of_the_sources() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.uicr");
        let mut w = RecordWriter::create(
            &path,
            WriterOptions {
                mode: StorageMode::Raw,
                align: 8,
                ..Default::default()
            },
        )
        .unwrap();
        let sources: [&[u8]; 4] = [b"a/1.png", b"", b"\xffnot-utf8", b"c/deeper/2.png"];
        // A reservation too small for the paths changes nothing but capacity.
        w.reserve(4, 3);
        for s in sources {
            w.append(&NewSample {
                data: &[1, 2, 3],
                width: 1,
                height: 1,
                label: None,
                source: s,
                converted: false,
            })
            .unwrap();
        }
        assert_eq!(w.len(), 4);
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let f = RecordFile::open(&path).unwrap();
        let h = f.header();
        let table = &bytes[h.paths_offset as usize..(h.paths_offset + h.paths_len) as usize];
        assert_eq!(table, encode_strings(sources.into_iter()));
        assert_eq!(h.paths_offset + h.paths_len, h.file_len);
        for (i, s) in sources.iter().enumerate() {
            assert_eq!(f.source_path(i), *s);
        }
    }
}
