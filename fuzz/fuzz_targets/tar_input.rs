//! Arbitrary bytes as a tar through `convert::discover`: a plain tar, a tar of tars (the
//! ImageNet train layout) and WebDataset shards are told apart by content, so one target
//! reaches all three; the first byte adds a labels file (the tar-plus-labels layout). Every
//! listed item is read back with `Sources::read`. A clean error, or items whose bytes lie
//! inside the archive.
#![no_main]

#[path = "../common/scratch.rs"]
mod scratch;

use libfuzzer_sys::fuzz_target;
use uic_loader::convert::{discover, Origin, SourceOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, tar)) = data.split_first() else {
        return;
    };
    let path = scratch::write("input.tar", tar);
    let mut opts = SourceOptions::default();
    if pick & 1 == 1 {
        opts.labels_csv = Some(scratch::write(
            "labels.csv",
            b"file,label\na.jpg,x\nn01440764/a.JPEG,y\n000000.jpg,z\n",
        ));
    }
    let Ok(sources) = discover(&path, &opts) else {
        return;
    };
    for item in &sources.items {
        if let Some(label) = item.label {
            assert!((label as usize) < sources.classes.len());
        }
        let _ = sources.name(item);
        if let Origin::Member { offset, size, .. } = item.origin {
            assert!(offset
                .checked_add(size)
                .is_some_and(|e| e <= tar.len() as u64));
        }
        if let Ok(bytes) = sources.read(item, 1 << 20) {
            if let Origin::Member { offset, size, .. } = item.origin {
                assert_eq!(bytes.len() as u64, size);
                assert_eq!(bytes, &tar[offset as usize..(offset + size) as usize]);
            }
        }
    }
});
