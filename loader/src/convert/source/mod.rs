//! Finding the images of a conversion and their labels, in a deterministic order.
//!
//! Folder layouts, tried in this order:
//! - `--file-list`: the listed paths (relative to the input root), in list order;
//! - `--labels FILE`: every file under the input root, sorted, joined with the labels file
//!   (CSV, Kaggle's `LOC_val_solution.csv` or `file label` text: see [`LabelsFormat`]) on the
//!   path relative to the root (ImageNet's validation set comes this way);
//! - ImageFolder, when the root has subfolders: `root/<class>/**/<file>`, classes sorted
//!   by name as torchvision does;
//! - flat: every file under the root, sorted, without labels.
//!
//! Tar layouts, read in place (an input that is a file, several files, or a brace pattern
//! such as `shard-{000000..000099}.tar`):
//! - `--labels FILE`: the archive's images, sorted, joined with the labels file as above;
//! - the ImageNet train tar, a tar of tars (more bytes of tars than of images at the top
//!   level, so damage that exposes one class's images does not change the layout): one
//!   class per inner tar, named by
//!   its stem (`n01440764.tar` → `n01440764`), classes and images sorted as for a folder,
//!   and each image stored as `<class>/<member>`. The same images as an ImageFolder tree give
//!   the same record file;
//! - WebDataset shards, when members carry `.cls` or `.txt` labels: samples are runs of
//!   members sharing a key (the path up to the first dot of the name), in archive order;
//!   the `.jpg`, `.jpeg`, `.png` or `.webp` member is the image, `.cls` (an integer) or else
//!   `.txt` the label;
//! - otherwise every image of the archive, sorted, without labels.
//!
//! Reports name an archive's member `archive.tar:inner.tar:member.JPEG`.
//!
//! The walk never hangs on symlink loops: inside the tree, symlinks to files are followed
//! and symlinks to directories are reported and not followed. Top-level class folders may
//! be symlinks (a common way to assemble ImageNet), except one that points back at the root.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::convert::labels::{class_order, read_labels, Labels, LabelsFormat};
use crate::convert::report::Skipped;
use crate::convert::skip::{NotAClass, SkipReason};
use crate::convert::tar::{self, Kind, Member};
use crate::error::{Error, IoContext, Result};

mod archive;
mod folder;
mod imagenet;
mod webdataset;

use archive::{discover_tars, has_ext, member_path, not_a_file};
use folder::discover_folder;
use imagenet::imagenet_tar;
use webdataset::webdataset;

/// File extensions taken as images (case-insensitive): torchvision's list plus `.gif`.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp", "gif",
];

/// The extensions of a WebDataset sample's image, in order of preference.
const WDS_IMAGE: &[&str] = &["jpg", "jpeg", "png", "webp"];

/// Largest `.cls` or `.txt` label member read.
const MAX_LABEL_BYTES: u64 = 4096;

/// How the input was laid out. Serialised (in the JSON report) as its [`name`](Self::name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// `root/<class>/<files>`.
    #[default]
    ImageFolder,
    /// A folder plus a labels file.
    FlatLabels,
    /// A folder without labels.
    Flat,
    /// A plain list of paths.
    FileList,
    /// A tar of per-class tars (`ILSVRC2012_img_train.tar`).
    ImageNetTar,
    /// A tar of images plus a labels file.
    TarLabels,
    /// A tar of images without labels.
    Tar,
    /// WebDataset shards.
    WebDataset,
}

