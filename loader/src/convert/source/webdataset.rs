//! WebDataset shards: samples are runs of members that share a key.

use super::*;

/// Splits a WebDataset member path into its key and its extension (lower-cased): the
/// extension starts at the first dot of the file name.
pub(super) fn wds_key(path: &[u8]) -> (&[u8], String) {
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
pub(super) fn webdataset(s: &mut Sources, scans: Vec<Vec<Member>>) {
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
pub(super) fn read_label(file: &File, m: &Member) -> std::result::Result<Vec<u8>, SkipReason> {
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

#[cfg(test)]
mod tests {
    use super::super::archive::tests::tar_of;
    use super::*;

    #[test]
    fn keys_end_at_the_first_dot_of_the_name() {
        assert_eq!(
            wds_key(b"dir.v1/s0001.seg.jpg"),
            (&b"dir.v1/s0001"[..], "seg.jpg".into())
        );
        assert_eq!(wds_key(b"s0001.CLS"), (&b"s0001"[..], "cls".into()));
        assert_eq!(wds_key(b"noext"), (&b"noext"[..], String::new()));
    }

    #[test]
    fn samples_take_their_image_and_label_and_the_incomplete_are_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("shard-0.tar");
        let members: [(&str, &[u8]); 6] = [
            ("s1.jpg", b"a"),
            ("s1.cls", b" 7\n"),
            ("s2.jpg", b"b"),
            ("s2.cls", b"3"),
            ("s3.jpg", b"c"),
            ("s3.cls", b"seven"),
        ];
        std::fs::write(&p, tar_of(&members)).unwrap();
        let s = discover_tars(&[p], &SourceOptions::default()).unwrap();
        assert_eq!(s.layout, Layout::WebDataset);
        // Integer labels are classes in numeric order: 3, then 7.
        assert_eq!(s.classes, [b"3".to_vec(), b"7".to_vec()]);
        let labels: Vec<_> = s.items.iter().map(|i| i.label).collect();
        assert_eq!(labels, [Some(1), Some(0)]);
        assert_eq!(s.skipped.len(), 1);
        assert!(
            matches!(
                &s.skipped[0].reason,
                SkipReason::BadLabel { integer: true, .. }
            ),
            "{:?}",
            s.skipped
        );
    }
}
