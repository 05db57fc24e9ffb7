//! Why a conversion left an input out: one enum, so that the report counts skips by kind
//! without reading its own English back.
//!
//! [`SkipReason`]'s `Display` is the reason the report prints and writes (the JSON's
//! `reason` strings are exactly these); [`SkipReason::kind`] names its kind for the
//! summary's counts, the same for every file skipped for the same cause.

use std::borrow::Cow;
use std::fmt;

/// Why an input file, folder or archive member was not written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// Its name does not end in an image extension.
    NotImageExtension,
    /// A labels file was given and has no label for it (`noun`: the file's kind, as
    /// `LabelsFormat::noun` names it).
    NotInLabels {
        /// "labels CSV", "val.txt-style list"...
        noun: &'static str,
    },
    /// Listed in the labels file, but no such image was found.
    ListedNotFound {
        /// The labels file's kind.
        noun: &'static str,
        /// Where it was looked for ("under the input folder", "in the archive").
        place: String,
    },
    /// Listed twice in `--file-list`; the first is kept.
    ListedTwice,
    /// A later archive member has the same path and replaces it, as extraction would.
    Replaced,
    /// An empty file.
    Empty,
    /// Larger than the conversion reads.
    TooLarge {
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// Could not be read (the I/O error's text).
    Unreadable(String),
    /// Could not be read out of its archive.
    UnreadableMember(String),
    /// Not a format the converter knows.
    UnrecognisedFormat,
    /// A known format whose data does not decode.
    Undecodable {
        /// "JPEG", "PNG"...
        format: String,
        /// The decoder's message.
        detail: String,
    },
    /// A step of the conversion failed (a resize, a re-encode).
    Failed {
        /// What was being done: "resize", "re-encode".
        step: &'static str,
        /// The error's text.
        detail: String,
    },
    /// Declares more pixels than `--max-pixels` (the error's text).
    TooManyPixels(String),
    /// A folder that could not be listed.
    CannotList(String),
    /// A symbolic link whose target is missing.
    BrokenSymlink(String),
    /// A symbolic link to the input folder or above it.
    SymlinkLoop,
    /// A symbolic link to a folder inside the tree.
    SymlinkToFolder,
    /// A symbolic link to something that is not a regular file.
    SymlinkToOther,
    /// Not a regular file (a device, a socket, a FIFO).
    NotRegularFile,
    /// A link member of a tar archive.
    LinkMember,
    /// A file beside the class folders of an ImageFolder tree.
    TopLevelFile,
    /// A file beside the class tars of the ImageNet train tar.
    TopLevelOfTrainTar,
    /// A top-level folder of an ImageFolder tree that is not a class.
    NotAClass(NotAClass),
    /// A WebDataset sample without an image member.
    NoImageMember,
    /// A WebDataset sample without a label member.
    NoLabelMember,
    /// A WebDataset label member over the size a label can have.
    LabelTooLarge {
        /// The member's name.
        member: String,
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// A WebDataset label member that could not be read.
    LabelUnreadable(String),
    /// A WebDataset label member that does not parse.
    BadLabel {
        /// The member's name.
        member: String,
        /// Whether a `.cls` member (an integer) or a `.txt` one (a class name).
        integer: bool,
        /// What it holds.
        text: String,
    },
    /// Damage in a tar archive; what could be read is kept.
    TarDamage(TarDamage),
}

/// Folders that look like classes but are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotAClass {
    /// A hidden folder (its name starts with a dot).
    Hidden,
    /// The `__MACOSX` folder macOS's zip adds.
    MacosMetadata,
}

