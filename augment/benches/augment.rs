//! Per-op cost of the augmentation kernels on one 224x224 RGB image.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use uic_augment::jitter::{adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation};
use uic_augment::{gaussian_blur, grayscale, hflip, normalize, sobel, NormalizeConfig};

fn bench(c: &mut Criterion) {
    let (w, h) = (224usize, 224usize);
    let img: Vec<u8> = (0..w * h * 3).map(|i| (i * 31 % 251) as u8).collect();
    let mut g = c.benchmark_group("augment_224");
    g.throughput(Throughput::Elements(1));
    let mut buf = img.clone();
    g.bench_function("hflip", |b| b.iter(|| hflip(black_box(&mut buf), w, h, 3)));
    g.bench_function("grayscale", |b| {
        b.iter(|| {
            buf.copy_from_slice(&img);
            grayscale(black_box(&mut buf))
        })
    });
    g.bench_function("brightness", |b| {
        b.iter(|| {
            buf.copy_from_slice(&img);
            adjust_brightness(black_box(&mut buf), 1.2)
        })
    });
    g.bench_function("contrast", |b| {
        b.iter(|| {
            buf.copy_from_slice(&img);
            adjust_contrast(black_box(&mut buf), 1.2)
        })
    });
    g.bench_function("saturation", |b| {
        b.iter(|| {
            buf.copy_from_slice(&img);
            adjust_saturation(black_box(&mut buf), 1.2)
        })
    });
    g.bench_function("hue", |b| {
        b.iter(|| {
            buf.copy_from_slice(&img);
            adjust_hue(black_box(&mut buf), 0.05)
        })
    });
    let mut scratch = Vec::new();
    g.bench_function("blur_k23", |b| {
        b.iter(|| {
            buf.copy_from_slice(&img);
            gaussian_blur(black_box(&mut buf), w, h, 23, 1.0, &mut scratch)
        })
    });
    let mut f = vec![0f32; w * h * 3];
    g.bench_function("normalize", |b| {
        b.iter(|| normalize(black_box(&img), &mut f, &NormalizeConfig::default()))
    });
    let mut s = vec![0f32; w * h * 2];
    g.bench_function("sobel", |b| b.iter(|| sobel(black_box(&f), &mut s, w, h)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
