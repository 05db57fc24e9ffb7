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

/// The blur at the ends and middle of the strong preset's sigma range, against the plain
/// full-kernel reference it replaced (`src/blur/reference.rs`), on a smooth test picture.
fn blur_sigmas(c: &mut Criterion) {
    let (w, h) = (224usize, 224usize);
    let img: Vec<u8> = (0..w * h * 3)
        .map(|i| ((i / 3 % w + i / 3 / w) / 2 + i % 3 * 40) as u8)
        .collect();
    let mut buf = img.clone();
    let mut scratch = Vec::new();
    let mut g = c.benchmark_group("blur_224_k23");
    g.throughput(Throughput::Elements(1));
    for sigma in [0.1f32, 1.0, 2.0] {
        g.bench_function(format!("sigma_{sigma:.1}"), |b| {
            b.iter(|| {
                buf.copy_from_slice(&img);
                gaussian_blur(black_box(&mut buf), w, h, 23, sigma, &mut scratch)
            })
        });
        g.bench_function(format!("reference_sigma_{sigma:.1}"), |b| {
            b.iter(|| {
                buf.copy_from_slice(&img);
                blur_reference::gaussian_blur(black_box(&mut buf), w, h, 23, sigma)
            })
        });
    }
    g.finish();
}

/// The blur across the strong preset's sigma range at 224 px (k 23), and `mean_of_20`: one
/// blur at each of 20 sigmas spread evenly over [0.1, 2.0] per iteration (divide by 20 for
/// the average cost of a blurred image).
fn blur_sweep(c: &mut Criterion) {
    let (w, h) = (224usize, 224usize);
    let img: Vec<u8> = (0..w * h * 3)
        .map(|i| ((i / 3 % w + i / 3 / w) / 2 + i % 3 * 40) as u8)
        .collect();
    let mut buf = img.clone();
    let mut scratch = Vec::new();
    let mut g = c.benchmark_group("blur_sweep_224");
    for sigma in [0.1f32, 0.5, 1.0, 1.5, 2.0] {
        g.bench_function(format!("sigma_{sigma:.1}"), |b| {
            b.iter(|| {
                buf.copy_from_slice(&img);
                gaussian_blur(black_box(&mut buf), w, h, 23, sigma, &mut scratch)
            })
        });
    }
    g.bench_function("mean_of_20", |b| {
        b.iter(|| {
            for i in 0..20 {
                let sigma = 0.1 + 1.9 * (i as f32 + 0.5) / 20.0;
                buf.copy_from_slice(&img);
                gaussian_blur(black_box(&mut buf), w, h, 23, sigma, &mut scratch)
            }
        })
    });
    g.finish();
}

#[path = "../src/blur/reference.rs"]
#[allow(dead_code)]
mod blur_reference;

criterion_group!(
    benches,
    bench,
    blur_sigmas,
    blur_sweep,
    colour_ops,
    presets,
    colour_presets
);
criterion_main!(benches);

/// The colour kernels against the scalar code they replaced (`src/jitter/reference.rs`), and
/// the whole strong-preset jitter (all four steps, fused) for one fixed draw of order and
/// factors.
fn colour_ops(c: &mut Criterion) {
    use rand::SeedableRng;
    use uic_augment::JitterConfig;
    type Op = fn(&mut [u8], f64);
    let (w, h) = (224usize, 224usize);
    let img: Vec<u8> = (0..w * h * 3).map(|i| (i * 31 % 251) as u8).collect();
    let mut buf = img.clone();
    let mut g = c.benchmark_group("colour_224");
    g.throughput(Throughput::Elements(1));
    let ops: [(&str, Op, Op, f64); 5] = [
        (
            "brightness",
            adjust_brightness,
            colour_reference::adjust_brightness,
            1.2,
        ),
        (
            "contrast",
            adjust_contrast,
            colour_reference::adjust_contrast,
            1.2,
        ),
        (
            "saturation",
            adjust_saturation,
            colour_reference::adjust_saturation,
            1.2,
        ),
        ("hue", adjust_hue, colour_reference::adjust_hue, 0.05),
        (
            "grayscale",
            |b, _| grayscale(b),
            |b, _| colour_reference::grayscale(b),
            0.0,
        ),
    ];
    for (name, new, old, factor) in ops {
        g.bench_function(name, |b| {
            b.iter(|| {
                buf.copy_from_slice(&img);
                new(black_box(&mut buf), factor)
            })
        });
        g.bench_function(format!("reference_{name}"), |b| {
            b.iter(|| {
                buf.copy_from_slice(&img);
                old(black_box(&mut buf), factor)
            })
        });
    }
    let jitter = JitterConfig {
        p: 1.0,
        ..Default::default()
    };
    g.bench_function("jitter_all_four", |b| {
        b.iter(|| {
            buf.copy_from_slice(&img);
            let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
            jitter.apply(black_box(&mut buf), &mut rng)
        })
    });
    g.finish();
}

