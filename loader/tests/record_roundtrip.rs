//! Write then read gives identical bytes, labels, sizes and paths, in every storage mode.

use crate::common;

use std::os::unix::ffi::OsStrExt;

use uic_loader::convert::{convert, ConvertOptions};
use uic_loader::jpeg::{Decoder, Scale};
use uic_loader::{NewSample, RecordFile, RecordWriter, StorageMode, WriterOptions};

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn writer_reader_round_trip_in_every_mode_and_alignment() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, labeled, align) in [
        (StorageMode::Jpeg, true, 4096),
        (StorageMode::Jpeg, false, 64),
        (StorageMode::Raw, true, 8),
        (StorageMode::Raw, false, 4096),
    ] {
        let path = dir.path().join(format!("{mode}-{labeled}-{align}.uicr"));
        let classes: Vec<Vec<u8>> = if labeled {
            vec![b"cat".to_vec(), b"d\xffg".to_vec(), vec![]]
        } else {
            vec![]
        };
        let mut w = RecordWriter::create(
            &path,
            WriterOptions {
                mode,
                align,
                classes: classes.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        let mut expected = Vec::new();
        for i in 0..50u32 {
            let (wd, ht) = (1 + i % 9, 1 + (i * 7) % 13);
            let data = match mode {
                StorageMode::Raw => random_bytes((wd * ht * 3) as usize, i as u64),
                StorageMode::Jpeg => random_bytes(1 + (i as usize * 997) % 9000, i as u64),
            };
            let source = format!("dir/{i}\u{e9}.jpg").into_bytes();
            let label = labeled.then_some(i % 3);
            w.append(&NewSample {
                data: &data,
                width: wd,
                height: ht,
                label,
                source: &source,
                converted: i % 2 == 0,
            })
            .unwrap();
            expected.push((data, wd, ht, label, source, i % 2 == 0));
        }
        let written = w.finish().unwrap();
        assert_eq!(written.num_samples, 50);
        assert_eq!(written.file_len, std::fs::metadata(&path).unwrap().len());

        let f = RecordFile::open(&path).unwrap();
        assert_eq!(f.len(), 50);
        assert_eq!(f.mode(), mode);
        assert_eq!(f.has_labels(), labeled);
        assert_eq!(f.num_classes(), classes.len());
        for (c, name) in classes.iter().enumerate() {
            assert_eq!(
                f.class_name(c).as_bytes(),
                String::from_utf8_lossy(name).as_bytes()
            );
        }
        for (i, (data, wd, ht, label, source, converted)) in expected.iter().enumerate() {
            let s = f.sample(i);
            assert_eq!(s.data, data.as_slice(), "{path:?} sample {i}");
            assert_eq!(
                (s.width, s.height, s.label, s.converted),
                (*wd, *ht, *label, *converted)
            );
            assert_eq!(f.source_path(i), source.as_slice());
            let (offset, _) = f.extents()[i];
            assert_eq!(offset % align as u64, 0, "record {i} not aligned");
        }
        assert!(f.get(50).is_none());
        assert!(f.verify().is_empty());
    }
}

#[test]
fn page_grouping_keeps_records_inside_groups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grouped.uicr");
    let group = 16 << 10;
    let opts = WriterOptions {
        align: 64,
        group: Some(group),
        ..Default::default()
    };
    let mut w = RecordWriter::create(&path, opts).unwrap();
    let sizes = [5000usize, 7000, 9000, 3000, 20000, 100, 16000, 4000];
    for (i, &n) in sizes.iter().enumerate() {
        let data = random_bytes(n, i as u64);
        w.append(&NewSample {
            data: &data,
            width: 1,
            height: 1,
            label: None,
            source: b"x",
            converted: false,
        })
        .unwrap();
    }
    w.finish().unwrap();
    let f = RecordFile::open(&path).unwrap();
    for (i, (offset, len)) in f.extents().into_iter().enumerate() {
        let (start, end) = (offset / group, (offset + len as u64 - 1) / group);
        // Only a record larger than a group may span groups.
        assert!(
            start == end || len as u64 > group,
            "record {i} at {offset}+{len} straddles a group"
        );
        assert_eq!(
            f.sample(i).data,
            random_bytes(sizes[i], i as u64).as_slice()
        );
    }
}

#[test]
fn empty_record_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.uicr");
    RecordWriter::create(&path, WriterOptions::default())
        .unwrap()
        .finish()
        .unwrap();
    let f = RecordFile::open(&path).unwrap();
    assert!(f.is_empty());
    assert!(f.verify().is_empty());
}

#[test]
fn an_unfinished_writer_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never.uicr");
    {
        let mut w = RecordWriter::create(&path, WriterOptions::default()).unwrap();
        w.append(&NewSample {
            data: b"xyz",
            width: 1,
            height: 1,
            label: None,
            source: b"a",
            converted: false,
        })
        .unwrap();
        // dropped without finish(), as on an error or a crash unwinding
    }
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temporary file left behind"
    );
}

