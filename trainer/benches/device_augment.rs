//! The strong preset's steps after the flip on a batch of 32 images at 224 px: the loader's
//! CPU kernels (`Augment::apply_drawn`, image by image) against the same draws as batched
//! libtorch ops on the CPU (`DeviceAugment`, what `--augment-on device` runs), both on one
//! thread. It backs `--augment-on auto` choosing the kernels on the CPU; on a GPU,
//! `uic gpu-check` times the device ops. docs/benchmarks.md, "The strong preset on the
//! device", has the figures.
//!
//! `cargo bench -p uic-trainer --bench device_augment`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use uic_augment::{sample_rng, Augment, Drawn, Preset};
use uic_trainer::tch::{self, Kind, Tensor};
use uic_trainer::DeviceAugment;

const N: usize = 32;
const SIDE: usize = 224;

fn bench(c: &mut Criterion) {
    tch::set_num_threads(1);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    // Smooth images with noise: blur and hue see realistic values.
    let images: Vec<Vec<u8>> = (0..N)
        .map(|_| {
            let (a, b) = (rng.gen_range(0..200u32), rng.gen_range(0..200u32));
            (0..SIDE * SIDE * 3)
                .map(|i| {
                    let (p, ch) = (i / 3, i % 3);
                    let v =
                        (p % SIDE) as u32 * (ch as u32 + 1) / 3 + a + (p / SIDE) as u32 * b / 400;
                    (v + rng.gen_range(0..24)) as u8
                })
                .collect()
        })
        .collect();
    let aug = Augment::preset(Preset::Strong);
    let drawn: Vec<Drawn> = (0..N as u64)
        .map(|i| aug.draw(&mut sample_rng(1, 0, i)))
        .collect();
    let nchw: Vec<u8> = images
        .iter()
        .flat_map(|im| (0..3).flat_map(move |ch| im.iter().skip(ch).step_by(3).copied()))
        .collect();
    let side = SIDE as i64;
    let batch = Tensor::from_slice(&nchw).view([N as i64, 3, side, side]);
    let ops = DeviceAugment::new(aug).expect("strong has steps");

    let mut g = c.benchmark_group("strong_steps_32x224");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.bench_function("cpu_kernels", |b| {
        let mut scratch = Vec::new();
        b.iter_batched(
            || images.clone(),
            |mut imgs| {
                for (im, d) in imgs.iter_mut().zip(&drawn) {
                    aug.apply_drawn(d, im, SIDE, SIDE, &mut scratch);
                }
                imgs
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("libtorch_cpu", |b| {
        b.iter(|| {
            let out = ops.apply(&batch, &drawn).expect("apply");
            assert_eq!(out.kind(), Kind::Uint8);
            out
        })
    });
    // The same draws split: colour steps only, blur only.
    let colour = DeviceAugment::new(Augment { blur: None, ..aug }).expect("has steps");
    let blur_only: Vec<Drawn> = drawn
        .iter()
        .map(|d| Drawn {
            jitter: None,
            gray: false,
            ..*d
        })
        .collect();
    g.bench_function("libtorch_cpu_colour_only", |b| {
        b.iter(|| colour.apply(&batch, &drawn).expect("apply"))
    });
    g.bench_function("libtorch_cpu_blur_only", |b| {
        b.iter(|| ops.apply(&batch, &blur_only).expect("apply"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
