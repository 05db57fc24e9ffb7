//! `convert` reading tar archives in place: the ImageNet train tar (a tar of per-class tars),
//! a flat tar with each labels format, WebDataset shards, and damaged archives. Every
//! archive is built here, from JPEGs made here.

use crate::common;

use std::path::Path;

use uic_loader::convert::{convert, convert_inputs, ConvertOptions, Layout, Report};
use uic_loader::RecordFile;

/// A tar holding `members` in this order (GNU headers, so long names work).
fn tar_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// Three classes of four JPEGs, as (class, file name, bytes); the classes are listed out
/// of order, as the members of a real archive may be.
fn images() -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (c, wnid) in ["n03", "n01", "n02"].iter().enumerate() {
        for i in [3, 1, 0, 2] {
            let name = format!("{wnid}_{i}.JPEG");
            out.push((
                wnid.to_string(),
                name,
                common::jpeg(24, 20, (c * 10 + i) as u32),
            ));
        }
    }
    out
}

fn run(input: &Path, out: &Path, opts: &ConvertOptions) -> Report {
    convert(input, out, opts, &|_| {}).unwrap()
}

/// Members of a tar: (name, bytes).
type Members = Vec<(String, Vec<u8>)>;

fn labels_opts(path: &Path) -> ConvertOptions {
    let mut o = ConvertOptions::default();
    o.sources.labels_csv = Some(path.to_path_buf());
    o
}

/// The ImageNet train tar converts to the same record file as the ImageFolder tree of the
/// same images.
#[test]
fn imagenet_train_tar_equals_its_image_folder() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("train");
    let mut inner: Vec<(String, Members)> = Vec::new();
    for (wnid, name, bytes) in images() {
        common::write(&folder.join(&wnid).join(&name), &bytes);
        match inner.iter_mut().find(|(w, _)| *w == wnid) {
            Some((_, v)) => v.push((name, bytes)),
            None => inner.push((wnid, vec![(name, bytes)])),
        }
    }
    let outer: Vec<(String, Vec<u8>)> = inner
        .iter()
        .map(|(wnid, members)| (format!("{wnid}.tar"), tar_of(members)))
        .collect();
    let tar_path = dir.path().join("ILSVRC2012_img_train.tar");
    std::fs::write(&tar_path, tar_of(&outer)).unwrap();

    let (from_folder, from_tar) = (dir.path().join("a.uicr"), dir.path().join("b.uicr"));
    let opts = ConvertOptions::default();
    let rf = convert(&folder, &from_folder, &opts, &|_| {}).unwrap();
    let rt = convert(&tar_path, &from_tar, &opts, &|_| {}).unwrap();
    assert_eq!(rt.layout, Layout::ImageNetTar);
    assert!(
        rt.summary().contains("read as imagenet-train-tar"),
        "{}",
        rt.summary()
    );
    assert_eq!((rt.kept, rt.num_classes, rt.skipped.len()), (12, 3, 0));
    assert_eq!((rf.kept, rf.input_bytes), (rt.kept, rt.input_bytes));
    let f = RecordFile::open(&from_tar).unwrap();
    assert_eq!(f.class_names(), vec!["n01", "n02", "n03"]);
    assert_eq!(f.labels().unwrap(), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    assert_eq!(f.source_path(0), b"n01/n01_0.JPEG");
    assert_eq!(
        std::fs::read(&from_folder).unwrap(),
        std::fs::read(&from_tar).unwrap(),
        "the tar and the folder give different record files"
    );
}

