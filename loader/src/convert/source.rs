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

/// File extensions taken as images (case-insensitive): torchvision's list plus `.gif`.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp", "gif",
];

/// The extensions of a WebDataset sample's image, in order of preference.
const WDS_IMAGE: &[&str] = &["jpg", "jpeg", "png", "webp"];

/// Largest `.cls` or `.txt` label member read.
const MAX_LABEL_BYTES: u64 = 4096;

/// How the input was laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `root/<class>/<files>`.
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

fn discover_folder(root: &Path, opts: &SourceOptions) -> Result<Sources> {
    let labels = opts.labels()?;
    let mut skipped = Vec::new();
    let (layout, files, class_dirs) = if let Some(list) = &opts.file_list {
        (
            Layout::FileList,
            read_file_list(root, list, &mut skipped)?,
            None,
        )
    } else if labels.is_some() {
        let mut files = walk_files(root, root, &mut skipped);
        // The labels file may sit among the images (ImageNet's LOC_val_solution.csv often
        // does): it is not an image, and not a skipped one.
        if let Some(rel) = opts.labels_csv.as_deref().and_then(|c| inside(root, c)) {
            files.retain(|f| *f != rel);
        }
        (Layout::FlatLabels, files, None)
    } else {
        let subdirs = top_level_dirs(root, &mut skipped)?;
        if subdirs.is_empty() {
            (Layout::Flat, walk_files(root, root, &mut skipped), None)
        } else {
            let mut files = Vec::new();
            let mut class_of = Vec::new();
            for (c, dir) in subdirs.iter().enumerate() {
                let found = walk_files(root, dir, &mut skipped);
                if found.is_empty() {
                    tracing::warn!(
                        "class folder {} holds no files: class {c} will have no images",
                        dir.display()
                    );
                }
                class_of.extend(std::iter::repeat_n(c as u32, found.len()));
                files.extend(found);
            }
            let names = subdirs
                .iter()
                .map(|d| d.file_name().unwrap_or_default().as_bytes().to_vec())
                .collect();
            (Layout::ImageFolder, files, Some((names, class_of)))
        }
    };

    let mut items = Vec::with_capacity(files.len());
    let mut classes = Vec::new();
    let labels_format = labels.as_ref().map(|l| l.format);
    match (class_dirs, labels) {
        (Some((names, class_of)), _) => {
            classes = names;
            for (rel, c) in files.into_iter().zip(class_of) {
                push_image(&[], rel, Origin::File, Some(c), &mut items, &mut skipped);
            }
        }
        (None, Some(labels)) => {
            let found = files.into_iter().map(|rel| (rel, Origin::File));
            classes = join_labels(&[], found, &labels, &mut items, &mut skipped);
            report_unlisted(&labels, &items, "under the input folder", &mut skipped);
        }
        (None, None) => {
            for rel in files {
                push_image(&[], rel, Origin::File, None, &mut items, &mut skipped);
            }
        }
    }
    Ok(Sources {
        layout,
        items,
        classes,
        skipped,
        labels_format,
        root: root.to_path_buf(),
        containers: Vec::new(),
    })
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

/// Whether a member path ends in `.ext` (case-insensitive).
fn has_ext(path: &[u8], ext: &str) -> bool {
    path.len() > ext.len()
        && path[path.len() - ext.len() - 1] == b'.'
        && path[path.len() - ext.len()..].eq_ignore_ascii_case(ext.as_bytes())
}

/// An archive member as a path.
fn member_path(m: &Member) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&m.path))
}