impl Layout {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Layout::ImageFolder => "image-folder",
            Layout::FlatLabels => "flat-labels",
            Layout::Flat => "flat",
            Layout::FileList => "file-list",
            Layout::ImageNetTar => "imagenet-train-tar",
            Layout::TarLabels => "tar-labels",
            Layout::Tar => "tar",
            Layout::WebDataset => "webdataset",
        }
    }

    /// Whether the input was one or more tar archives.
    pub fn is_archive(self) -> bool {
        matches!(
            self,
            Layout::ImageNetTar | Layout::TarLabels | Layout::Tar | Layout::WebDataset
        )
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Layout {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Where labels and file lists come from.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// A labels file: a CSV with a header naming a file and a label column, Kaggle's
    /// `LOC_val_solution.csv`, or `file label` text (told apart by content).
    pub labels_csv: Option<PathBuf>,
    /// The CSV's label column (default `label`).
    pub label_column: Option<String>,
    /// A text file of paths, one per line, relative to the input root.
    pub file_list: Option<PathBuf>,
}

impl SourceOptions {
    fn labels(&self) -> Result<Option<Labels>> {
        self.labels_csv
            .as_deref()
            .map(|p| read_labels(p, self.label_column.as_deref()))
            .transpose()
    }
}

/// Where one image's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The file at the input root joined with the item's `rel`.
    File,
    /// A member of an archive: bytes `offset..offset + size` of container `container`'s
    /// archive file.
    Member {
        /// Index into the sources' containers.
        container: u32,
        /// Offset of the member's data in the archive file.
        offset: u64,
        /// Length of the member's data.
        size: u64,
    },
}

/// One image to convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceItem {
    /// Path stored in the record file: relative to the input root, or `<class>/<member>`
    /// for the ImageNet train tar, or the member's path in its archive.
    pub rel: PathBuf,
    /// Where its bytes are.
    pub origin: Origin,
    /// Class index, when the input has labels.
    pub label: Option<u32>,
}

/// An archive, or a tar inside one, that items are read from.
#[derive(Debug, Clone)]
struct Container {
    /// The archive file (shared by a tar and the tars inside it).
    file: Arc<File>,
    /// How reports name it: `train.tar` or `train.tar:n01440764.tar`.
    name: String,
    /// Bytes of an item's `rel` that are not its member path (`<class>/`).
    strip: usize,
}

/// The result of [`discover`].
#[derive(Debug, Clone)]
pub struct Sources {
    /// How the input was read.
    pub layout: Layout,
    /// The images, in output order.
    pub items: Vec<SourceItem>,
    /// Class names, in label order (empty without labels).
    pub classes: Vec<Vec<u8>>,
    /// Files found but not taken, with the reason.
    pub skipped: Vec<Skipped>,
    /// The format of the labels file, when one was read.
    pub labels_format: Option<LabelsFormat>,
    root: PathBuf,
    containers: Vec<Container>,
}

impl Sources {
    /// How reports name `item`: its path relative to the input folder, or
    /// `archive.tar:inner.tar:member`.
    pub fn name(&self, item: &SourceItem) -> String {
        name_of(&self.containers, &item.rel, item.origin)
    }

    /// The bytes of `item`, or why they cannot be read; files over `max_bytes` are refused
    /// before they are read.
    pub fn read(
        &self,
        item: &SourceItem,
        max_bytes: u64,
    ) -> std::result::Result<Vec<u8>, SkipReason> {
        let too_big = |bytes: u64| SkipReason::TooLarge {
            bytes,
            limit: max_bytes,
        };
        let unreadable = |e: std::io::Error| SkipReason::Unreadable(e.to_string());
        match item.origin {
            Origin::File => {
                let path = self.root.join(&item.rel);
                let meta = std::fs::metadata(&path).map_err(unreadable)?;
                if !meta.is_file() {
                    return Err(SkipReason::NotRegularFile);
                }
                if meta.len() > max_bytes {
                    return Err(too_big(meta.len()));
                }
                std::fs::read(&path).map_err(unreadable)
            }
            Origin::Member {
                container,
                offset,
                size,
            } => {
                if size > max_bytes {
                    return Err(too_big(size));
                }
                let mut buf = vec![0u8; size as usize];
                self.containers[container as usize]
                    .file
                    .read_exact_at(&mut buf, offset)
                    .map_err(|e| SkipReason::UnreadableMember(e.to_string()))?;
                Ok(buf)
            }
        }
    }
}

