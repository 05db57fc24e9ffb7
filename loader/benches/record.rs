//! Record-file access: open (full validation), random sample access, and checksum verify.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use uic_loader::{NewSample, RecordFile, RecordWriter, WriterOptions};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.uicr");
    let n = 10_000usize;
    let data: Vec<u8> = (0..110_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let mut w = RecordWriter::create(
        &path,
        WriterOptions {
            classes: vec![b"a".to_vec(), b"b".to_vec()],
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..n {
        let len = 20_000 + (i * 7919) % 90_000;
        let source = format!("class/{i}.JPEG");
        w.append(&NewSample {
            data: &data[..len],
            width: 500,
            height: 375,
            label: Some((i % 2) as u32),
            source: source.as_bytes(),
            converted: false,
        })
        .unwrap();
    }
    w.finish().unwrap();

    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("open_and_validate_10k", |b| {
        b.iter(|| black_box(RecordFile::open(&path).unwrap().len()))
    });
    let f = RecordFile::open(&path).unwrap();
    g.bench_function("random_access_10k", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            for k in 0..n {
                acc ^= f.sample((k * 7_654_321) % n).data.len();
            }
            black_box(acc)
        })
    });
    g.sample_size(10);
    g.throughput(Throughput::Bytes(
        f.extents().iter().map(|e| e.1 as u64).sum(),
    ));
    g.bench_function("verify_all_checksums", |b| {
        b.iter(|| black_box(f.verify().len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