/// What is wrong with a tar archive (byte offsets from the archive's start).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TarDamage {
    /// A header that does not parse, and the next valid header after it.
    BadHeader {
        /// Where it is.
        at: u64,
        /// What is wrong with it.
        detail: String,
        /// The next valid header, if any; `None`: the rest was not read.
        next: Option<u64>,
        /// Bytes from the bad header to the archive's end.
        rest: u64,
    },
    /// The archive ends inside a header.
    EndsInHeader {
        /// Where the header starts.
        at: u64,
    },
    /// The archive has no end-of-archive blocks.
    NoEndMarker,
    /// More members follow end-of-archive blocks (after damage, read on).
    MembersAfterEnd {
        /// Where the end blocks are.
        end: u64,
        /// Where the next member starts.
        next: u64,
    },
    /// The archive ends inside this member's data.
    CutShort {
        /// Bytes of the member that are present.
        present: u64,
        /// The member's size.
        size: u64,
        /// Whether the member is a tar itself (a class tar), whose members before the cut
        /// are kept.
        inner_tar: bool,
    },
}

impl SkipReason {
    /// The kind of skip, for counting: every file skipped for the same cause has the same
    /// kind, whatever its detail.
    pub fn kind(&self) -> Cow<'static, str> {
        use SkipReason::*;
        Cow::Borrowed(match self {
            Undecodable { format, .. } => return Cow::Owned(format!("not a decodable {format}")),
            NotImageExtension => "not an image file extension",
            NotInLabels { .. } => "not in the labels file",
            ListedNotFound { .. } => "listed in the labels file but not found",
            ListedTwice => "listed twice in the file list",
            Replaced => "replaced by a later member of the same path",
            Empty => "empty file",
            TooLarge { .. } => "over the size limit",
            Unreadable(_) | UnreadableMember(_) => "cannot read",
            UnrecognisedFormat => "not an image",
            TooManyPixels(_) => "over the pixel limit",
            Failed { .. } => "conversion failed",
            CannotList(_) => "cannot list",
            BrokenSymlink(_) => "broken symlink",
            SymlinkLoop | SymlinkToFolder | SymlinkToOther => "symlink not followed",
            NotRegularFile => "not a regular file",
            LinkMember => "link member",
            TopLevelFile | TopLevelOfTrainTar => "file outside the class folders",
            NotAClass(_) => "folder that is not a class",
            NoImageMember => "sample without an image",
            NoLabelMember => "sample without a label",
            LabelTooLarge { .. } | LabelUnreadable(_) | BadLabel { .. } => "bad label member",
            TarDamage(_) => "damaged tar archive",
        })
    }

    /// Whether this is a file the labels file leaves out (not a damaged or unusable one):
    /// the summary counts these apart.
    pub fn is_unlabelled(&self) -> bool {
        matches!(self, SkipReason::NotInLabels { .. })
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SkipReason::*;
        match self {
            NotImageExtension => f.write_str("not an image file extension"),
            NotInLabels { noun } => write!(f, "no label for this file in the {noun}"),
            ListedNotFound { noun, place } => {
                write!(f, "listed in the {noun} but not found {place}")
            }
            ListedTwice => f.write_str("listed twice in the file list; kept the first"),
            Replaced => {
                f.write_str("a later member has the same path and replaces it, as extraction would")
            }
            Empty => f.write_str("empty file (0 bytes)"),
            TooLarge { bytes, limit } => {
                write!(f, "file is {bytes} bytes, over the {limit}-byte limit")
            }
            Unreadable(e) => write!(f, "cannot read: {e}"),
            UnreadableMember(e) => write!(f, "cannot read from the archive: {e}"),
            UnrecognisedFormat => f.write_str("not an image: unrecognised format"),
            Undecodable { format, detail } => write!(f, "not a decodable {format}: {detail}"),
            TooManyPixels(e) => write!(f, "{e} (a decompression bomb?)"),
            Failed { step, detail } => write!(f, "cannot {step}: {detail}"),
            CannotList(e) => write!(f, "cannot list: {e}"),
            BrokenSymlink(e) => write!(f, "broken symlink: {e}"),
            SymlinkLoop => {
                f.write_str("symlink to the input folder or above it (a loop); not followed")
            }
            SymlinkToFolder => f.write_str("symlink to a folder inside the tree; not followed"),
            SymlinkToOther => f.write_str("symlink to something that is not a regular file"),
            NotRegularFile => f.write_str("not a regular file"),
            LinkMember => f.write_str("link member; not followed"),
            TopLevelFile => {
                f.write_str("file at the top level of an ImageFolder tree (not in a class folder)")
            }
            TopLevelOfTrainTar => {
                f.write_str("file at the top level of the ImageNet train tar (not a class tar)")
            }
            NotAClass(self::NotAClass::Hidden) => {
                f.write_str("hidden folder, not a class; not read")
            }
            NotAClass(self::NotAClass::MacosMetadata) => {
                f.write_str("folder of macOS zip metadata (__MACOSX), not a class; not read")
            }
            NoImageMember => f.write_str("sample has no .jpg, .jpeg, .png or .webp member"),
            NoLabelMember => f.write_str("sample has no .cls or .txt label"),
            LabelTooLarge {
                member,
                bytes,
                limit,
            } => write!(
                f,
                "label member {member} is {bytes} bytes, over the {limit}-byte limit"
            ),
            LabelUnreadable(e) => write!(f, "cannot read the label: {e}"),
            BadLabel {
                member,
                integer,
                text,
            } => write!(
                f,
                "label {member} is not {}: {text:?}",
                if *integer {
                    "an integer"
                } else {
                    "a class name"
                }
            ),
            TarDamage(d) => d.fmt(f),
        }
    }
}

