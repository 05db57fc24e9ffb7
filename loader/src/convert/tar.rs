//! Reading tar archives in place: the members' names and where their bytes lie, without
//! extracting anything.
//!
//! [`scan`] walks the headers of one archive, or of a byte range of one (a tar inside a tar),
//! seeking past every member's data, so listing the 140 GB ImageNet train tar reads about
//! 1.3 million 512-byte headers and nothing else. Workers later read each member with a
//! positioned read, one member at a time.
//!
//! Damage never stops a scan silently. A header that fails its checksum is named with its
//! byte offset and the scan resumes at the next block that holds a valid header (what GNU
//! tar does); a member whose data runs past the end of the archive is listed as cut short
//! with the bytes that exist; an archive that ends without its two zero blocks is named,
//! since it may have been cut at a member boundary.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::skip::TarDamage;
use crate::error::{Error, Result};

const BLOCK: u64 = 512;

/// What kind of member a header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regular file.
    File,
    /// A folder (ignored, as a folder walk ignores folders).
    Dir,
    /// A hard or symbolic link (not followed).
    Link,
    /// Anything else: devices, FIFOs, sparse files.
    Other,
}

/// One member of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The member's path, without a leading `./` or `/`.
    pub(crate) path: Vec<u8>,
    /// Absolute offset of its data in the archive file.
    pub(crate) offset: u64,
    /// Size its header declares.
    pub(crate) size: u64,
    /// Bytes of it the archive holds (less than `size` when the archive is cut short).
    pub(crate) present: u64,
    pub(crate) kind: Kind,
}

impl Member {
    /// Whether the archive ends inside this member's data.
    pub(crate) fn cut_short(&self) -> bool {
        self.present < self.size
    }

    /// What a report says of a member that is cut short.
    pub(crate) fn cut_reason(&self, inner_tar: bool) -> TarDamage {
        TarDamage::CutShort {
            present: self.present,
            size: self.size,
            inner_tar,
        }
    }
}

/// The members of one archive and what was wrong with it: (byte offset, problem).
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) members: Vec<Member>,
    pub(crate) damage: Vec<TarDamage>,
}

/// A `Read + Seek` view of `len` bytes of `file` from `start`, by positioned reads.
struct Window<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the archive's start",
            )
        })?;
        Ok(self.pos)
    }
}

/// Lists the members of the archive that fills `len` bytes of `file` from `start`.
/// Never fails: what cannot be read is described in [`Scan::damage`].
pub(crate) fn scan(file: &File, start: u64, len: u64) -> Scan {
    let mut out = Scan::default();
    // Where the next header should be, relative to `start`.
    let mut at = 0u64;
    loop {
        match scan_from(file, start, len, at, &mut out.members) {
            Ok(Stop::Ended(end)) => {
                // Read on past the end blocks when headers follow (concatenated archives,
                // or the end of a tar inside this one that a resync landed in).
                match next_header(file, start, len, end + BLOCK) {
                    Some(next) => {
                        if !out.damage.is_empty() {
                            out.damage.push(TarDamage::MembersAfterEnd { end, next });
                        }
                        at = next;
                    }
                    None => return out,
                }
            }
            Ok(Stop::NoEndMarker) => {
                out.damage.push(TarDamage::NoEndMarker);
                return out;
            }
            Ok(Stop::CutShort) => return out,
            Err((header, e)) => {
                if header + BLOCK > len {
                    out.damage.push(TarDamage::EndsInHeader { at: header });
                    return out;
                }
                match next_header(file, start, len, header + BLOCK) {
                    Some(next) => {
                        out.damage.push(TarDamage::BadHeader {
                            at: header,
                            detail: e.to_string(),
                            next: Some(next),
                            rest: len - header,
                        });
                        at = next;
                    }
                    None => {
                        out.damage.push(TarDamage::BadHeader {
                            at: header,
                            detail: e.to_string(),
                            next: None,
                            rest: len - header,
                        });
                        return out;
                    }
                }
            }
        }
    }
}

enum Stop {
    /// The end-of-archive blocks were found, at this offset.
    Ended(u64),
    /// The data ended where a header should have been.
    NoEndMarker,
    /// The last member runs past the end.
    CutShort,
}

