//! The per-epoch label work at ImageNet scale (N = 1.28 M images, K = 10,000 pseudo-classes,
//! 1,000 true classes): NMI, the empty-class split, and the class-balanced sampler. Each
//! must stay well under a second (issue 16); docs/benchmarks.md, "Scale", has the figures.
//!
//! `cargo bench -p uic-trainer --bench labels`

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use uic_loader::order::{ClassBalanced, Order};
use uic_trainer::labels::fix_empty_classes;
use uic_trainer::nmi::{nmi, nmi_both, Normalization};

const N: usize = 1_281_167;
const K: usize = 10_000;
const TRUE_CLASSES: u32 = 1000;

fn bench(c: &mut Criterion) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    // Pseudo-labels of a trained epoch: every class used, sizes uneven.
    let labels: Vec<u32> = (0..N)
        .map(|_| {
            let a = rng.gen_range(0..K as u32);
            let b = rng.gen_range(0..K as u32);
            a.min(b)
        })
        .collect();
    let prev: Vec<u32> = labels
        .iter()
        .map(|&l| {
            if rng.gen_range(0..4) == 0 {
                rng.gen_range(0..K as u32)
            } else {
                l
            }
        })
        .collect();
    let truth: Vec<u32> = (0..N as u32).map(|i| i % TRUE_CLASSES).collect();
    // A collapsed epoch: everything in 100 classes, 9,900 empty ones to refill.
    let collapsed: Vec<u32> = (0..N).map(|_| rng.gen_range(0..100)).collect();

    let mut g = c.benchmark_group("labels_1.28M_k10000");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("nmi_both_vs_truth", |b| {
        b.iter(|| black_box(nmi_both(&labels, &truth)))
    });
    g.bench_function("nmi_prev", |b| {
        b.iter(|| black_box(nmi(&prev, &labels, Normalization::Arithmetic)))
    });
    g.bench_function("empty_split_none_empty", |b| {
        b.iter_batched_ref(
            || labels.clone(),
            |l| {
                black_box(fix_empty_classes(
                    l,
                    K,
                    &mut Xoshiro256PlusPlus::seed_from_u64(1),
                ))
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("empty_split_9900_empty", |b| {
        b.iter_batched_ref(
            || collapsed.clone(),
            |l| {
                black_box(fix_empty_classes(
                    l,
                    K,
                    &mut Xoshiro256PlusPlus::seed_from_u64(1),
                ))
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("balanced_sampler_epoch", |b| {
        b.iter(|| {
            let s = ClassBalanced::new(&labels, K, 3);
            black_box(s.indices(7).len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
