//! The same input gives a byte-identical record file whatever the thread count.

use crate::common;

use uic_loader::convert::{convert, ConvertOptions};
use uic_loader::StorageMode;

#[test]
fn output_is_byte_identical_for_1_2_and_5_threads() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    // 4 x 40 = 160 images: more than the 64-image probe and several chunks at every count.
    common::image_folder(&input, 4, 40);
    common::write(&input.join("class1/odd.png"), &common::png(30, 20));
    common::write(&input.join("class2/broken.jpg"), b"\xff\xd8\xffnot really");
    for (mode, max_side) in [
        (StorageMode::Jpeg, None),
        (StorageMode::Jpeg, Some(24)),
        (StorageMode::Raw, Some(24)),
    ] {
        let mut files = Vec::new();
        for threads in [1, 2, 5] {
            let out = dir
                .path()
                .join(format!("{mode}-{max_side:?}-{threads}.uicr"));
            let opts = ConvertOptions {
                mode,
                max_side,
                threads,
                ..Default::default()
            };
            let report = convert(&input, &out, &opts, &|_| {}).unwrap();
            assert_eq!(
                report.kept,
                161,
                "{:?}",
                &report.skipped[..3.min(report.skipped.len())]
            );
            assert_eq!(report.skipped.len(), 1);
            assert_eq!(report.threads, threads);
            files.push(std::fs::read(&out).unwrap());
        }
        assert!(
            files.windows(2).all(|w| w[0] == w[1]),
            "{mode} {max_side:?}: output depends on thread count"
        );
    }
}
