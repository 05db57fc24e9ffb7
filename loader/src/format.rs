//! The on-disk layout of a record file, version 1. `docs/format.md` has the byte-level table.
//!
//! Everything is little-endian and fixed width. The header is 128 bytes at offset 0 and
//! ends with a CRC-32C of its first 124 bytes. The data region starts at `data_offset`
//! (a multiple of `align`), each record starts at a multiple of `align`, and the tables
//! follow the data region. Nothing here touches files: these are pure encoders and
//! decoders of the fixed-width parts, shared by the writer and the reader.

use crate::StorageMode;

/// The first 8 bytes of every record file. The high byte and CR LF catch text-mode mangling.
pub const MAGIC: [u8; 8] = [0x89, b'U', b'I', b'C', b'R', b'\r', b'\n', 0x1a];
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 128;
/// Size of one sample-table entry.
pub const ENTRY_LEN: usize = 32;
/// The label value that means "no label".
pub const NO_LABEL: u32 = u32::MAX;
/// Default alignment of records in the data region (one page).
pub const DEFAULT_ALIGN: u32 = 4096;
/// Header flag: every sample has a label and the class table names the classes.
pub const FLAG_HAS_LABELS: u32 = 1;
/// Checksum kind: CRC-32C (Castagnoli), hardware accelerated on x86-64 and aarch64.
pub const CHECKSUM_CRC32C: u8 = 1;
/// Entry flag: the stored bytes are not the source file's bytes (re-encoded or converted).
pub const ENTRY_CONVERTED: u16 = 1;

/// The fixed header, decoded. Offsets are absolute file offsets; lengths are in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version ([`VERSION`] when written by this build).
    pub version: u32,
    /// Bit set of `FLAG_*`.
    pub flags: u32,
    /// Alignment of every record in the data region, a power of two.
    pub align: u32,
    /// Number of samples.
    pub num_samples: u64,
    /// Number of classes (0 when the dataset has no labels).
    pub num_classes: u32,
    /// The dataset's storage mode; every entry has this mode.
    pub mode: StorageMode,
    /// Checksum kind of the entries ([`CHECKSUM_CRC32C`]).
    pub checksum: u8,
    /// Start of the data region.
    pub data_offset: u64,
    /// Length of the data region.
    pub data_len: u64,
    /// Start of the sample table (`num_samples * 32` bytes).
    pub samples_offset: u64,
    /// Start of the class-name table.
    pub classes_offset: u64,
    /// Length of the class-name table.
    pub classes_len: u64,
    /// Start of the source-path table.
    pub paths_offset: u64,
    /// Length of the source-path table.
    pub paths_len: u64,
    /// Length of the whole file; a shorter file is truncated.
    pub file_len: u64,
    /// CRC-32C of the sample, class and path tables, in that order.
    pub tables_crc: u32,
}

impl Header {
    /// Whether every sample carries a label.
    pub fn has_labels(&self) -> bool {
        self.flags & FLAG_HAS_LABELS != 0
    }

    /// Length of the sample table in bytes.
    pub fn samples_len(&self) -> Option<u64> {
        self.num_samples.checked_mul(ENTRY_LEN as u64)
    }

    /// Encodes the header, CRC included.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        put_u32(&mut b, 8, self.version);
        put_u32(&mut b, 12, self.flags);
        put_u32(&mut b, 16, HEADER_LEN as u32);
        put_u32(&mut b, 20, self.align);
        put_u64(&mut b, 24, self.num_samples);
        put_u32(&mut b, 32, self.num_classes);
        b[36] = self.mode.code();
        b[37] = self.checksum;
        put_u64(&mut b, 40, self.data_offset);
        put_u64(&mut b, 48, self.data_len);
        put_u64(&mut b, 56, self.samples_offset);
        put_u64(&mut b, 64, self.classes_offset);
        put_u64(&mut b, 72, self.classes_len);
        put_u64(&mut b, 80, self.paths_offset);
        put_u64(&mut b, 88, self.paths_len);
        put_u64(&mut b, 96, self.file_len);
        put_u32(&mut b, 104, self.tables_crc);
        let crc = crc32c::crc32c(&b[..124]);
        put_u32(&mut b, 124, crc);
        b
    }

    /// Decodes a header. Checks magic, version, header CRC and field sanity, but not the
    /// offsets against a file length (the reader does that).
    pub fn decode(b: &[u8]) -> Result<Header, HeaderError> {
        if b.len() < HEADER_LEN {
            return Err(HeaderError::Short(b.len()));
        }
        if b[0..8] != MAGIC {
            return Err(HeaderError::Magic);
        }
        let version = get_u32(b, 8);
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        let stored = get_u32(b, 124);
        let actual = crc32c::crc32c(&b[..124]);
        if stored != actual {
            return Err(HeaderError::Invalid(format!(
                "header checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
            )));
        }
        let header_len = get_u32(b, 16);
        if header_len as usize != HEADER_LEN {
            return Err(HeaderError::Invalid(format!(
                "header length {header_len}, expected {HEADER_LEN}"
            )));
        }
        let mode = StorageMode::from_code(b[36])
            .ok_or_else(|| HeaderError::Invalid(format!("unknown storage mode code {}", b[36])))?;
        let h = Header {
            version,
            flags: get_u32(b, 12),
            align: get_u32(b, 20),
            num_samples: get_u64(b, 24),
            num_classes: get_u32(b, 32),
            mode,
            checksum: b[37],
            data_offset: get_u64(b, 40),
            data_len: get_u64(b, 48),
            samples_offset: get_u64(b, 56),
            classes_offset: get_u64(b, 64),
            classes_len: get_u64(b, 72),
            paths_offset: get_u64(b, 80),
            paths_len: get_u64(b, 88),
            file_len: get_u64(b, 96),
            tables_crc: get_u32(b, 104),
        };
        if !h.align.is_power_of_two() {
            return Err(HeaderError::Invalid(format!(
                "alignment {} is not a power of two",
                h.align
            )));
        }
        if h.checksum != CHECKSUM_CRC32C {
            return Err(HeaderError::Invalid(format!(
                "unknown checksum kind {}",
                h.checksum
            )));
        }
        if h.flags & !FLAG_HAS_LABELS != 0 {
            return Err(HeaderError::Invalid(format!(
                "unknown header flags {:#x}",
                h.flags
            )));
        }
        if h.has_labels() != (h.num_classes > 0) {
            return Err(HeaderError::Invalid(format!(
                "label flag {} disagrees with {} classes",
                h.has_labels(),
                h.num_classes
            )));
        }
        Ok(h)
    }
}