fn name_of(containers: &[Container], rel: &Path, origin: Origin) -> String {
    match origin {
        Origin::File => rel.to_string_lossy().into_owned(),
        Origin::Member { container, .. } => {
            let c = &containers[container as usize];
            let rel = rel.as_os_str().as_bytes();
            format!(
                "{}:{}",
                c.name,
                String::from_utf8_lossy(&rel[c.strip.min(rel.len())..])
            )
        }
    }
}

/// Lists the images of `input` with their labels: a folder, a tar archive, or a brace
/// pattern of shards. See the module docs for the layouts.
///
/// # Errors
/// An unreadable input, labels file or file list, a labels file without the needed
/// columns, a missing shard, or a file that is not a tar archive.
pub fn discover(input: &Path, opts: &SourceOptions) -> Result<Sources> {
    discover_inputs(std::slice::from_ref(&input.to_path_buf()), opts)
}

/// [`discover`] over several inputs, which must then all be tar archives (or brace patterns
/// of them), read one after the other.
///
/// # Errors
/// Those of [`discover`], and a folder among several inputs.
pub fn discover_inputs(inputs: &[PathBuf], opts: &SourceOptions) -> Result<Sources> {
    if let [one] = inputs {
        if one.is_dir() {
            return discover_folder(one, opts);
        }
    }
    let mut archives = Vec::new();
    for input in inputs {
        if input.is_dir() {
            return Err(Error::Input(format!(
                "{} is a folder: several inputs must all be tar archives",
                input.display()
            )));
        }
        archives.extend(tar::archives(input)?);
    }
    if archives.is_empty() {
        return Err(Error::InvalidArgument("no input given".into()));
    }
    discover_tars(&archives, opts)
}

/// Labels `found` images from `labels`, keeping those it lists; returns the classes.
fn join_labels(
    containers: &[Container],
    found: impl Iterator<Item = (PathBuf, Origin)>,
    labels: &Labels,
    items: &mut Vec<SourceItem>,
    skipped: &mut Vec<Skipped>,
) -> Vec<Vec<u8>> {
    let name = |rel: &Path, origin| name_of(containers, rel, origin);
    for (rel, origin) in found {
        if !has_image_extension(&rel) {
            skipped.push(named(name(&rel, origin), SkipReason::NotImageExtension));
            continue;
        }
        match labels.class_of(&labels.key(rel.as_os_str().as_bytes())) {
            Some(c) => items.push(SourceItem {
                rel,
                origin,
                label: Some(c),
            }),
            None => skipped.push(named(
                name(&rel, origin),
                SkipReason::NotInLabels {
                    noun: labels.format.noun(),
                },
            )),
        }
    }
    labels.classes.clone()
}

/// Names the rows of `labels` that no item matched.
fn report_unlisted(
    labels: &Labels,
    items: &[SourceItem],
    where_: &str,
    skipped: &mut Vec<Skipped>,
) {
    let seen: HashSet<Vec<u8>> = items
        .iter()
        .map(|i| labels.key(i.rel.as_os_str().as_bytes()))
        .collect();
    for key in labels.rows.iter().filter(|k| !seen.contains(*k)) {
        skipped.push(named(
            String::from_utf8_lossy(key).into_owned(),
            SkipReason::ListedNotFound {
                noun: labels.format.noun(),
                place: where_.to_string(),
            },
        ));
    }
}

fn named(path: String, reason: SkipReason) -> Skipped {
    Skipped { path, reason }
}

fn push_image(
    containers: &[Container],
    rel: PathBuf,
    origin: Origin,
    label: Option<u32>,
    items: &mut Vec<SourceItem>,
    skipped: &mut Vec<Skipped>,
) {
    if has_image_extension(&rel) {
        items.push(SourceItem { rel, origin, label });
    } else {
        skipped.push(named(
            name_of(containers, &rel, origin),
            SkipReason::NotImageExtension,
        ));
    }
}

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

pub(crate) fn entry(rel: &Path, reason: SkipReason) -> Skipped {
    named(rel.to_string_lossy().into_owned(), reason)
}