/// Reads headers from `at` until the end, a member cut short, or an error (with the offset
/// of the header that failed, relative to `start`).
fn scan_from(
    file: &File,
    start: u64,
    len: u64,
    at: u64,
    members: &mut Vec<Member>,
) -> std::result::Result<Stop, (u64, io::Error)> {
    let window = Window {
        file,
        start: start + at,
        len: len - at,
        pos: 0,
    };
    let mut archive = tar::Archive::new(window);
    let mut entries = archive.entries_with_seek().map_err(|e| (at, e))?;
    // Offset (relative to `start`) where the next header begins.
    let mut next = at;
    loop {
        let entry = match entries.next() {
            None => break,
            Some(Err(e)) => return Err((next, e)),
            Some(Ok(e)) => e,
        };
        let data = at + entry.raw_file_position();
        let size = entry.size();
        let present = size.min(len.saturating_sub(data));
        let t = entry.header().entry_type();
        let kind = if t.is_file() || t.is_contiguous() {
            Kind::File
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_symlink() || t.is_hard_link() {
            Kind::Link
        } else if t.is_pax_global_extensions() {
            continue;
        } else {
            Kind::Other
        };
        members.push(Member {
            path: clean(&entry.path_bytes()),
            offset: start + data,
            size,
            present,
            kind,
        });
        if present < size {
            return Ok(Stop::CutShort);
        }
        next = data + size.div_ceil(BLOCK) * BLOCK;
    }
    // `tar` stops alike at a zero block and at the end of the data; tell them apart.
    let mut block = [0u8; BLOCK as usize];
    let ended = next + BLOCK <= len
        && file.read_exact_at(&mut block, start + next).is_ok()
        && block.iter().all(|&b| b == 0);
    Ok(if ended {
        Stop::Ended(next)
    } else {
        Stop::NoEndMarker
    })
}

/// The first block at or after `from` (relative to `start`) that holds a valid ustar or GNU
/// header: its checksum matches and it carries the `ustar` magic.
fn next_header(file: &File, start: u64, len: u64, from: u64) -> Option<u64> {
    let mut buf = vec![0u8; 64 << 10];
    let mut at = from.div_ceil(BLOCK) * BLOCK;
    while at + BLOCK <= len {
        let n = ((len - at) / BLOCK * BLOCK).min(buf.len() as u64) as usize;
        let got = file.read_at(&mut buf[..n], start + at).ok()?;
        if got < BLOCK as usize {
            return None;
        }
        for (i, block) in buf[..got].chunks_exact(BLOCK as usize).enumerate() {
            if is_header(block) {
                return Some(at + i as u64 * BLOCK);
            }
        }
        at += got as u64 / BLOCK * BLOCK;
    }
    None
}

fn is_header(block: &[u8]) -> bool {
    if &block[257..262] != b"ustar" {
        return false;
    }
    let field = &block[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(u8::is_ascii_digit)
        .collect();
    let Some(want) = std::str::from_utf8(&digits)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 8).ok())
    else {
        return false;
    };
    let sum: u32 = block[..148]
        .iter()
        .chain(&block[156..])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * u32::from(b' ');
    sum == want
}

/// A member path without leading `./` and `/`.
fn clean(path: &[u8]) -> Vec<u8> {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix(b"./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix(b"/") {
            p = rest;
        } else {
            return p.to_vec();
        }
    }
}

