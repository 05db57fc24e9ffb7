//! The ImageNet train tar: a tar of per-class tars, read without extracting either.

use super::*;

/// The ImageNet train tar: one class per inner tar, by stem, sorted; each inner tar's
/// images sorted. The record stores `<class>/<member>`, as an ImageFolder of the same
/// images would.
pub(super) fn imagenet_tar(s: &mut Sources, scans: Vec<Vec<Member>>) {
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

#[cfg(test)]
mod tests {
    use super::super::archive::tests::tar_of;
    use super::*;

    #[test]
    fn each_inner_tar_is_a_class_named_by_its_stem() {
        let d = tempfile::tempdir().unwrap();
        let fish = tar_of(&[("f2.JPEG", b"x"), ("f1.JPEG", b"y")]);
        let bird = tar_of(&[("b1.JPEG", b"z")]);
        let p = d.path().join("train.tar");
        std::fs::write(&p, tar_of(&[("n02.tar", &bird), ("n01.tar", &fish)])).unwrap();
        let s = discover_tars(&[p], &SourceOptions::default()).unwrap();
        assert_eq!(s.layout, Layout::ImageNetTar);
        assert_eq!(s.classes, [b"n01".to_vec(), b"n02".to_vec()]);
        let got: Vec<(String, Option<u32>)> = s
            .items
            .iter()
            .map(|i| (i.rel.to_string_lossy().into_owned(), i.label))
            .collect();
        assert_eq!(
            got,
            [
                ("n01/f1.JPEG".to_string(), Some(0)),
                ("n01/f2.JPEG".to_string(), Some(0)),
                ("n02/b1.JPEG".to_string(), Some(1)),
            ]
        );
        assert_eq!(s.name(&s.items[0]), "train.tar:n01.tar:f1.JPEG");
    }
}