#[path = "../src/jitter/reference.rs"]
#[allow(dead_code)]
mod colour_reference;

/// A whole preset per sample, as the loader runs it (`apply_deferring_flip`), averaged over
/// 64 samples' draws: what `--preset strong` adds to each image on top of the decode.
fn presets(c: &mut Criterion) {
    use uic_augment::{sample_rng, Augment, Preset};
    let (w, h) = (224usize, 224usize);
    // Smooth colour ramps with noise: blur and hue see a natural mix of values.
    let img: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            let n = (i.wrapping_mul(2_654_435_761) >> 13) % 24;
            [(x + n) as u8, (y + n) as u8, ((x + y) / 2 + n) as u8]
        })
        .collect();
    let mut g = c.benchmark_group("preset_224");
    g.throughput(Throughput::Elements(64));
    let mut buf = img.clone();
    let mut scratch = Vec::new();
    for (name, p) in [("paper", Preset::Paper), ("strong", Preset::Strong)] {
        let aug = Augment::preset(p);
        g.bench_function(name, |b| {
            b.iter(|| {
                for i in 0..64 {
                    buf.copy_from_slice(&img);
                    let mut rng = sample_rng(1, 2, i);
                    black_box(aug.apply_deferring_flip(&mut buf, w, h, &mut rng, &mut scratch));
                }
            })
        });
    }
    g.finish();
}

/// The strong preset's colour part (flip, jitter, grayscale; no blur) per sample over 64
/// samples' draws, as `Augment` runs it (grayscale in the jitter's last pass) and with the
/// jitter and the grayscale one after the other.
fn colour_presets(c: &mut Criterion) {
    use uic_augment::{sample_rng, Augment, Preset};
    let (w, h) = (224usize, 224usize);
    let img: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            let n = (i.wrapping_mul(2_654_435_761) >> 13) % 24;
            [(x + n) as u8, (y + n) as u8, ((x + y) / 2 + n) as u8]
        })
        .collect();
    let mut g = c.benchmark_group("preset_224_colour");
    g.throughput(Throughput::Elements(64));
    let mut buf = img.clone();
    let mut scratch = Vec::new();
    let aug = Augment {
        blur: None,
        ..Augment::preset(Preset::Strong)
    };
    g.bench_function("strong", |b| {
        b.iter(|| {
            for i in 0..64 {
                buf.copy_from_slice(&img);
                let mut rng = sample_rng(1, 2, i);
                black_box(aug.apply_deferring_flip(&mut buf, w, h, &mut rng, &mut scratch));
            }
        })
    });
    let (jitter, gray) = (aug.jitter.unwrap(), aug.grayscale.unwrap());
    g.bench_function("strong_unfused", |b| {
        b.iter(|| {
            for i in 0..64 {
                buf.copy_from_slice(&img);
                let mut rng = sample_rng(1, 2, i);
                let mirror = aug.flip.is_some_and(|f| f.draw(&mut rng));
                jitter.apply(black_box(&mut buf), &mut rng);
                gray.apply(&mut buf, &mut rng);
                black_box(mirror);
            }
        })
    });
    g.finish();
}