/// A flat tar of validation images with each of the three labels formats gives the labels
/// the folder with a CSV gives; a labels row without an image and an image without a row
/// are both reported.
#[test]
fn flat_tar_with_each_labels_format() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images();
    let mut members: Vec<(String, Vec<u8>)> = imgs
        .iter()
        .map(|(_, n, b)| (format!("ILSVRC2012_val_{n}"), b.clone()))
        .collect();
    members.push((
        "ILSVRC2012_val_unlisted.JPEG".into(),
        common::jpeg(8, 8, 99),
    ));
    members.push(("README".into(), b"not an image".to_vec()));
    let tar_path = dir.path().join("ILSVRC2012_img_val.tar");
    std::fs::write(&tar_path, tar_of(&members)).unwrap();
    let folder = dir.path().join("val");
    for (n, b) in &members {
        common::write(&folder.join(n), b);
    }

    let mut csv = String::from("file,label\n");
    let mut loc = String::from("ImageId,PredictionString\n");
    let mut txt = String::new();
    for (wnid, n, _) in &imgs {
        csv.push_str(&format!("ILSVRC2012_val_{n},{wnid}\n"));
        let stem = n.trim_end_matches(".JPEG");
        loc.push_str(&format!(
            "ILSVRC2012_val_{stem},{wnid} 1 2 30 40 {wnid} 5 6 7 8\n"
        ));
        txt.push_str(&format!("ILSVRC2012_val_{n} {wnid}\n"));
    }
    loc.push_str("ILSVRC2012_val_gone,n01 1 2 3 4\n");
    let files = [
        ("labels.csv", csv, "csv"),
        ("LOC_val_solution.csv", loc, "kaggle-loc-csv"),
        ("val.txt", txt, "file-label-text"),
    ];

    let reference = dir.path().join("ref.uicr");
    let path = dir.path().join("labels.csv");
    std::fs::write(&path, &files[0].1).unwrap();
    convert(&folder, &reference, &labels_opts(&path), &|_| {}).unwrap();
    let want = RecordFile::open(&reference).unwrap();

    for (name, text, format) in &files {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = dir.path().join(format!("{name}.uicr"));
        let r = run(&tar_path, &out, &labels_opts(&path));
        assert_eq!(r.layout, Layout::TarLabels);
        assert_eq!(r.labels_format.as_deref(), Some(*format));
        assert!(
            r.summary().contains(&format!("labels: {format}")),
            "{}",
            r.summary()
        );
        assert_eq!(r.kept, 12, "{name}");
        let f = RecordFile::open(&out).unwrap();
        assert_eq!(f.class_names(), want.class_names(), "{name}");
        assert_eq!(f.labels().unwrap(), want.labels().unwrap(), "{name}");
        assert_eq!(f.source_path(5), want.source_path(5));
        let paths: Vec<&str> = r.skipped.iter().map(|e| e.path.as_str()).collect();
        let mut expect = vec![
            "ILSVRC2012_img_val.tar:ILSVRC2012_val_unlisted.JPEG",
            "ILSVRC2012_img_val.tar:README",
        ];
        if *format == "kaggle-loc-csv" {
            expect.push("ILSVRC2012_val_gone");
        }
        assert_eq!(paths, expect, "{name}: {:?}", r.skipped);
    }
}

/// WebDataset shards by brace pattern: `.cls` and `.txt` labels, samples without an image
/// or a label reported, members of a sample with other extensions ignored.
#[test]
fn webdataset_shards_by_brace_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let mut shards = Vec::new();
    for s in 0..2u32 {
        let mut members = Vec::new();
        for k in 0..3u32 {
            let key = format!("s{s}/{k:06}");
            members.push((format!("{key}.jpg"), common::jpeg(16, 16, s * 10 + k)));
            members.push((format!("{key}.json"), b"{}".to_vec()));
            members.push((
                format!("{key}.cls"),
                format!("{}\n", (s + k) % 2 * 7).into_bytes(),
            ));
        }
        shards.push(members);
    }
    shards[1].push(("s1/no_image.cls".into(), b"3".to_vec()));
    shards[1].push(("s1/no_label.png".into(), common::png(8, 8)));
    shards[1].push(("s1/bad.jpg".into(), common::jpeg(8, 8, 5)));
    shards[1].push(("s1/bad.cls".into(), b"seven".to_vec()));
    for (i, m) in shards.iter().enumerate() {
        std::fs::write(dir.path().join(format!("shard-{i:06}.tar")), tar_of(m)).unwrap();
    }
    let out = dir.path().join("wds.uicr");
    let pattern = dir.path().join("shard-{000000..000001}.tar");
    let r = run(&pattern, &out, &ConvertOptions::default());
    assert_eq!(r.layout, Layout::WebDataset);
    assert_eq!(r.kept, 6);
    let f = RecordFile::open(&out).unwrap();
    assert_eq!(f.class_names(), vec!["0", "7"]);
    assert_eq!(f.labels().unwrap(), [0, 1, 0, 1, 0, 1]);
    assert_eq!(f.source_path(3), b"s1/000000.jpg");
    let reasons: Vec<String> = r.skipped.iter().map(|e| e.reason.to_string()).collect();
    let skipped: Vec<(&str, &str)> = r
        .skipped
        .iter()
        .zip(&reasons)
        .map(|(e, r)| (e.path.as_str(), r.split(':').next().unwrap()))
        .collect();
    assert_eq!(
        skipped,
        [
            (
                "shard-000001.tar:s1/bad",
                "label s1/bad.cls is not an integer"
            ),
            (
                "shard-000001.tar:s1/no_image",
                "sample has no .jpg, .jpeg, .png or .webp member"
            ),
            (
                "shard-000001.tar:s1/no_label.png",
                "sample has no .cls or .txt label"
            ),
        ]
    );

    // `.txt` labels are class names.
    let members = vec![
        ("a.jpg".to_string(), common::jpeg(8, 8, 1)),
        ("a.txt".to_string(), b"zebra ".to_vec()),
        ("b.jpg".to_string(), common::jpeg(8, 8, 2)),
        ("b.txt".to_string(), b"ant".to_vec()),
    ];
    let shard = dir.path().join("txt.tar");
    std::fs::write(&shard, tar_of(&members)).unwrap();
    run(&shard, &out, &ConvertOptions::default());
    let f = RecordFile::open(&out).unwrap();
    assert_eq!(f.class_names(), vec!["ant", "zebra"]);
    assert_eq!(f.labels().unwrap(), [1, 0]);

    // A missing shard is refused before anything is read.
    let err = convert_inputs(
        &[dir.path().join("shard-{000000..000003}.tar")],
        &dir.path().join("none.uicr"),
        &ConvertOptions::default(),
        &|_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("2 of the 4 shards") && err.contains("shard-000002.tar"),
        "{err}"
    );
    assert!(!dir.path().join("none.uicr").exists());
}