fn discover_tars(archives: &[PathBuf], opts: &SourceOptions) -> Result<Sources> {
    if opts.file_list.is_some() {
        return Err(Error::InvalidArgument(format!(
            "--file-list needs a folder input; {} is an archive",
            archives[0].display()
        )));
    }
    let labels = opts.labels()?;
    let mut skipped = Vec::new();
    let mut containers = Vec::new();
    let mut scans = Vec::new();
    for path in archives {
        let file = File::open(path).at("cannot read input", path)?;
        let len = file.metadata().at("cannot read input", path)?.len();
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let scan = tar::scan(&file, 0, len);
        if scan.members.is_empty() && !scan.damage.is_empty() {
            return Err(Error::Input(format!(
                "{} is neither a folder nor a readable tar archive: {}",
                path.display(),
                scan.damage[0]
            )));
        }
        skipped.extend(
            scan.damage
                .into_iter()
                .map(|d| named(name.clone(), SkipReason::TarDamage(d))),
        );
        scans.push(scan.members);
        containers.push(Container {
            file: Arc::new(file),
            name,
            strip: 0,
        });
    }
    let files = || scans.iter().flatten().filter(|m| m.kind == Kind::File);
    let has_images = files().any(|m| has_image_extension(&member_path(m)));
    // By bytes, not by count: a damaged class tar whose images a resync reads as top-level
    // members still leaves the tars most of the archive.
    let image_bytes: u64 = files()
        .filter(|m| has_image_extension(&member_path(m)))
        .map(|m| m.present)
        .sum();
    let tar_bytes: u64 = files()
        .filter(|m| has_ext(&m.path, "tar"))
        .map(|m| m.present)
        .sum();
    let has_wds_labels = files().any(|m| has_ext(&m.path, "cls") || has_ext(&m.path, "txt"));
    let labels_format = labels.as_ref().map(|l| l.format);
    let mut s = Sources {
        layout: Layout::Tar,
        items: Vec::new(),
        classes: Vec::new(),
        skipped,
        labels_format,
        root: PathBuf::new(),
        containers,
    };
    if let Some(labels) = &labels {
        s.layout = Layout::TarLabels;
        let found = flat_members(&mut s, scans);
        let mut items = Vec::with_capacity(found.len());
        s.classes = join_labels(
            &s.containers,
            found.into_iter(),
            labels,
            &mut items,
            &mut s.skipped,
        );
        report_unlisted(labels, &items, "in the archive", &mut s.skipped);
        s.items = items;
    } else if tar_bytes > image_bytes {
        s.layout = Layout::ImageNetTar;
        imagenet_tar(&mut s, scans);
    } else if has_wds_labels && has_images {
        s.layout = Layout::WebDataset;
        webdataset(&mut s, scans);
    } else {
        for (rel, origin) in flat_members(&mut s, scans) {
            push_image(
                &s.containers,
                rel,
                origin,
                None,
                &mut s.items,
                &mut s.skipped,
            );
        }
    }
    Ok(s)
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

/// What a member that is not an image file says in the report, if anything: folders are
/// passed over as a folder walk passes them.
fn not_a_file(m: &Member) -> Option<SkipReason> {
    match m.kind {
        Kind::File if m.cut_short() => Some(SkipReason::TarDamage(m.cut_reason(false))),
        Kind::File | Kind::Dir => None,
        Kind::Link => Some(SkipReason::LinkMember),
        Kind::Other => Some(SkipReason::NotRegularFile),
    }
}

/// Every regular, whole member of the scanned archives, sorted as a folder walk sorts
/// paths; a path met twice keeps its last member, as extracting the archives would.
fn flat_members(s: &mut Sources, scans: Vec<Vec<Member>>) -> Vec<(PathBuf, Origin)> {
    let mut by_path: BTreeMap<PathBuf, Origin> = BTreeMap::new();
    for (c, members) in scans.into_iter().enumerate() {
        for m in members {
            let origin = Origin::Member {
                container: c as u32,
                offset: m.offset,
                size: m.size,
            };
            let rel = member_path(&m);
            if let Some(why) = not_a_file(&m) {
                s.skipped
                    .push(named(name_of(&s.containers, &rel, origin), why));
            } else if m.kind == Kind::File {
                if let Some(earlier) = by_path.insert(rel.clone(), origin) {
                    s.skipped.push(named(
                        name_of(&s.containers, &rel, earlier),
                        SkipReason::Replaced,
                    ));
                }
            }
        }
    }
    by_path.into_iter().collect()
}

/// The ImageNet train tar: one class per inner tar, by stem, sorted; each inner tar's
/// images sorted. The record stores `<class>/<member>`, as an ImageFolder of the same
/// images would.
fn imagenet_tar(s: &mut Sources, scans: Vec<Vec<Member>>) {
    let mut classes: BTreeMap<Vec<u8>, Vec<(u32, Member)>> = BTreeMap::new();
    for (c, members) in scans.into_iter().enumerate() {
        for m in members {
            let rel = member_path(&m);
            let origin = Origin::Member {
                container: c as u32,
                offset: m.offset,
                size: m.size,
            };
            if m.kind == Kind::File && has_ext(&m.path, "tar") {
                let name = rel.file_name().unwrap_or_default().as_bytes();
                let stem = name[..name.len() - 4].to_vec();
                if m.cut_short() {
                    s.skipped.push(named(
                        name_of(&s.containers, &rel, origin),
                        SkipReason::TarDamage(m.cut_reason(true)),
                    ));
                }
                classes.entry(stem).or_default().push((c as u32, m));
            } else if let Some(why) = not_a_file(&m) {
                s.skipped
                    .push(named(name_of(&s.containers, &rel, origin), why));
            } else if m.kind == Kind::File {
                s.skipped.push(named(
                    name_of(&s.containers, &rel, origin),
                    SkipReason::TopLevelOfTrainTar,
                ));
            }
        }
    }
    for (label, (stem, tars)) in classes.into_iter().enumerate() {
        let mut found: Vec<SourceItem> = Vec::new();
        for (outer, m) in tars {
            let outer = &s.containers[outer as usize];
            let inner = Container {
                file: outer.file.clone(),
                name: format!("{}:{}", outer.name, String::from_utf8_lossy(&m.path)),
                strip: stem.len() + 1,
            };
            let scan = tar::scan(&inner.file, m.offset, m.present);
            s.skipped.extend(
                scan.damage
                    .into_iter()
                    .map(|d| named(inner.name.clone(), SkipReason::TarDamage(d))),
            );
            let container = s.containers.len() as u32;
            s.containers.push(inner);
            for im in scan.members {
                let mut rel = stem.clone();
                rel.push(b'/');
                rel.extend_from_slice(&im.path);
                let rel = PathBuf::from(OsStr::from_bytes(&rel));
                let origin = Origin::Member {
                    container,
                    offset: im.offset,
                    size: im.size,
                };
                if let Some(why) = not_a_file(&im) {
                    s.skipped
                        .push(named(name_of(&s.containers, &rel, origin), why));
                } else if im.kind == Kind::File {
                    push_image(
                        &s.containers,
                        rel,
                        origin,
                        Some(label as u32),
                        &mut found,
                        &mut s.skipped,
                    );
                }
            }
        }
        found.sort_by(|a, b| a.rel.cmp(&b.rel));
        s.items.extend(found);
        s.classes.push(stem);
    }
}

/// Splits a WebDataset member path into its key and its extension (lower-cased): the
/// extension starts at the first dot of the file name.
fn wds_key(path: &[u8]) -> (&[u8], String) {
    let name_start = path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    match path[name_start..].iter().position(|&b| b == b'.') {
        Some(dot) => (
            &path[..name_start + dot],
            String::from_utf8_lossy(&path[name_start + dot + 1..]).to_ascii_lowercase(),
        ),
        None => (path, String::new()),
    }
}

/// WebDataset shards: samples are runs of members that share a key, in archive order.
fn webdataset(s: &mut Sources, scans: Vec<Vec<Member>>) {
    // Label strings interned as they come, ranked into classes at the end.
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut interned: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut raw: Vec<Option<u32>> = Vec::new();
    for (c, members) in scans.into_iter().enumerate() {
        let container = c as u32;
        let mut start = 0;
        while start < members.len() {
            let key = wds_key(&members[start].path).0.to_vec();
            let end = start
                + members[start..]
                    .iter()
                    .take_while(|m| wds_key(&m.path).0 == key.as_slice())
                    .count();
            let sample = &members[start..end];
            start = end;
            let origin = |m: &Member| Origin::Member {
                container,
                offset: m.offset,
                size: m.size,
            };
            let mut usable = Vec::new();
            for m in sample {
                match not_a_file(m) {
                    Some(why) => s.skipped.push(named(
                        name_of(&s.containers, &member_path(m), origin(m)),
                        why,
                    )),
                    None if m.kind == Kind::File => usable.push(m),
                    None => {}
                }
            }
            let key_name = || format!("{}:{}", s.containers[c].name, String::from_utf8_lossy(&key));
            let image = WDS_IMAGE
                .iter()
                .find_map(|e| usable.iter().find(|m| wds_key(&m.path).1 == *e));
            let Some(image) = image else {
                if !usable.is_empty() {
                    s.skipped.push(named(key_name(), SkipReason::NoImageMember));
                }
                continue;
            };
            let label_member = ["cls", "txt"]
                .iter()
                .find_map(|e| usable.iter().find(|m| wds_key(&m.path).1 == *e));
            let label = match label_member.map(|m| read_label(&s.containers[c].file, m)) {
                None => None,
                Some(Err(why)) => {
                    s.skipped.push(named(key_name(), why));
                    continue;
                }
                Some(Ok(text)) => {
                    let next = names.len() as u32;
                    let id = *interned.entry(text.clone()).or_insert(next);
                    if id == next {
                        names.push(text);
                    }
                    Some(id)
                }
            };
            raw.push(label);
            s.items.push(SourceItem {
                rel: member_path(image),
                origin: origin(image),
                label: None,
            });
        }
    }
    let classes = class_order(names.iter().map(Vec::as_slice));
    let rank: HashMap<&[u8], u32> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_slice(), i as u32))
        .collect();
    let items = std::mem::take(&mut s.items);
    for (mut item, label) in items.into_iter().zip(raw) {
        match label {
            Some(id) => {
                item.label = Some(rank[names[id as usize].as_slice()]);
                s.items.push(item);
            }
            None => s.skipped.push(named(
                name_of(&s.containers, &item.rel, item.origin),
                SkipReason::NoLabelMember,
            )),
        }
    }
    s.classes = classes;
}