impl fmt::Display for TarDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TarDamage::BadHeader {
                at,
                detail,
                next: Some(next),
                ..
            } => write!(
                f,
                "damaged tar header at byte {at} ({detail}); skipped {} bytes to the next \
                 valid header, at byte {next}",
                next - at
            ),
            TarDamage::BadHeader {
                at,
                detail,
                next: None,
                rest,
            } => write!(
                f,
                "damaged tar header at byte {at} ({detail}); no valid header after it, so the \
                 rest of the archive ({rest} bytes) was not read"
            ),
            TarDamage::EndsInHeader { at } => write!(
                f,
                "the archive ends inside a header at byte {at} (it is truncated)"
            ),
            TarDamage::NoEndMarker => f.write_str(
                "the archive ends without its end-of-archive blocks; it may have been cut at a \
                 member boundary, and members after the cut are missing",
            ),
            TarDamage::MembersAfterEnd { end, next } => write!(
                f,
                "end-of-archive blocks at byte {end} are followed by more members, from byte \
                 {next}; read on"
            ),
            TarDamage::CutShort {
                present,
                size,
                inner_tar,
            } => write!(
                f,
                "cut short: the archive ends {present} bytes into this member's {size}, and any \
                 members after it are missing{}",
                if *inner_tar {
                    "; its members before the cut are kept"
                } else {
                    ""
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The detail varies, the kind does not: a tar header's message holds a colon and
    /// parentheses that cut the old text-based kinds in the middle.
    #[test]
    fn kinds_ignore_the_detail() {
        let a = SkipReason::TarDamage(TarDamage::BadHeader {
            at: 1024,
            detail: "numeric field was not a number: 'x' when getting size".into(),
            next: Some(2048),
            rest: 9000,
        });
        let b = SkipReason::TarDamage(TarDamage::NoEndMarker);
        assert_eq!(a.kind(), b.kind());
        assert_eq!(
            a.to_string(),
            "damaged tar header at byte 1024 (numeric field was not a number: 'x' when \
             getting size); skipped 1024 bytes to the next valid header, at byte 2048"
        );
        let big = |bytes| SkipReason::TooLarge { bytes, limit: 8 };
        assert_eq!(big(9).kind(), big(12).kind());
        assert_eq!(big(9).to_string(), "file is 9 bytes, over the 8-byte limit");
    }
}
