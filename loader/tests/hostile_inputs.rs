//! Hostile and odd inputs end up converted, kept, or skipped and reported: never a panic,
//! a hang, or a silent loss.

use crate::common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use uic_loader::convert::{convert, report_path, ConvertOptions};
use uic_loader::jpeg::PixelFormat;
use uic_loader::RecordFile;

/// Builds the zoo; returns the input root.
fn zoo(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("zoo");
    let a = root.join("a");
    common::write(&a.join("ok.jpg"), &common::jpeg(32, 24, 1));
    common::write(&a.join("png_named.JPEG"), &common::png(12, 9));
    let cmyk: Vec<u8> = (0..16 * 16)
        .flat_map(|i| [i as u8, 255 - i as u8, 128, 200])
        .collect();
    common::write(
        &a.join("cmyk.jpg"),
        &common::encode(&cmyk, 16, 16, PixelFormat::Cmyk, false),
    );
    let gray: Vec<u8> = (0..20 * 10).map(|i| (i * 3) as u8).collect();
    common::write(
        &a.join("gray.jpg"),
        &common::encode(&gray, 20, 10, PixelFormat::Gray, false),
    );
    common::write(
        &a.join("progressive.jpg"),
        &common::encode(&common::pattern(40, 30, 2), 40, 30, PixelFormat::Rgb, true),
    );
    common::write(&a.join("one_by_one.jpg"), &common::jpeg(1, 1, 3));
    common::write(&a.join("wide.jpg"), &common::jpeg(10000, 10, 4));
    common::write(&a.join("empty.jpg"), b"");
    let full = common::jpeg(64, 64, 5);
    common::write(&a.join("truncated.jpg"), &full[..full.len() / 2]);
    let noise: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    common::write(&a.join("random.jpg"), &noise);
    common::write(&a.join("bomb.jpg"), &common::bomb(60000, 60000));
    common::write(&a.join("notes.txt"), b"hello");
    // A directory named like an image, holding a real image.
    common::write(&a.join("folder.JPEG/inner.jpg"), &common::jpeg(8, 8, 6));
    // A non-UTF-8 file name.
    common::write(
        &a.join(OsStr::from_bytes(b"caf\xff.jpg")),
        &common::jpeg(9, 9, 7),
    );
    // Symlink loops: inside a class, and at the top level.
    std::os::unix::fs::symlink("..", a.join("loop")).unwrap();
    std::os::unix::fs::symlink(".", root.join("toploop")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target.jpg", a.join("dangling.jpg")).unwrap();
    common::write(&root.join("b/fine.jpg"), &common::jpeg(16, 16, 8));
    common::write(&root.join("stray.jpg"), &common::jpeg(16, 16, 9));
    root
}

#[test]
fn every_hostile_input_is_converted_kept_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = zoo(dir.path());
    let out = dir.path().join("zoo.uicr");
    let report = convert(&root, &out, &ConvertOptions::default(), &|_| {}).unwrap();

    let reasons: Vec<String> = report
        .skipped
        .iter()
        .map(|e| e.reason.to_string())
        .collect();
    let skipped: HashMap<&str, &str> = report
        .skipped
        .iter()
        .zip(&reasons)
        .map(|(e, r)| (e.path.as_str(), r.as_str()))
        .collect();
    let converted: HashMap<&str, &str> = report
        .converted
        .iter()
        .map(|e| (e.path.as_str(), e.reason.as_str()))
        .collect();
    let expect_skip = |path: &str, why: &str| {
        let reason = skipped
            .get(path)
            .unwrap_or_else(|| panic!("{path} not reported as skipped: {skipped:#?}"));
        assert!(
            reason.contains(why),
            "{path}: reason {reason:?} lacks {why:?}"
        );
    };
    expect_skip("a/empty.jpg", "empty file");
    expect_skip("a/truncated.jpg", "not a decodable JPEG");
    expect_skip("a/random.jpg", "not an image");
    expect_skip("a/bomb.jpg", "over the limit");
    expect_skip("a/notes.txt", "not an image file extension");
    expect_skip("a/loop", "symlink to a folder");
    expect_skip("a/dangling.jpg", "broken symlink");
    expect_skip("toploop", "loop");
    expect_skip("stray.jpg", "top level");
    assert_eq!(skipped.len(), 9, "unexpected skips: {skipped:#?}");

    assert!(converted["a/png_named.JPEG"].contains("PNG stored as JPEG"));
    assert!(converted["a/cmyk.jpg"].contains("CMYK") || converted["a/cmyk.jpg"].contains("YCCK"));
    assert_eq!(converted.len(), 2, "{converted:#?}");

    let f = RecordFile::open(&out).unwrap();
    assert_eq!(report.kept, f.len());
    let kept: HashMap<Vec<u8>, usize> = (0..f.len())
        .map(|i| (f.source_path(i).to_vec(), i))
        .collect();
    for name in [
        "a/ok.jpg",
        "a/gray.jpg",
        "a/progressive.jpg",
        "a/one_by_one.jpg",
        "a/wide.jpg",
        "a/folder.JPEG/inner.jpg",
        "b/fine.jpg",
        "a/png_named.JPEG",
        "a/cmyk.jpg",
    ] {
        assert!(
            kept.contains_key(name.as_bytes()),
            "{name} missing from the record file"
        );
    }
    assert!(
        kept.contains_key(b"a/caf\xff.jpg".as_slice()),
        "non-UTF-8 name lost"
    );
    assert_eq!(f.len(), 10);
    assert_eq!(f.class_names(), vec!["a", "b"]);
    let wide = f.sample(kept[b"a/wide.jpg".as_slice()]);
    assert_eq!(
        (wide.width, wide.height, wide.converted),
        (10000, 10, false)
    );
    let png = f.sample(kept[b"a/png_named.JPEG".as_slice()]);
    assert_eq!((png.width, png.height, png.converted), (12, 9, true));
    assert!(
        png.data.starts_with(&[0xff, 0xd8, 0xff]),
        "PNG not re-encoded as JPEG"
    );

    // The report on disk carries the contract's keys.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report_path(&out)).unwrap()).unwrap();
    assert_eq!(json["kept"], 10);
    assert_eq!(json["skipped"].as_array().unwrap().len(), 9);
    assert!(json["converted"][0]["path"].is_string() && json["converted"][0]["reason"].is_string());
}

