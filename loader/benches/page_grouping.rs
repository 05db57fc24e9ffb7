//! Does FFCV-style page grouping pay off for quasi-random order? Cold-cache reads of the same
//! records laid out packed (ours) and grouped into 8 MiB pages that no record straddles.
//!
//! `cargo bench --bench page_grouping -- FILE.uicr` (needs root to drop the page cache; without
//! it the numbers are warm-cache and say so). Without a file it prints usage and exits, so
//! `cargo test --all-targets` passes through it.

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use uic_loader::{NewSample, RecordFile, RecordWriter, WriterOptions};

const GROUP: u64 = 8 << 20;
const WINDOW_BLOCKS: usize = 2;

fn copy(src: &RecordFile, dst: &std::path::Path, group: Option<u64>) -> u64 {
    let classes = (0..src.num_classes())
        .map(|c| src.class_name(c).as_bytes().to_vec())
        .collect();
    let opts = WriterOptions {
        mode: src.mode(),
        align: src.header().align,
        classes,
        group,
    };
    let mut w = RecordWriter::create(dst, opts).unwrap();
    for i in 0..src.len() {
        let s = src.sample(i);
        let ns = NewSample {
            data: s.data,
            width: s.width,
            height: s.height,
            label: s.label,
            source: src.source_path(i),
            converted: s.converted,
        };
        w.append(&ns).unwrap();
    }
    w.finish().unwrap().file_len
}

/// FFCV's quasi-random order: shuffle blocks of consecutive records (a record belongs to the
/// block its first byte lies in), then shuffle samples within a window of blocks.
fn quasi_random(f: &RecordFile, seed: u64) -> Vec<usize> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut blocks: Vec<Vec<usize>> = Vec::new();
    for (i, (offset, _)) in f.extents().into_iter().enumerate() {
        let b = (offset / GROUP) as usize;
        if blocks.len() <= b {
            blocks.resize(b + 1, Vec::new());
        }
        blocks[b].push(i);
    }
    blocks.retain(|b| !b.is_empty());
    blocks.shuffle(&mut rng);
    let mut order = Vec::with_capacity(f.len());
    for window in blocks.chunks(WINDOW_BLOCKS) {
        let mut w: Vec<usize> = window.concat();
        w.shuffle(&mut rng);
        order.extend(w);
    }
    order
}

fn read_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("read_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn drop_caches() -> bool {
    unsafe_sync();
    std::fs::write("/proc/sys/vm/drop_caches", "1").is_ok()
}

fn unsafe_sync() {
    let _ = std::process::Command::new("sync").status();
}

/// Seconds and bytes read from storage to touch every record once in `order`.
fn pass(path: &std::path::Path, order: &[usize]) -> (f64, u64, bool) {
    let cold = drop_caches();
    let before = read_bytes();
    let t = Instant::now();
    let f = RecordFile::open(path).unwrap();
    let mut acc = 0u32;
    for &i in order {
        acc ^= crc32c::crc32c(f.sample(i).data);
    }
    std::hint::black_box(acc);
    (t.elapsed().as_secs_f64(), read_bytes() - before, cold)
}

fn main() {
    let Some(file) = std::env::args().skip(1).find(|a| !a.starts_with("--")) else {
        eprintln!("usage: cargo bench --bench page_grouping -- FILE.uicr");
        return;
    };
    let src = RecordFile::open(&file).unwrap();
    let dir = tempfile::tempdir_in(std::path::Path::new(&file).parent().unwrap()).unwrap();
    let packed = dir.path().join("packed.uicr");
    let grouped = dir.path().join("grouped.uicr");
    let packed_len = copy(&src, &packed, None);
    let grouped_len = copy(&src, &grouped, Some(GROUP));
    let straddling = src
        .extents()
        .iter()
        .filter(|(o, l)| o / GROUP != (o + *l as u64 - 1) / GROUP)
        .count();
    println!("records {}, packed {packed_len} B, grouped {grouped_len} B (+{:.2}%), packed records straddling an 8 MiB boundary: {straddling}",
        src.len(), 100.0 * (grouped_len as f64 / packed_len as f64 - 1.0));
    println!(
        "{:<8} {:<12} {:>10} {:>12} {:>8}",
        "layout", "order", "seconds", "MB read", "cache"
    );
    for (name, path) in [("packed", &packed), ("grouped", &grouped)] {
        let f = RecordFile::open(path).unwrap();
        let orders: [(&str, Vec<usize>); 3] = [
            ("sequential", (0..f.len()).collect()),
            ("quasi-random", quasi_random(&f, 7)),
            ("random", {
                let mut o: Vec<usize> = (0..f.len()).collect();
                o.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(7));
                o
            }),
        ];
        drop(f);
        for (order_name, order) in &orders {
            let mut runs: Vec<(f64, u64, bool)> = (0..3).map(|_| pass(path, order)).collect();
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (secs, bytes, cold) = runs[1];
            println!(
                "{name:<8} {order_name:<12} {secs:>10.3} {:>12.1} {:>8}",
                bytes as f64 / 1e6,
                if cold { "cold" } else { "warm" }
            );
        }
    }
}
