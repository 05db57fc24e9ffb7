//! Tar inputs read in place: which of the tar layouts an archive set is, and the flat ones
//! (a tar of images, with or without a labels file). The ImageNet train tar and WebDataset
//! shards have their own files.

use super::*;

/// Whether a member path ends in `.ext` (case-insensitive).
pub(super) fn has_ext(path: &[u8], ext: &str) -> bool {
    path.len() > ext.len()
        && path[path.len() - ext.len() - 1] == b'.'
        && path[path.len() - ext.len()..].eq_ignore_ascii_case(ext.as_bytes())
}

/// An archive member as a path.
pub(super) fn member_path(m: &Member) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&m.path))
}

pub(super) fn discover_tars(archives: &[PathBuf], opts: &SourceOptions) -> Result<Sources> {
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

/// What a member that is not an image file says in the report, if anything: folders are
/// passed over as a folder walk passes them.
pub(super) fn not_a_file(m: &Member) -> Option<SkipReason> {
    match m.kind {
        Kind::File if m.cut_short() => Some(SkipReason::TarDamage(m.cut_reason(false))),
        Kind::File | Kind::Dir => None,
        Kind::Link => Some(SkipReason::LinkMember),
        Kind::Other => Some(SkipReason::NotRegularFile),
    }
}

/// Every regular, whole member of the scanned archives, sorted as a folder walk sorts
/// paths; a path met twice keeps its last member, as extracting the archives would.
pub(super) fn flat_members(s: &mut Sources, scans: Vec<Vec<Member>>) -> Vec<(PathBuf, Origin)> {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A tar of `(path, bytes)` members.
    pub(in crate::convert::source) fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = ::tar::Builder::new(Vec::new());
        for (path, data) in members {
            let mut h = ::tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn extensions_match_whole_suffixes_in_any_case() {
        assert!(has_ext(b"a/n01.TAR", "tar"));
        assert!(!has_ext(b"a/n01tar", "tar"));
        assert!(!has_ext(b"tar", "tar"));
    }

    #[test]
    fn a_flat_tar_is_read_sorted_and_a_repeated_path_keeps_its_last_member() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.tar");
        std::fs::write(
            &p,
            tar_of(&[
                ("b.jpg", b"1"),
                ("a.jpg", b"2"),
                ("b.jpg", b"3"),
                ("c.md", b"4"),
            ]),
        )
        .unwrap();
        let s = discover_tars(&[p], &SourceOptions::default()).unwrap();
        assert_eq!(s.layout, Layout::Tar);
        let rels: Vec<_> = s.items.iter().map(|i| i.rel.clone()).collect();
        assert_eq!(rels, [PathBuf::from("a.jpg"), PathBuf::from("b.jpg")]);
        let reasons: Vec<_> = s.skipped.iter().map(|e| e.reason.clone()).collect();
        assert!(reasons.contains(&SkipReason::Replaced), "{reasons:?}");
        assert!(
            reasons.contains(&SkipReason::NotImageExtension),
            "{reasons:?}"
        );
        // The kept b.jpg is the later member (3), as extraction would leave it.
        let b = s
            .items
            .iter()
            .find(|i| i.rel == Path::new("b.jpg"))
            .unwrap();
        assert_eq!(s.read(b, 10).unwrap(), b"3");
    }
}
