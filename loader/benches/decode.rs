//! JPEG decode paths on one 500x375 photo-like JPEG (ImageNet's median size), with a plain
//! full libjpeg-turbo decode as the reference in the same group.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rand::SeedableRng;
use uic_loader::crop::{random_resized_crop, CropDecoder, RrcConfig};
use uic_loader::jpeg::{Decoder, EncodeOptions, Encoder, PixelFormat, Scale, Subsampling};
use uic_loader::planes::hwc_to_chw;
use uic_loader::StorageMode;

fn photo(w: u32, h: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((w * h * 3) as usize);
    let mut x: u32 = 1;
    for y in 0..h {
        for i in 0..w {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let n = (x % 24) as f32;
            let (fx, fy) = (i as f32 / w as f32, y as f32 / h as f32);
            v.push((120.0 + 100.0 * (fx * 13.0).sin() * (fy * 5.0).cos() + n) as u8);
            v.push((110.0 + 90.0 * (fy * 11.0 + fx * 3.0).sin() + n) as u8);
            v.push((90.0 + 80.0 * (fx * fy * 20.0).cos() + n) as u8);
        }
    }
    v
}

fn bench(c: &mut Criterion) {
    let (w, h) = (500u32, 375u32);
    let opts = EncodeOptions {
        quality: 90,
        subsampling: Subsampling::S444,
        progressive: false,
    };
    let jpeg = Encoder::new()
        .unwrap()
        .encode(&photo(w, h), w, h, PixelFormat::Rgb, &opts)
        .unwrap();
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
    let crops: Vec<_> = (0..64)
        .map(|_| random_resized_crop(w, h, &RrcConfig::default(), &mut rng))
        .collect();

    let mut g = c.benchmark_group("decode_500x375_q90_444");
    g.throughput(Throughput::Elements(1));
    let mut dec = Decoder::new().unwrap();
    let mut full = vec![0u8; (w * h * 3) as usize];
    g.bench_function("reference_full_decode", |b| {
        b.iter(|| {
            dec.decode_rgb(black_box(&jpeg), Scale::Full, &mut full)
                .unwrap()
        })
    });
    let mut crop_dec = CropDecoder::new().unwrap();
    let mut out = vec![0u8; 224 * 224 * 3];
    let mut k = 0;
    g.bench_function("fused_rrc_224", |b| {
        b.iter(|| {
            k = (k + 1) % crops.len();
            crop_dec
                .decode(
                    StorageMode::Jpeg,
                    black_box(&jpeg),
                    w,
                    h,
                    crops[k],
                    (224, 224),
                    &mut out,
                )
                .unwrap()
        })
    });
    g.bench_function("full_decode_then_rrc_224", |b| {
        b.iter(|| {
            k = (k + 1) % crops.len();
            dec.decode_rgb(black_box(&jpeg), Scale::Full, &mut full)
                .unwrap();
            crop_dec
                .decode(
                    StorageMode::Raw,
                    &full,
                    w,
                    h,
                    crops[k],
                    (224, 224),
                    &mut out,
                )
                .unwrap()
        })
    });
    g.finish();
}

/// The copy out of the decoder's packed RGB into the batch's planes (with and without the
/// deferred flip): the only per-sample pass the loader adds to the fused decode.
fn planes(c: &mut Criterion) {
    let (w, h) = (224usize, 224usize);
    let hwc: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
    let mut chw = vec![0u8; w * h * 3];
    let mut g = c.benchmark_group("hwc_to_chw_224");
    g.throughput(Throughput::Elements(1));
    for mirror in [false, true] {
        let name = if mirror { "mirrored" } else { "plain" };
        g.bench_function(name, |b| {
            b.iter(|| hwc_to_chw(black_box(&hwc), &mut chw, w, h, mirror))
        });
    }
    g.finish();
}

criterion_group!(benches, bench, planes);
criterion_main!(benches);