#[test]
fn writer_rejects_inconsistent_samples() {
    let dir = tempfile::tempdir().unwrap();
    let raw = WriterOptions {
        mode: StorageMode::Raw,
        ..Default::default()
    };
    let mut w = RecordWriter::create(dir.path().join("r.uicr"), raw).unwrap();
    let bad_len = NewSample {
        data: &[1, 2, 3, 4],
        width: 1,
        height: 1,
        label: None,
        source: b"x",
        converted: true,
    };
    assert!(w.append(&bad_len).is_err());
    let labeled = WriterOptions {
        classes: vec![b"a".to_vec()],
        ..Default::default()
    };
    let mut w = RecordWriter::create(dir.path().join("l.uicr"), labeled).unwrap();
    let no_label = NewSample {
        data: b"j",
        width: 1,
        height: 1,
        label: None,
        source: b"x",
        converted: false,
    };
    assert!(w.append(&no_label).is_err());
    assert!(w
        .append(&NewSample {
            label: Some(1),
            ..no_label
        })
        .is_err());
    assert!(w
        .append(&NewSample {
            label: Some(0),
            ..no_label
        })
        .is_ok());
}

#[test]
fn convert_passthrough_keeps_the_source_bytes_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    common::image_folder(&input, 3, 5);
    let out = dir.path().join("out.uicr");
    let report = convert(&input, &out, &ConvertOptions::default(), &|_| {}).unwrap();
    assert_eq!(
        (report.kept, report.skipped.len(), report.converted.len()),
        (15, 0, 0)
    );
    let f = RecordFile::open(&out).unwrap();
    assert_eq!(f.class_names(), vec!["class0", "class1", "class2"]);
    for i in 0..f.len() {
        let rel = std::ffi::OsStr::from_bytes(f.source_path(i)).to_owned();
        let source = std::fs::read(input.join(&rel)).unwrap();
        let s = f.sample(i);
        assert_eq!(s.data, source.as_slice(), "{rel:?}");
        assert!(!s.converted);
        assert_eq!(s.label, Some((i / 5) as u32));
        let h = Decoder::new().unwrap().read_header(&source).unwrap();
        assert_eq!((s.width, s.height), (h.width, h.height));
    }
}

#[test]
fn convert_reencode_and_raw_respect_max_side_and_decode_back() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    common::write(&input.join("big.jpg"), &common::jpeg(300, 120, 1));
    common::write(&input.join("small.jpg"), &common::jpeg(40, 30, 2));
    for mode in [StorageMode::Jpeg, StorageMode::Raw] {
        let out = dir.path().join(format!("{mode}.uicr"));
        let opts = ConvertOptions {
            mode,
            max_side: Some(100),
            quality: Some(85),
            ..Default::default()
        };
        let report = convert(&input, &out, &opts, &|_| {}).unwrap();
        assert_eq!(report.kept, 2);
        let f = RecordFile::open(&out).unwrap();
        assert_eq!(f.num_classes(), 0);
        let sizes: Vec<_> = (0..2)
            .map(|i| (f.sample(i).width, f.sample(i).height))
            .collect();
        assert_eq!(sizes, vec![(100, 40), (40, 30)]);
        for i in 0..2 {
            let s = f.sample(i);
            assert!(s.converted);
            match mode {
                StorageMode::Raw => assert_eq!(s.data.len() as u32, s.width * s.height * 3),
                StorageMode::Jpeg => {
                    let mut d = Decoder::new().unwrap();
                    let mut buf = vec![0; (s.width * s.height * 3) as usize];
                    assert_eq!(
                        d.decode_rgb(s.data, Scale::Full, &mut buf).unwrap(),
                        (s.width, s.height)
                    );
                }
            }
        }
    }
    // Raw pixels of an unresized image equal a plain decode of the source.
    let f = RecordFile::open(dir.path().join("raw.uicr")).unwrap();
    let src = std::fs::read(input.join("small.jpg")).unwrap();
    let mut full = vec![0; 40 * 30 * 3];
    Decoder::new()
        .unwrap()
        .decode_rgb(&src, Scale::Full, &mut full)
        .unwrap();
    assert_eq!(f.sample(1).data, full.as_slice());
}

