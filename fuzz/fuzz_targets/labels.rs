//! Arbitrary bytes as a labels file (CSV, Kaggle `LOC_val_solution.csv`, `file label` text),
//! joined with a small tar of images through `convert::discover`. A clean error or labels
//! that index the class list.
#![no_main]

#[path = "../common/scratch.rs"]
mod scratch;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use uic_loader::convert::{discover, SourceOptions};

/// A tar of three members whose names the seed labels files mention.
fn archive() -> &'static std::path::Path {
    static TAR: OnceLock<std::path::PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let mut tar = Vec::new();
        for name in ["a.jpg", "b.JPEG", "dir/c.jpeg"] {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[100..108].copy_from_slice(b"0000644\0");
            h[124..136].copy_from_slice(b"00000000004\0");
            h[156] = b'0';
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|&b| b as u32).sum();
            h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            tar.extend_from_slice(&h);
            let mut data = [0u8; 512];
            data[..4].copy_from_slice(b"\xff\xd8\xff\xd9");
            tar.extend_from_slice(&data);
        }
        tar.extend_from_slice(&[0u8; 1024]);
        scratch::write("images.tar", &tar)
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the CSV label column; the rest is the labels file.
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let labels = scratch::write("labels.txt", text);
    let opts = SourceOptions {
        labels_csv: Some(labels),
        label_column: match pick % 3 {
            0 => None,
            1 => Some("wnid".into()),
            _ => Some("PredictionString".into()),
        },
        file_list: None,
    };
    let Ok(sources) = discover(archive(), &opts) else {
        return;
    };
    assert!(sources.labels_format.is_some());
    for item in &sources.items {
        let label = item.label.expect("a labels file labels every item");
        assert!((label as usize) < sources.classes.len());
        let _ = sources.name(item);
    }
});