/// The text of a `.cls` (an integer) or `.txt` label member, trimmed.
fn read_label(file: &File, m: &Member) -> std::result::Result<Vec<u8>, SkipReason> {
    if m.size > MAX_LABEL_BYTES {
        return Err(SkipReason::LabelTooLarge {
            member: String::from_utf8_lossy(&m.path).into_owned(),
            bytes: m.size,
            limit: MAX_LABEL_BYTES,
        });
    }
    let mut buf = vec![0u8; m.size as usize];
    file.read_exact_at(&mut buf, m.offset)
        .map_err(|e| SkipReason::LabelUnreadable(e.to_string()))?;
    let text = buf.trim_ascii().to_vec();
    let is_cls = wds_key(&m.path).1 == "cls";
    if text.is_empty()
        || (is_cls
            && std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .is_none())
    {
        return Err(SkipReason::BadLabel {
            member: String::from_utf8_lossy(&m.path).into_owned(),
            integer: is_cls,
            text: String::from_utf8_lossy(&text).into_owned(),
        });
    }
    Ok(text)
}

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

pub(crate) fn entry(rel: &Path, reason: SkipReason) -> Skipped {
    named(rel.to_string_lossy().into_owned(), reason)
}

/// The class folders of an ImageFolder root, sorted; top-level files are reported.
fn top_level_dirs(root: &Path, skipped: &mut Vec<Skipped>) -> Result<Vec<PathBuf>> {
    let canonical_root = std::fs::canonicalize(root).at("cannot resolve", root)?;
    let mut entries: Vec<_> = std::fs::read_dir(root)
        .at("cannot list", root)?
        .filter_map(|e| match e {
            Ok(e) => Some(e.path()),
            Err(err) => {
                skipped.push(entry(root, SkipReason::CannotList(err.to_string())));
                None
            }
        })
        .collect();
    entries.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for p in entries {
        let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => {
                if let Some(why) = not_a_class(&rel) {
                    skipped.push(entry(&rel, why));
                } else if std::fs::canonicalize(&p).is_ok_and(|c| canonical_root.starts_with(&c)) {
                    skipped.push(entry(&rel, SkipReason::SymlinkLoop));
                } else {
                    dirs.push(p);
                }
            }
            Ok(_) => files.push(rel),
            Err(err) => skipped.push(entry(&rel, SkipReason::Unreadable(err.to_string()))),
        }
    }
    if !dirs.is_empty() {
        for rel in files {
            skipped.push(entry(&rel, SkipReason::TopLevelFile));
        }
    }
    Ok(dirs)
}