#[test]
fn flat_folder_with_labels_csv_and_file_list() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("val");
    for i in 0..6 {
        common::write(
            &input.join(format!("ILSVRC_{i}.JPEG")),
            &common::jpeg(20, 20, i),
        );
    }
    let csv = dir.path().join("labels.csv");
    std::fs::write(&csv, "file,wnid,class_index\nILSVRC_0.JPEG,n02,10\nILSVRC_1.JPEG,n01,2\nILSVRC_2.JPEG,n02,10\nILSVRC_3.JPEG,n03,9\nILSVRC_4.JPEG,n01,2\nmissing.JPEG,n01,2\n").unwrap();
    let out = dir.path().join("val.uicr");
    let mut opts = ConvertOptions::default();
    opts.sources.labels_csv = Some(csv.clone());
    opts.sources.label_column = Some("class_index".into());
    let report = convert(&input, &out, &opts, &|_| {}).unwrap();
    assert_eq!(report.layout.name(), "flat-labels");
    assert_eq!(report.kept, 5);
    let reasons: Vec<_> = report
        .skipped
        .iter()
        .map(|e| (e.path.as_str(), e.reason.to_string().contains("labels CSV")))
        .collect();
    assert_eq!(
        reasons,
        vec![("ILSVRC_5.JPEG", true), ("missing.JPEG", true)]
    );
    let f = RecordFile::open(&out).unwrap();
    // Numeric labels sort numerically: 2 < 9 < 10.
    assert_eq!(f.class_names(), vec!["2", "9", "10"]);
    assert_eq!(f.labels().unwrap(), vec![2, 0, 2, 1, 0]);

    // A wrong column is a clear error naming the columns.
    opts.sources.label_column = Some("label".into());
    let err = convert(&input, &out, &opts, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--label-column") && err.contains("wnid"),
        "{err}"
    );

    // A file list keeps its order and has no labels.
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "ILSVRC_3.JPEG\nILSVRC_1.JPEG\n\nILSVRC_3.JPEG\n").unwrap();
    let opts = ConvertOptions {
        sources: uic_loader::convert::SourceOptions {
            file_list: Some(list),
            ..Default::default()
        },
        ..Default::default()
    };
    let report = convert(&input, &out, &opts, &|_| {}).unwrap();
    assert_eq!(report.kept, 2);
    assert_eq!(report.skipped.len(), 1, "duplicate line reported");
    let f = RecordFile::open(&out).unwrap();
    assert_eq!(f.source_path(0), b"ILSVRC_3.JPEG");
    assert!(!f.has_labels());
}

#[test]
fn a_labels_csv_inside_the_input_folder_is_not_an_image_nor_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("val");
    for i in 0..3 {
        common::write(
            &input.join(format!("ILSVRC_{i}.JPEG")),
            &common::jpeg(20, 20, i),
        );
    }
    // As ImageNet's validation folder often holds its labels file; named through `..` so
    // that only the resolved paths match.
    let csv = input.join("LOC_val_solution.csv");
    std::fs::write(
        &csv,
        "file,wnid\nILSVRC_0.JPEG,n01\nILSVRC_1.JPEG,n02\nILSVRC_2.JPEG,n01\n",
    )
    .unwrap();
    let mut opts = ConvertOptions::default();
    opts.sources.labels_csv = Some(input.join("../val/LOC_val_solution.csv"));
    opts.sources.label_column = Some("wnid".into());
    let report = convert(&input, &dir.path().join("val.uicr"), &opts, &|_| {}).unwrap();
    assert_eq!(report.kept, 3);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    // Another CSV in the folder is still reported: only the labels file is exempt.
    std::fs::write(input.join("notes.csv"), "x\n").unwrap();
    let report = convert(&input, &dir.path().join("val.uicr"), &opts, &|_| {}).unwrap();
    let skipped: Vec<&str> = report.skipped.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(skipped, ["notes.csv"]);
}

#[test]
fn a_folder_is_not_a_record_file_and_a_missing_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = RecordFile::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("is a folder, not a record file"), "{e}");
    let out = dir.path().join("missing/x.uicr");
    let e = RecordWriter::create(&out, WriterOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the folder") && e.contains("missing") && !e.contains("x.uicr.tmp"),
        "{e}"
    );
}

#[test]
fn a_cancelled_conversion_writes_nothing_and_keeps_the_old_output() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    common::image_folder(&input, 2, 40);
    let out = dir.path().join("out.uicr");
    std::fs::write(&out, b"the old output").unwrap();
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = ConvertOptions {
        threads: 1,
        cancel: Some(cancel.clone()),
        ..Default::default()
    };
    // Cancelled from the progress callback after the first chunk: the writer exists by then.
    let err = convert(&input, &out, &opts, &|p| {
        assert!(p.done < p.total, "the conversion went on after the cancel");
        cancel.store(true, Ordering::SeqCst);
    })
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("interrupted after "), "{err}");
    assert!(err.contains("of 80 files; nothing written"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"the old output");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left.len(), 2, "no temporary file or report left: {left:?}");
    // Not cancelled: the same options convert everything.
    cancel.store(false, Ordering::SeqCst);
    let report = convert(&input, &out, &opts, &|_| {}).unwrap();
    assert_eq!(report.kept, 80);
}
