//! Finding the images of a conversion and their labels, in a deterministic order.
//!
//! Layouts, tried in this order:
//! - `--file-list`: the listed paths (relative to the input root), in list order;
//! - `--labels CSV`: every file under the input root, sorted, joined with the CSV on the
//!   path relative to the root (ImageNet's validation set comes this way);
//! - ImageFolder, when the root has subfolders: `root/<class>/**/<file>`, classes sorted
//!   by name as torchvision does;
//! - flat: every file under the root, sorted, without labels.
//!
//! The walk never hangs on symlink loops: inside the tree, symlinks to files are followed
//! and symlinks to directories are reported and not followed. Top-level class folders may
//! be symlinks (a common way to assemble ImageNet), except one that points back at the root.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::convert::report::ReportEntry;
use crate::error::{Error, IoContext, Result};

/// File extensions taken as images (case-insensitive): torchvision's list plus `.gif`.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp", "gif",
];

/// How the input was laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `root/<class>/<files>`.
    ImageFolder,
    /// A folder plus a labels CSV.
    FlatLabels,
    /// A folder without labels.
    Flat,
    /// A plain list of paths.
    FileList,
}

impl Layout {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Layout::ImageFolder => "image-folder",
            Layout::FlatLabels => "flat-labels",
            Layout::Flat => "flat",
            Layout::FileList => "file-list",
        }
    }
}

/// Where labels and file lists come from.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// A CSV with a header row naming a `file` column and a label column.
    pub labels_csv: Option<PathBuf>,
    /// The CSV's label column (default `label`).
    pub label_column: Option<String>,
    /// A text file of paths, one per line, relative to the input root.
    pub file_list: Option<PathBuf>,
}

/// One image to convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceItem {
    /// Path relative to the input root, as stored in the record file.
    pub rel: PathBuf,
    /// Path to open.
    pub abs: PathBuf,
    /// Class index, when the input has labels.
    pub label: Option<u32>,
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
    pub skipped: Vec<ReportEntry>,
}

/// Lists the images under `root` with their labels. See the module docs for the layouts.
///
/// # Errors
/// An unreadable root, labels CSV or file list, or a CSV without the needed columns.
pub fn discover(root: &Path, opts: &SourceOptions) -> Result<Sources> {
    let meta = std::fs::metadata(root).at("cannot read input", root)?;
    if !meta.is_dir() {
        return Err(Error::Input(format!(
            "input {} is not a folder",
            root.display()
        )));
    }
    let labels = opts
        .labels_csv
        .as_deref()
        .map(|p| read_labels(p, opts.label_column.as_deref()))
        .transpose()?;
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
    match (class_dirs, labels) {
        (Some((names, class_of)), _) => {
            classes = names;
            for (rel, c) in files.into_iter().zip(class_of) {
                push_image(root, rel, Some(c), &mut items, &mut skipped);
            }
        }
        (None, Some(labels)) => {
            classes = labels.classes.clone();
            let mut seen = HashSet::new();
            for rel in files {
                if !has_image_extension(&rel) {
                    skipped.push(entry(&rel, "not an image file extension"));
                    continue;
                }
                let key = rel.as_os_str().as_bytes().to_vec();
                match labels.by_path.get(&key) {
                    Some(&c) => {
                        seen.insert(key);
                        push_image(root, rel, Some(c), &mut items, &mut skipped);
                    }
                    None => skipped.push(entry(&rel, "no label for this file in the labels CSV")),
                }
            }
            for (path, _) in labels.rows.iter().filter(|(p, _)| !seen.contains(p)) {
                let rel = PathBuf::from(OsStr::from_bytes(path));
                skipped.push(entry(
                    &rel,
                    "listed in the labels CSV but not found under the input folder",
                ));
            }
        }
        (None, None) => {
            for rel in files {
                push_image(root, rel, None, &mut items, &mut skipped);
            }
        }
    }
    Ok(Sources {
        layout,
        items,
        classes,
        skipped,
    })
}

fn push_image(
    root: &Path,
    rel: PathBuf,
    label: Option<u32>,
    items: &mut Vec<SourceItem>,
    skipped: &mut Vec<ReportEntry>,
) {
    if has_image_extension(&rel) {
        items.push(SourceItem {
            abs: root.join(&rel),
            rel,
            label,
        });
    } else {
        skipped.push(entry(&rel, "not an image file extension"));
    }
}

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

pub(crate) fn entry(rel: &Path, reason: impl Into<String>) -> ReportEntry {
    ReportEntry {
        path: rel.to_string_lossy().into_owned(),
        reason: reason.into(),
    }
}