/// Why a top-level folder of an ImageFolder tree is not a class, if it is not: a hidden
/// folder (`.git`, `.ipynb_checkpoints`, `.hidden_class`) or the `__MACOSX` folder that
/// macOS's zip adds. torchvision would count them as classes and shift every class index
/// that follows; they are named in the report instead, and not read.
fn not_a_class(rel: &Path) -> Option<SkipReason> {
    let name = rel.file_name()?.as_bytes();
    if name == b"__MACOSX" {
        Some(SkipReason::NotAClass(NotAClass::MacosMetadata))
    } else if name.starts_with(b".") {
        Some(SkipReason::NotAClass(NotAClass::Hidden))
    } else {
        None
    }
}

/// `file`'s path relative to `root` if it lies under it (both resolved, so `./x` and
/// symlinks compare equal).
fn inside(root: &Path, file: &Path) -> Option<PathBuf> {
    let (root, file) = (root.canonicalize().ok()?, file.canonicalize().ok()?);
    file.strip_prefix(&root).ok().map(Path::to_path_buf)
}

/// Every regular file under `dir`, sorted by path bytes, as paths relative to `root`.
fn walk_files(root: &Path, dir: &Path, skipped: &mut Vec<Skipped>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
    for e in walk {
        let e = match e {
            Ok(e) => e,
            Err(err) => {
                let p = err.path().unwrap_or(dir);
                skipped.push(entry(
                    p.strip_prefix(root).unwrap_or(p),
                    SkipReason::Unreadable(err.to_string()),
                ));
                continue;
            }
        };
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap_or(e.path())
            .to_path_buf();
        let ft = e.file_type();
        if ft.is_dir() {
            continue;
        }
        if ft.is_symlink() {
            match std::fs::metadata(e.path()) {
                Ok(m) if m.is_file() => out.push(rel),
                Ok(m) if m.is_dir() => skipped.push(entry(&rel, SkipReason::SymlinkToFolder)),
                Ok(_) => skipped.push(entry(&rel, SkipReason::SymlinkToOther)),
                Err(err) => skipped.push(entry(&rel, SkipReason::BrokenSymlink(err.to_string()))),
            }
        } else if ft.is_file() {
            out.push(rel);
        } else {
            skipped.push(entry(&rel, SkipReason::NotRegularFile));
        }
    }
    out
}

fn read_file_list(root: &Path, list: &Path, skipped: &mut Vec<Skipped>) -> Result<Vec<PathBuf>> {
    let bytes = std::fs::read(list).at("cannot read file list", list)?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let p = PathBuf::from(OsStr::from_bytes(line));
        let rel = match p.strip_prefix(root) {
            Ok(r) if p.is_absolute() => r.to_path_buf(),
            _ => p,
        };
        if seen.insert(rel.clone()) {
            out.push(rel);
        } else {
            skipped.push(entry(&rel, SkipReason::ListedTwice));
        }
    }
    Ok(out)
}
