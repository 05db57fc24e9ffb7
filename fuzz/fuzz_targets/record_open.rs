//! Arbitrary bytes as a record file: open, inspect, read every record, verify. Either a
//! clean error or slices that lie inside the file; never a panic or a huge allocation.
#![no_main]

#[path = "../common/scratch.rs"]
mod scratch;

use libfuzzer_sys::fuzz_target;
use uic_loader::RecordFile;

fuzz_target!(|data: &[u8]| {
    let path = scratch::write("input.uicr", data);
    let Ok(file) = RecordFile::open(&path) else {
        return;
    };
    let h = file.header().clone();
    assert_eq!(h.file_len, data.len() as u64);
    let n = file.len();
    assert_eq!(n as u64, h.num_samples);
    assert_eq!(file.is_empty(), n == 0);
    let _ = file.mode();
    let names = file.class_names();
    assert_eq!(names.len(), file.num_classes());
    if let Some(labels) = file.labels() {
        assert_eq!(labels.len(), n);
        assert!(labels.iter().all(|&l| (l as usize) < file.num_classes()));
    }
    let extents = file.extents();
    assert_eq!(extents.len(), n);
    for i in 0..n {
        let s = file.get(i).expect("index below len");
        let (off, len) = extents[i];
        assert_eq!(s.data.len(), len as usize);
        assert!(off + len as u64 <= data.len() as u64);
        assert_eq!(s.data, &data[off as usize..off as usize + len as usize]);
        assert!(s.width > 0 && s.height > 0);
        let _ = file.source_path_lossy(i);
    }
    assert!(file.get(n).is_none());
    let bad = file.verify();
    assert!(bad.iter().all(|b| b.index < n));
});