/// Expands the brace patterns of a shard list: `shard-{000..099}.tar` (numeric ranges keep
/// the start's zero padding) and `{train,val}.tar`, any number of them. A pattern without
/// braces is returned as is.
///
/// # Errors
/// An unclosed brace, a range whose ends are not numbers, or one of more than a million.
pub fn expand_braces(pattern: &str) -> Result<Vec<String>> {
    let Some(open) = pattern.find('{') else {
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find('}')
        .map(|c| open + c)
        .ok_or_else(|| Error::InvalidArgument(format!("unclosed '{{' in {pattern:?}")))?;
    let (head, body, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let choices: Vec<String> = if let Some((a, b)) = body.split_once("..") {
        let bad = || {
            Error::InvalidArgument(format!(
                "{{{body}}} in {pattern:?} is not a range of numbers such as {{000..099}}"
            ))
        };
        let (lo, hi): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if hi < lo || hi - lo >= 1_000_000 {
            return Err(bad());
        }
        let width = if a.starts_with('0') { a.len() } else { 0 };
        (lo..=hi).map(|i| format!("{i:0width$}")).collect()
    } else {
        body.split(',').map(str::to_string).collect()
    };
    let mut out = Vec::new();
    for c in choices {
        for rest in expand_braces(tail)? {
            out.push(format!("{head}{c}{rest}"));
        }
    }
    Ok(out)
}

/// The archives an input names: the file itself, or the files a brace pattern expands to,
/// each of which must exist.
///
/// # Errors
/// A bad pattern, or a shard that is missing (before anything is read).
pub(crate) fn archives(input: &Path) -> Result<Vec<PathBuf>> {
    let text = input.to_string_lossy();
    if input.exists() || !text.contains('{') {
        return Ok(vec![input.to_path_buf()]);
    }
    let paths: Vec<PathBuf> = expand_braces(&text)?
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let missing: Vec<&PathBuf> = paths.iter().filter(|p| !p.is_file()).collect();
    if let Some(first) = missing.first() {
        return Err(Error::Input(format!(
            "{} of the {} shards of {text} do not exist, the first {}",
            missing.len(),
            paths.len(),
            first.display()
        )));
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn scan_bytes(bytes: &[u8]) -> Scan {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(bytes, 0).unwrap();
        scan(&f, 0, bytes.len() as u64)
    }

    #[test]
    fn lists_members_with_their_data_offsets() {
        let bytes = tar_of(&[("./a.jpg", b"AAAA"), ("b/c.txt", b"hello")]);
        let s = scan_bytes(&bytes);
        assert!(s.damage.is_empty(), "{:?}", s.damage);
        let names: Vec<&[u8]> = s.members.iter().map(|m| m.path.as_slice()).collect();
        assert_eq!(names, [b"a.jpg".as_slice(), b"b/c.txt"]);
        let m = &s.members[1];
        assert_eq!(&bytes[m.offset as usize..][..m.size as usize], b"hello");
    }

    #[test]
    fn a_cut_archive_keeps_what_precedes_the_cut() {
        let bytes = tar_of(&[("a.jpg", &[1; 700]), ("b.jpg", &[2; 700])]);
        // Cut inside b's data: a whole, b cut short.
        let s = scan_bytes(&bytes[..512 + 1024 + 512 + 100]);
        assert_eq!(s.members.len(), 2);
        assert!(!s.members[0].cut_short());
        assert!(s.members[1].cut_short() && s.members[1].present == 100);
        // Cut at the member boundary: the missing end blocks are named.
        let s = scan_bytes(&bytes[..512 + 1024]);
        assert_eq!(s.members.len(), 1);
        assert!(
            s.damage[0].to_string().contains("end-of-archive"),
            "{:?}",
            s.damage
        );
        // Cut inside the second header.
        let s = scan_bytes(&bytes[..512 + 1024 + 300]);
        assert_eq!(s.members.len(), 1);
        assert!(
            s.damage[0]
                .to_string()
                .contains("inside a header at byte 1536"),
            "{:?}",
            s.damage
        );
    }

    #[test]
    fn a_bad_header_is_skipped_to_the_next_valid_one() {
        let mut bytes = tar_of(&[
            ("a.jpg", &[1; 10]),
            ("b.jpg", &[2; 10]),
            ("c.jpg", &[3; 10]),
        ]);
        bytes[1024 + 10] ^= 0xff; // b's header: the checksum no longer holds
        let s = scan_bytes(&bytes);
        let names: Vec<&[u8]> = s.members.iter().map(|m| m.path.as_slice()).collect();
        assert_eq!(names, [b"a.jpg".as_slice(), b"c.jpg"]);
        assert_eq!(s.damage.len(), 1);
        assert!(
            s.damage[0]
                .to_string()
                .contains("damaged tar header at byte 1024"),
            "{:?}",
            s.damage
        );
        // A damaged header of a tar inside the tar: the resync lands in the inner tar, and
        // the scan reads on past the inner tar's end blocks to the outer members after it.
        let inner = tar_of(&[("x.jpg", &[7; 10])]);
        let mut bytes = tar_of(&[("a.tar", &inner), ("b.jpg", &[2; 10])]);
        bytes[10] ^= 0xff;
        let s = scan_bytes(&bytes);
        let names: Vec<&[u8]> = s.members.iter().map(|m| m.path.as_slice()).collect();
        assert_eq!(names, [b"x.jpg".as_slice(), b"b.jpg"]);
        assert!(
            s.damage[1].to_string().contains("read on"),
            "{:?}",
            s.damage
        );
        // Nothing valid after the damage: said so, with what was kept.
        let mut bytes = tar_of(&[("a.jpg", &[1; 10]), ("b.jpg", &[2; 10])]);
        bytes[1024 + 10] ^= 0xff;
        let s = scan_bytes(&bytes);
        assert_eq!(s.members.len(), 1);
        assert!(
            s.damage[0].to_string().contains("no valid header after it"),
            "{:?}",
            s.damage
        );
    }

    #[test]
    fn garbage_is_damage_not_a_panic() {
        for bytes in [vec![0xAB; 5000], vec![], vec![0; 100], b"ustar".repeat(300)] {
            let s = scan_bytes(&bytes);
            assert!(s.members.is_empty());
            assert_eq!(s.damage.len(), 1, "{:?}", s.damage);
        }
    }

    #[test]
    fn braces_expand_ranges_with_padding_and_lists() {
        assert_eq!(
            expand_braces("s-{008..011}.tar").unwrap(),
            ["s-008.tar", "s-009.tar", "s-010.tar", "s-011.tar"]
        );
        assert_eq!(
            expand_braces("{a,b}-{1..2}").unwrap(),
            ["a-1", "a-2", "b-1", "b-2"]
        );
        assert_eq!(expand_braces("plain.tar").unwrap(), ["plain.tar"]);
        assert!(expand_braces("s-{1..").is_err());
        assert!(expand_braces("s-{x..3}").is_err());
        assert!(expand_braces("s-{5..3}").is_err());
    }
}
