//! Damaged record files give a clean error naming what is wrong, never a panic.

use crate::common;

use std::path::{Path, PathBuf};

use uic_loader::convert::{convert, ConvertOptions};
use uic_loader::format::{Header, ENTRY_LEN, HEADER_LEN};
use uic_loader::{Error, RecordFile};

fn good_file(dir: &Path) -> (PathBuf, Vec<u8>) {
    let input = dir.join("in");
    common::image_folder(&input, 2, 6);
    let out = dir.join("good.uicr");
    convert(&input, &out, &ConvertOptions::default(), &|_| {}).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    (out, bytes)
}

fn open_bytes(dir: &Path, name: &str, bytes: &[u8]) -> Result<RecordFile, Error> {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    RecordFile::open(&p)
}

fn format_reason(r: Result<RecordFile, Error>) -> String {
    match r {
        Err(Error::Format { reason, .. }) => reason,
        Err(other) => panic!("expected a format error, got {other}"),
        Ok(_) => panic!("damaged file opened"),
    }
}

#[test]
fn truncation_anywhere_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = good_file(dir.path());
    let n = bytes.len();
    for cut in [
        0,
        1,
        7,
        HEADER_LEN - 1,
        HEADER_LEN,
        4096,
        n / 2,
        n - 100,
        n - 1,
    ] {
        let reason = format_reason(open_bytes(dir.path(), "cut.uicr", &bytes[..cut]));
        assert!(reason.contains("truncated"), "cut at {cut}: {reason}");
    }
}

#[test]
fn bad_magic_and_wrong_version_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = good_file(dir.path());
    let mut b = bytes.clone();
    b[1] = b'X';
    assert!(format_reason(open_bytes(dir.path(), "magic.uicr", &b)).contains("magic"));

    let mut header = Header::decode(&bytes[..HEADER_LEN]).unwrap();
    header.version = 2;
    let mut b = bytes.clone();
    b[..HEADER_LEN].copy_from_slice(&header.encode());
    match open_bytes(dir.path(), "v2.uicr", &b) {
        Err(
            e @ Error::Version {
                found: 2,
                supported: 1,
                ..
            },
        ) => assert!(e.to_string().contains("re-convert")),
        other => panic!("expected a version error, got {other:?}"),
    }
}

#[test]
fn an_offset_past_the_end_is_caught_even_with_fixed_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = good_file(dir.path());
    let mut header = Header::decode(&bytes[..HEADER_LEN]).unwrap();
    let mut b = bytes.clone();
    // Point sample 3 past the end, then repair both checksums as a careful forger would.
    let at = header.samples_offset as usize + 3 * ENTRY_LEN;
    b[at..at + 8].copy_from_slice(&(bytes.len() as u64 + 10).to_le_bytes());
    let tables = &b[header.samples_offset as usize..];
    header.tables_crc = crc32c::crc32c(tables);
    b[..HEADER_LEN].copy_from_slice(&header.encode());
    let reason = format_reason(open_bytes(dir.path(), "offset.uicr", &b));
    assert!(
        reason.contains("sample 3") && reason.contains("outside the data region"),
        "{reason}"
    );

    // Without the repair, the table checksum catches it first.
    let mut b = bytes.clone();
    b[at] ^= 0x40;
    assert!(format_reason(open_bytes(dir.path(), "table.uicr", &b)).contains("table checksum"));
}

#[test]
fn header_field_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = good_file(dir.path());
    let good = Header::decode(&bytes[..HEADER_LEN]).unwrap();
    type Tamper = (&'static str, fn(&mut Header));
    let tamper: [Tamper; 5] = [
        ("more samples", |h| h.num_samples += 1),
        ("huge sample count", |h| h.num_samples = u64::MAX / 2),
        ("class table past the end", |h| {
            h.classes_offset = u64::MAX - 3
        }),
        ("data region overlaps header", |h| h.data_offset = 0),
        ("path table too long", |h| h.paths_len += 1),
    ];
    for (what, f) in tamper {
        let mut h = good.clone();
        f(&mut h);
        let mut b = bytes.clone();
        b[..HEADER_LEN].copy_from_slice(&h.encode());
        assert!(
            open_bytes(dir.path(), "h.uicr", &b).is_err(),
            "{what} accepted"
        );
    }
}

#[test]
fn a_flipped_data_byte_is_named_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = good_file(dir.path());
    let f = RecordFile::open(&path).unwrap();
    let (offset, len) = f.extents()[7];
    let name = f.source_path_lossy(7).into_owned();
    drop(f);
    let mut b = bytes;
    b[offset as usize + len as usize / 2] ^= 0x01;
    let f = open_bytes(dir.path(), "flip.uicr", &b)
        .expect("data bytes are checked by verify, not open");
    let bad = f.verify();
    assert_eq!(bad.len(), 1);
    assert_eq!((bad[0].index, bad[0].path.as_str()), (7, name.as_str()));
    assert_ne!(bad[0].expected, bad[0].actual);
}

#[test]
fn not_a_record_file_at_all() {
    let dir = tempfile::tempdir().unwrap();
    assert!(format_reason(open_bytes(dir.path(), "z.uicr", &[])).contains("shorter"));
    let junk: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    assert!(format_reason(open_bytes(dir.path(), "j.uicr", &junk)).contains("magic"));
    assert!(matches!(
        RecordFile::open(dir.path().join("missing.uicr")),
        Err(Error::Io { .. })
    ));
}
