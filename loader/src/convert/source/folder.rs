//! Folder inputs: an ImageFolder tree (classes from its top-level folders; hidden folders
//! and `__MACOSX` are not classes), a flat folder with a labels file, a flat unlabelled
//! folder, or the paths of a `--file-list`. The walk is sorted and never follows a symlink
//! to a folder.

use super::*;

pub(super) fn discover_folder(root: &Path, opts: &SourceOptions) -> Result<Sources> {
    let labels = opts.labels()?;
    let mut skipped = Vec::new();
    let (layout, files, class_dirs) = if let Some(list) = &opts.file_list {
        let files = read_file_list(root, list, &mut skipped)?;
        let classes = match labels {
            Some(_) => None,
            None => list_classes(root, &files)?,
        };
        (Layout::FileList, files, classes)
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

/// The class folders of an ImageFolder root, sorted; top-level files are reported.
pub(super) fn top_level_dirs(root: &Path, skipped: &mut Vec<Skipped>) -> Result<Vec<PathBuf>> {
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
pub(super) fn not_a_class(rel: &Path) -> Option<SkipReason> {
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
pub(super) fn inside(root: &Path, file: &Path) -> Option<PathBuf> {
    let (root, file) = (root.canonicalize().ok()?, file.canonicalize().ok()?);
    file.strip_prefix(&root).ok().map(Path::to_path_buf)
}

/// Every regular file under `dir`, sorted by path bytes, as paths relative to `root`.
pub(super) fn walk_files(root: &Path, dir: &Path, skipped: &mut Vec<Skipped>) -> Vec<PathBuf> {
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

/// Class names, and each listed path's class index.
type ClassList = (Vec<Vec<u8>>, Vec<u32>);

/// The classes of listed paths under an ImageFolder tree, as the tree alone would give them:
/// the root's class folders (all of them, so that class indices match the whole tree's),
/// and each path's class its first component. `None` when the root has no class folders,
/// or when some listed path lies outside them (said on the log: the output then has no
/// labels, rather than labels for some files only).
fn list_classes(root: &Path, files: &[PathBuf]) -> Result<Option<ClassList>> {
    // Top-level files and hidden folders are the tree's business, not the list's.
    let dirs = top_level_dirs(root, &mut Vec::new())?;
    if dirs.is_empty() {
        return Ok(None);
    }
    let names: Vec<Vec<u8>> = dirs
        .iter()
        .map(|d| d.file_name().unwrap_or_default().as_bytes().to_vec())
        .collect();
    let index: HashMap<&[u8], u32> = names
        .iter()
        .enumerate()
        .map(|(c, n)| (n.as_slice(), c as u32))
        .collect();
    let class_of: Vec<Option<u32>> = files
        .iter()
        .map(|f| {
            let mut parts = f
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir));
            let first = parts.next()?.as_os_str().as_bytes();
            parts.next()?;
            index.get(first).copied()
        })
        .collect();
    let outside = class_of.iter().filter(|c| c.is_none()).count();
    if outside > 0 {
        tracing::warn!(
            "{outside} of the {} listed paths are not inside a class folder of {}: the output \
             has no labels (list paths as CLASS/FILE to keep them)",
            files.len(),
            root.display()
        );
        return Ok(None);
    }
    Ok(Some((names, class_of.into_iter().flatten().collect())))
}

pub(super) fn read_file_list(
    root: &Path,
    list: &Path,
    skipped: &mut Vec<Skipped>,
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
            skipped.push(entry(&rel, SkipReason::ListedTwice));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    fn rels(s: &Sources) -> Vec<String> {
        s.items
            .iter()
            .map(|i| i.rel.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn an_image_folder_has_its_sorted_class_folders_and_nothing_hidden() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "dog/2.jpg",
            "cat/1.jpg",
            "cat/0.png",
            ".git/x.jpg",
            "__MACOSX/cat/1.jpg",
        ] {
            touch(&d.path().join(f));
        }
        touch(&d.path().join("README.jpg"));
        let s = discover_folder(d.path(), &SourceOptions::default()).unwrap();
        assert_eq!(s.layout, Layout::ImageFolder);
        assert_eq!(s.classes, [b"cat".to_vec(), b"dog".to_vec()]);
        assert_eq!(rels(&s), ["cat/0.png", "cat/1.jpg", "dog/2.jpg"]);
        let labels: Vec<_> = s.items.iter().map(|i| i.label).collect();
        assert_eq!(labels, [Some(0), Some(0), Some(1)]);
        let skipped: Vec<(&str, String)> = s
            .skipped
            .iter()
            .map(|e| (e.path.as_str(), e.reason.to_string()))
            .collect();
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped.iter().any(|(p, _)| *p == ".git"), "{skipped:?}");
        assert!(skipped.iter().any(|(p, _)| *p == "__MACOSX"), "{skipped:?}");
        assert!(skipped
            .iter()
            .any(|(p, r)| *p == "README.jpg" && r.contains("top level")));
    }

    #[test]
    fn a_flat_folder_is_unlabelled_and_a_file_list_keeps_its_order() {
        let d = tempfile::tempdir().unwrap();
        for f in ["b.jpg", "a.jpg", "notes.txt"] {
            touch(&d.path().join(f));
        }
        let s = discover_folder(d.path(), &SourceOptions::default()).unwrap();
        assert_eq!(s.layout, Layout::Flat);
        assert_eq!(rels(&s), ["a.jpg", "b.jpg"]);
        assert!(s.items.iter().all(|i| i.label.is_none()));
        assert_eq!(s.skipped.len(), 1);
        let list = d.path().join("list.txt");
        std::fs::write(&list, "b.jpg\na.jpg\nb.jpg\n").unwrap();
        let opts = SourceOptions {
            file_list: Some(list),
            ..Default::default()
        };
        let s = discover_folder(d.path(), &opts).unwrap();
        assert_eq!(s.layout, Layout::FileList);
        assert_eq!(rels(&s), ["b.jpg", "a.jpg"]);
        assert_eq!(s.skipped[0].reason, SkipReason::ListedTwice);
        assert!(s.classes.is_empty() && s.items.iter().all(|i| i.label.is_none()));
    }

    #[test]
    fn a_file_list_under_an_image_folder_takes_the_class_folders_labels() {
        let d = tempfile::tempdir().unwrap();
        for f in ["airplane/0.jpg", "bird/1.jpg", "cat/2.jpg"] {
            touch(&d.path().join(f));
        }
        let list = d.path().join("list.txt");
        std::fs::write(&list, "cat/2.jpg\nairplane/0.jpg\n").unwrap();
        let opts = SourceOptions {
            file_list: Some(list.clone()),
            ..Default::default()
        };
        let s = discover_folder(d.path(), &opts).unwrap();
        // Every class folder is a class, listed or not: the indices are the whole tree's.
        assert_eq!(s.classes.len(), 3);
        let labels: Vec<_> = s.items.iter().map(|i| i.label).collect();
        assert_eq!(labels, [Some(2), Some(0)]);
        // A listed path outside the class folders: no labels at all, not some.
        touch(&d.path().join("loose.jpg"));
        std::fs::write(&list, "cat/2.jpg\nloose.jpg\n").unwrap();
        let s = discover_folder(d.path(), &opts).unwrap();
        assert!(s.classes.is_empty() && s.items.iter().all(|i| i.label.is_none()));
    }

    #[test]
    fn hidden_and_metadata_folders_are_not_classes() {
        assert_eq!(
            not_a_class(Path::new(".hidden_class")),
            Some(SkipReason::NotAClass(NotAClass::Hidden))
        );
        assert_eq!(
            not_a_class(Path::new("__MACOSX")),
            Some(SkipReason::NotAClass(NotAClass::MacosMetadata))
        );
        assert_eq!(not_a_class(Path::new("n01440764")), None);
    }
}