/// A truncated ImageNet train tar keeps every image before the cut, including those of the
/// class tar that the cut falls in, and names what was lost; a bad header is skipped over.
#[test]
fn damaged_tars_keep_what_can_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let class = |wnid: &str, seed: u32| {
        let members: Vec<(String, Vec<u8>)> = (0..4)
            .map(|i| (format!("{wnid}_{i}.JPEG"), common::jpeg(32, 32, seed + i)))
            .collect();
        tar_of(&members)
    };
    let (a, b) = (class("n01", 0), class("n02", 10));
    let whole = tar_of(&[("n01.tar".into(), a.clone()), ("n02.tar".into(), b.clone())]);
    // Cut inside n02's third image: 512 (outer header) + a + 512 (header) + two members.
    let n02_data = 512 + a.len() + 512;
    let member = |t: &[u8], i: usize| {
        let mut at = 0;
        for _ in 0..i {
            let size = usize::from_str_radix(
                std::str::from_utf8(&t[at + 124..at + 135])
                    .unwrap()
                    .trim_matches('\0'),
                8,
            )
            .unwrap();
            at += 512 + size.div_ceil(512) * 512;
        }
        at
    };
    let cut = n02_data + member(&b, 2) + 512 + 100;
    let path = dir.path().join("train.tar");
    std::fs::write(&path, &whole[..cut]).unwrap();
    let out = dir.path().join("cut.uicr");
    let r = run(&path, &out, &ConvertOptions::default());
    assert_eq!(r.kept, 6, "{:?}", r.skipped);
    let f = RecordFile::open(&out).unwrap();
    assert_eq!(f.labels().unwrap(), [0, 0, 0, 0, 1, 1]);
    let reasons: Vec<String> = r
        .skipped
        .iter()
        .map(|e| format!("{}: {}", e.path, e.reason))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|s| s.starts_with("train.tar:n02.tar: cut short")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|s| s
            .starts_with("train.tar:n02.tar:n02_2.JPEG: cut short: the archive ends 100 bytes")),
        "{reasons:?}"
    );

    // A damaged class-tar header: the scan resyncs inside that class tar, whose images are
    // then named as strays at the top level; the other classes are kept, the layout holds.
    let c = class("n03", 20);
    let mut bytes = tar_of(&[
        ("n01.tar".into(), a),
        ("n02.tar".into(), b),
        ("n03.tar".into(), c),
    ]);
    bytes[3] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let r = run(&path, &out, &ConvertOptions::default());
    assert_eq!(
        (r.layout.name(), r.kept, r.num_classes),
        ("imagenet-train-tar", 8, 2)
    );
    let strays = r
        .skipped
        .iter()
        .filter(|e| e.reason.to_string().starts_with("file at the top level"))
        .count();
    assert_eq!(strays, 4, "{:?}", r.skipped);
    assert!(
        r.skipped[0]
            .reason
            .to_string()
            .starts_with("damaged tar header at byte 0"),
        "{:?}",
        r.skipped
    );

    // A flat tar whose second header is damaged: the first and third images are kept.
    let members: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("img_{i}.jpg"), common::jpeg(16, 16, i)))
        .collect();
    let mut bytes = tar_of(&members);
    let second = member(&bytes, 1);
    bytes[second + 3] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let r = run(&path, &out, &ConvertOptions::default());
    assert_eq!((r.layout, r.kept), (Layout::Tar, 2));
    let f = RecordFile::open(&out).unwrap();
    assert_eq!(f.source_path(1), b"img_2.jpg");
    assert_eq!(r.skipped.len(), 1);
    assert!(
        r.skipped[0].path == "train.tar"
            && r.skipped[0]
                .reason
                .to_string()
                .starts_with(&format!("damaged tar header at byte {second}")),
        "{:?}",
        r.skipped
    );

    // A file that is not a tar at all is refused with one line, and writes nothing.
    std::fs::write(&path, common::jpeg(16, 16, 1)).unwrap();
    let err = convert(&path, &out, &ConvertOptions::default(), &|_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("neither a folder nor a readable tar archive"),
        "{err}"
    );
    assert!(!err.contains('\n'));
}