/// The class folders of an ImageFolder root, sorted; top-level files are reported.
fn top_level_dirs(root: &Path, skipped: &mut Vec<ReportEntry>) -> Result<Vec<PathBuf>> {
    let canonical_root = std::fs::canonicalize(root).at("cannot resolve", root)?;
    let mut entries: Vec<_> = std::fs::read_dir(root)
        .at("cannot list", root)?
        .filter_map(|e| match e {
            Ok(e) => Some(e.path()),
            Err(err) => {
                skipped.push(entry(root, format!("cannot list: {err}")));
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
                if std::fs::canonicalize(&p).is_ok_and(|c| canonical_root.starts_with(&c)) {
                    skipped.push(entry(
                        &rel,
                        "symlink to the input folder or above it (a loop); not followed",
                    ));
                } else {
                    dirs.push(p);
                }
            }
            Ok(_) => files.push(rel),
            Err(err) => skipped.push(entry(&rel, format!("cannot read: {err}"))),
        }
    }
    if !dirs.is_empty() {
        for rel in files {
            skipped.push(entry(
                &rel,
                "file at the top level of an ImageFolder tree (not in a class folder)",
            ));
        }
    }
    Ok(dirs)
}

/// `file`'s path relative to `root` if it lies under it (both resolved, so `./x` and
/// symlinks compare equal).
fn inside(root: &Path, file: &Path) -> Option<PathBuf> {
    let (root, file) = (root.canonicalize().ok()?, file.canonicalize().ok()?);
    file.strip_prefix(&root).ok().map(Path::to_path_buf)
}

/// Every regular file under `dir`, sorted by path bytes, as paths relative to `root`.
fn walk_files(root: &Path, dir: &Path, skipped: &mut Vec<ReportEntry>) -> Vec<PathBuf> {
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
                    format!("cannot read: {err}"),
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
                Ok(m) if m.is_dir() => skipped.push(entry(
                    &rel,
                    "symlink to a folder inside the tree; not followed",
                )),
                Ok(_) => skipped.push(entry(
                    &rel,
                    "symlink to something that is not a regular file",
                )),
                Err(err) => skipped.push(entry(&rel, format!("broken symlink: {err}"))),
            }
        } else if ft.is_file() {
            out.push(rel);
        } else {
            skipped.push(entry(&rel, "not a regular file"));
        }
    }
    out
}

fn read_file_list(
    root: &Path,
    list: &Path,
    skipped: &mut Vec<ReportEntry>,
) -> Result<Vec<PathBuf>> {
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
            skipped.push(entry(&rel, "listed twice in the file list; kept the first"));
        }
    }
    Ok(out)
}

/// A parsed labels CSV.
#[derive(Debug)]
struct Labels {
    classes: Vec<Vec<u8>>,
    by_path: HashMap<Vec<u8>, u32>,
    rows: Vec<(Vec<u8>, u32)>,
}

fn read_labels(path: &Path, column: Option<&str>) -> Result<Labels> {
    let bad = |msg: String| Error::Input(format!("labels CSV {}: {msg}", path.display()));
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| bad(e.to_string()))?;
    let headers = rdr.byte_headers().map_err(|e| bad(e.to_string()))?.clone();
    let names: Vec<String> = headers
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    let find = |wanted: &[&str]| {
        names
            .iter()
            .position(|n| wanted.iter().any(|w| n.eq_ignore_ascii_case(w)))
    };
    let file_col = find(&["file", "path", "filename", "image"]).ok_or_else(|| {
        bad(format!(
            "no file column (expected one named file, path or filename; columns: {})",
            names.join(", ")
        ))
    })?;
    let label_name = column.unwrap_or("label");
    let label_col = find(&[label_name]).ok_or_else(|| {
        bad(format!(
            "no column named {label_name:?} (columns: {}); pick the label column with --label-column",
            names.join(", ")
        ))
    })?;
    let mut raw_rows = Vec::new();
    for (i, rec) in rdr.byte_records().enumerate() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let line = i + 2;
        let file = rec
            .get(file_col)
            .filter(|f| !f.is_empty())
            .ok_or_else(|| bad(format!("line {line}: empty file name")))?;
        let label = rec
            .get(label_col)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad(format!("line {line}: empty label")))?;
        raw_rows.push((file.to_vec(), label.to_vec()));
    }
    let unique: BTreeSet<&[u8]> = raw_rows.iter().map(|(_, l)| l.as_slice()).collect();
    let mut classes: Vec<Vec<u8>> = unique.into_iter().map(<[u8]>::to_vec).collect();
    let numeric = |l: &[u8]| {
        std::str::from_utf8(l)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    if classes.iter().all(|c| numeric(c).is_some()) {
        classes.sort_by_key(|c| numeric(c));
    }
    let index: HashMap<&[u8], u32> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_slice(), i as u32))
        .collect();
    let mut by_path = HashMap::new();
    let mut rows = Vec::new();
    for (file, label) in &raw_rows {
        let c = index[label.as_slice()];
        if let Some(prev) = by_path.insert(file.clone(), c) {
            if prev != c {
                return Err(bad(format!(
                    "{} has two different labels",
                    String::from_utf8_lossy(file)
                )));
            }
            continue;
        }
        rows.push((file.clone(), c));
    }
    Ok(Labels {
        classes,
        by_path,
        rows,
    })
}