#[test]
fn strict_mode_fails_and_writes_no_record_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = zoo(dir.path());
    let out = dir.path().join("strict.uicr");
    let opts = ConvertOptions {
        strict: true,
        ..Default::default()
    };
    let err = convert(&root, &out, &opts, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("strict: ") && err.contains("9 files skipped"),
        "{err}"
    );
    assert!(!out.exists());
    assert!(
        report_path(&out).exists(),
        "the report is written even when the conversion fails"
    );
}

#[test]
fn nothing_usable_is_an_error_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("junk");
    common::write(&root.join("x.jpg"), b"junk");
    common::write(&root.join("y.png"), b"");
    let out = dir.path().join("junk.uicr");
    let err = convert(&root, &out, &ConvertOptions::default(), &|_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("no usable image"), "{err}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "only the input and the report remain"
    );
}

#[test]
fn pixel_limit_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("in");
    common::write(&root.join("small.jpg"), &common::jpeg(10, 10, 1));
    common::write(&root.join("large.jpg"), &common::jpeg(100, 100, 2));
    common::write(&root.join("large.png"), &common::png(100, 100));
    let out = dir.path().join("o.uicr");
    let opts = ConvertOptions {
        max_pixels: 5000,
        ..Default::default()
    };
    let report = convert(&root, &out, &opts, &|_| {}).unwrap();
    assert_eq!(report.kept, 1);
    assert!(
        report
            .skipped
            .iter()
            .all(|e| e.reason.to_string().contains("over the limit of 5000")),
        "{:?}",
        report.skipped
    );
}