/// Why a header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    Short(usize),
    /// The magic bytes are wrong: not a record file.
    Magic,
    /// A version this build does not read.
    Version(u32),
    /// Any other inconsistency, described.
    Invalid(String),
}

/// One sample-table entry, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Absolute file offset of the record's bytes.
    pub offset: u64,
    /// Length of the record's bytes.
    pub len: u32,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Class index, or [`NO_LABEL`].
    pub label: u32,
    /// CRC-32C of the record's bytes.
    pub crc: u32,
    /// Storage mode code (see [`StorageMode::code`]).
    pub mode: u8,
    /// Channels of the decoded image (3: RGB).
    pub channels: u8,
    /// Bit set of `ENTRY_*`.
    pub flags: u16,
}

impl Entry {
    /// Encodes the entry.
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        put_u64(&mut b, 0, self.offset);
        put_u32(&mut b, 8, self.len);
        put_u32(&mut b, 12, self.width);
        put_u32(&mut b, 16, self.height);
        put_u32(&mut b, 20, self.label);
        put_u32(&mut b, 24, self.crc);
        b[28] = self.mode;
        b[29] = self.channels;
        b[30..32].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    /// Decodes an entry from exactly [`ENTRY_LEN`] bytes.
    pub fn decode(b: &[u8]) -> Entry {
        Entry {
            offset: get_u64(b, 0),
            len: get_u32(b, 8),
            width: get_u32(b, 12),
            height: get_u32(b, 16),
            label: get_u32(b, 20),
            crc: get_u32(b, 24),
            mode: b[28],
            channels: b[29],
            flags: u16::from_le_bytes([b[30], b[31]]),
        }
    }
}

/// Encodes a string table: `count: u64`, `count + 1` offsets (u64, relative to the blob),
/// then the blob of concatenated byte strings.
pub fn encode_strings<'a>(items: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let n = items.len();
    let mut offsets = Vec::with_capacity(8 * (n + 2));
    let mut blob = Vec::new();
    offsets.extend_from_slice(&(n as u64).to_le_bytes());
    offsets.extend_from_slice(&0u64.to_le_bytes());
    for item in items {
        blob.extend_from_slice(item);
        offsets.extend_from_slice(&(blob.len() as u64).to_le_bytes());
    }
    offsets.extend_from_slice(&blob);
    offsets
}

/// Rounds `x` up to a multiple of `align` (a power of two).
pub fn align_up(x: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    (x + align - 1) & !(align - 1)
}

pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            version: VERSION,
            flags: FLAG_HAS_LABELS,
            align: 4096,
            num_samples: 3,
            num_classes: 2,
            mode: StorageMode::Jpeg,
            checksum: CHECKSUM_CRC32C,
            data_offset: 4096,
            data_len: 12288,
            samples_offset: 16384,
            classes_offset: 16480,
            classes_len: 30,
            paths_offset: 16510,
            paths_len: 60,
            file_len: 16570,
            tables_crc: 0xdead_beef,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = header();
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn header_field_positions_match_the_docs() {
        let b = header().encode();
        assert_eq!(&b[0..8], &MAGIC);
        assert_eq!(get_u32(&b, 8), 1);
        assert_eq!(get_u32(&b, 16), 128);
        assert_eq!(get_u64(&b, 24), 3);
        assert_eq!(b[36], 1);
        assert_eq!(get_u64(&b, 96), 16570);
        assert_eq!(get_u32(&b, 104), 0xdead_beef);
        assert_eq!(get_u32(&b, 124), crc32c::crc32c(&b[..124]));
    }

    #[test]
    fn header_rejects_every_single_bit_flip() {
        let b = header().encode();
        for i in 0..HEADER_LEN * 8 {
            let mut c = b;
            c[i / 8] ^= 1 << (i % 8);
            assert!(
                Header::decode(&c).is_err(),
                "bit {i} flipped but header accepted"
            );
        }
    }

    #[test]
    fn entry_round_trips() {
        let e = Entry {
            offset: 1 << 40,
            len: 123_456,
            width: 640,
            height: 480,
            label: NO_LABEL,
            crc: 7,
            mode: 2,
            channels: 3,
            flags: ENTRY_CONVERTED,
        };
        assert_eq!(Entry::decode(&e.encode()), e);
    }

    #[test]
    fn string_table_layout() {
        let t = encode_strings([b"ab".as_slice(), b"".as_slice(), b"xyz".as_slice()].into_iter());
        assert_eq!(get_u64(&t, 0), 3);
        let offs: Vec<u64> = (0..4).map(|i| get_u64(&t, 8 + 8 * i)).collect();
        assert_eq!(offs, vec![0, 2, 2, 5]);
        assert_eq!(&t[40..], b"abxyz");
    }
}
