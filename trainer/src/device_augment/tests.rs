//! The device ops, run through libtorch on the CPU, against torchvision's outputs (the
//! augment crate's golden fixtures, same tolerances) and against the CPU kernels on whole
//! batches of drawn steps.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::Value;
use tch::{Device, Kind, Tensor};
use uic_augment::{sample_rng, Augment, BlurConfig, GrayscaleConfig, JitterConfig, Preset};

use super::*;

/// Packed RGB `w x h` bytes as a `1 x 3 x h x w` f32 tensor.
fn chw(hwc: &[u8], w: usize, h: usize) -> Tensor {
    Tensor::from_slice(hwc)
        .view([h as i64, w as i64, 3])
        .permute([2, 0, 1])
        .unsqueeze(0)
        .to_kind(Kind::Float)
}

/// A `1 x 3 x h x w` (or `3 x h x w`) tensor of levels back to packed RGB bytes.
fn hwc(t: &Tensor) -> Vec<u8> {
    let t = t.reshape([3, t.size()[t.dim() - 2], t.size()[t.dim() - 1]]);
    let t = t.permute([1, 2, 0]).contiguous().to_kind(Kind::Uint8);
    Vec::<u8>::try_from(t.reshape([-1])).unwrap()
}

/// (largest difference, share of bytes that differ).
fn compare(got: &[u8], want: &[u8]) -> (u8, f64) {
    assert_eq!(got.len(), want.len());
    let max = got.iter().zip(want).map(|(a, b)| a.abs_diff(*b)).max();
    let differ = got.iter().zip(want).filter(|(a, b)| a != b).count();
    (max.unwrap_or(0), differ as f64 / got.len().max(1) as f64)
}

fn one(v: f32) -> Tensor {
    Tensor::from_slice(&[v]).view([1, 1, 1, 1])
}

#[test]
fn each_op_matches_torchvision_within_the_golden_tolerances() {
    let text = include_str!("../../../augment/tests/fixtures/golden.json");
    let golden: Value = serde_json::from_str(text).unwrap();
    let bytes = |v: &Value| -> Vec<u8> {
        let a = v.as_array().unwrap();
        a.iter().map(|x| x.as_u64().unwrap() as u8).collect()
    };
    let mut seen = std::collections::BTreeSet::new();
    for case in golden["cases"].as_array().unwrap() {
        let op = case["op"].as_str().unwrap();
        let (w, h) = (
            case["w"].as_u64().unwrap() as usize,
            case["h"].as_u64().unwrap() as usize,
        );
        let x = chw(&bytes(&case["input"]), w, h);
        let f = case["factor"].as_f64().unwrap_or(0.0);
        let div = colour::Divisors::new(h as i64, w as i64, Device::Cpu).unwrap();
        let (ratio, one_minus) = (one(f as f32), one((1.0 - f) as f32));
        let out = match op {
            "brightness" => colour::brightness(&x, &ratio, &one_minus),
            "contrast" => colour::contrast(&x, &ratio, &one_minus, &div),
            "saturation" => colour::saturation(&x, &ratio, &one_minus),
            "hue" => colour::hue(&x, &one(uic_augment::jitter::hue_shift(f as f32))),
            "grayscale" => colour::grayscale(&x),
            "blur" => {
                let k = case["kernel"].as_u64().unwrap() as usize;
                let sigma = case["sigma"].as_f64().unwrap() as f32;
                let taps = uic_augment::blur::gaussian_kernel(k, sigma);
                blur::gaussian_blur(&x, &Tensor::from_slice(&taps).view([1, k as i64]))
            }
            _ => continue,
        }
        .unwrap();
        let (max, share) = compare(&hwc(&out), &bytes(&case["output"]));
        // The tolerances of augment/tests/golden.rs.
        let (max_ok, share_ok) = match op {
            "hue" => (1, 1.0),
            "blur" => (1, 0.02),
            _ => (0, 0.0),
        };
        assert!(
            max <= max_ok && share <= share_ok,
            "{op} image {} factor {f} {w}x{h}: max diff {max}, {:.2}% differ",
            case["image"],
            share * 100.0
        );
        seen.insert(op);
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
}

/// A random image whose pixels include greys and saturated colours (the hue's edge cases).
fn image(rng: &mut Xoshiro256PlusPlus, w: usize, h: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..w * h * 3).map(|_| rng.gen()).collect();
    for px in v.chunks_exact_mut(3) {
        match rng.gen_range(0..5) {
            0 => px.fill(px[0]),
            1 => px[rng.gen_range(0..3)] = 255,
            2 => px[rng.gen_range(0..3)] = 0,
            _ => {}
        }
    }
    v
}

/// `n` random `w x h` images, their draws under `aug` (seed, epoch 3, index), the batch
/// the device ops make of them, and the CPU kernels' images.
fn both(
    aug: Augment,
    n: usize,
    w: usize,
    h: usize,
    seed: u64,
) -> (Vec<Drawn>, Vec<u8>, Vec<Vec<u8>>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let images: Vec<Vec<u8>> = (0..n).map(|_| image(&mut rng, w, h)).collect();
    let drawn: Vec<Drawn> = (0..n as u64)
        .map(|i| aug.draw(&mut sample_rng(seed, 3, i)))
        .collect();
    let batch = Tensor::cat(
        &images.iter().map(|im| chw(im, w, h)).collect::<Vec<_>>(),
        0,
    )
    .to_kind(Kind::Uint8);
    let out = DeviceAugment::new(aug)
        .unwrap()
        .apply(&batch, &drawn)
        .unwrap();
    assert_eq!(out.kind(), Kind::Uint8);
    assert_eq!(out.size(), [n as i64, 3, h as i64, w as i64]);
    assert_eq!(out.device(), Device::Cpu);
    let dev: Vec<u8> = (0..n).flat_map(|i| hwc(&out.get(i as i64))).collect();
    let cpu = images
        .into_iter()
        .zip(&drawn)
        .map(|(mut im, d)| {
            aug.apply_drawn(d, &mut im, w, h, &mut Vec::new());
            im
        })
        .collect();
    (drawn, dev, cpu)
}

#[test]
fn batches_match_the_cpu_kernels_exactly_without_blur() {
    // Every jitter happens (p = 1) with wide factors, so all 24 orders and every step at
    // every place occur; the grayscale half the time.
    let aug = Augment {
        jitter: Some(JitterConfig {
            brightness: 0.8,
            contrast: 0.8,
            saturation: 0.8,
            hue: 0.5,
            p: 1.0,
        }),
        grayscale: Some(GrayscaleConfig { p: 0.5 }),
        blur: None,
        ..Augment::preset(Preset::Strong)
    };
    let (n, w, h) = (96, 13, 9);
    let (drawn, dev, cpu) = both(aug, n, w, h, 5);
    let orders: std::collections::HashSet<Vec<std::mem::Discriminant<ColourStep>>> = drawn
        .iter()
        .map(|d| {
            d.jitter
                .unwrap()
                .steps()
                .map(|s| std::mem::discriminant(&s))
                .collect()
        })
        .collect();
    assert!(orders.len() >= 20, "{} orders", orders.len());
    assert!(drawn.iter().any(|d| d.gray) && drawn.iter().any(|d| !d.gray));
    let per = w * h * 3;
    for i in 0..n {
        assert_eq!(
            &dev[i * per..(i + 1) * per],
            &cpu[i][..],
            "row {i}: {:?}",
            drawn[i]
        );
    }
}

#[test]
fn the_strong_preset_matches_the_cpu_kernels_up_to_the_blurs_rounding() {
    let aug = Augment::preset(Preset::Strong);
    // 64 x 48: the blur kernel is 5 taps (10% of the side, made odd).
    let (n, w, h) = (64, 64, 48);
    let (drawn, dev, cpu) = both(aug, n, w, h, 9);
    assert!(drawn.iter().filter(|d| d.blur.is_some()).count() > n / 4);
    assert!(drawn.iter().any(|d| d.jitter.is_none()));
    let per = w * h * 3;
    let mut blurred_differ = 0;
    for i in 0..n {
        let (max, share) = compare(&dev[i * per..(i + 1) * per], &cpu[i]);
        if drawn[i].blur.is_none() {
            assert_eq!(max, 0, "row {i} (no blur) differs: {:?}", drawn[i]);
        } else {
            // The golden tolerance of the blur: one level on at most 2% of the values.
            assert!(max <= 1 && share <= 0.02, "row {i}: {max}, {share}");
            blurred_differ += usize::from(max > 0);
        }
    }
    eprintln!("blurred rows that differ by a level somewhere: {blurred_differ}");
}

#[test]
fn wide_kernels_and_odd_shapes_stay_within_the_blur_tolerance() {
    // 224 x 160: 17 taps, the whole sigma range; a row of 1 x 1 images (no blur possible).
    let aug = Augment {
        blur: Some(BlurConfig {
            p: 1.0,
            ..BlurConfig::default()
        }),
        ..Augment::preset(Preset::Strong)
    };
    let (n, w, h) = (6, 224, 160);
    let (drawn, dev, cpu) = both(aug, n, w, h, 11);
    let per = w * h * 3;
    for i in 0..n {
        let (max, share) = compare(&dev[i * per..(i + 1) * per], &cpu[i]);
        assert!(
            max <= 1 && share <= 0.02,
            "row {i} {:?}: {max}, {share}",
            drawn[i]
        );
    }
    let (_, dev, cpu) = both(aug, 3, 1, 1, 12);
    assert_eq!(dev, cpu.concat());
}

#[test]
fn bad_batches_are_refused_with_a_reason() {
    let a = DeviceAugment::new(Augment::preset(Preset::Strong)).unwrap();
    assert!(DeviceAugment::new(Augment::preset(Preset::Paper)).is_none());
    let d = Drawn::default();
    let u8s = Tensor::zeros([2, 3, 4, 4], (Kind::Uint8, Device::Cpu));
    let err = a.apply(&u8s, &[d]).unwrap_err().to_string();
    assert!(err.contains("1 draws"), "{err}");
    let floats = Tensor::zeros([1, 3, 4, 4], (Kind::Float, Device::Cpu));
    assert!(a.apply(&floats, &[d]).is_err());
    let gray = Tensor::zeros([1, 1, 4, 4], (Kind::Uint8, Device::Cpu));
    assert!(a.apply(&gray, &[d]).is_err());
    // Nothing drawn: the same bytes, in new storage.
    let x = Tensor::from_slice(&(0..48).map(|v| v as u8).collect::<Vec<_>>()).view([1, 3, 4, 4]);
    let y = a.apply(&x, &[d]).unwrap();
    assert!(y.equal(&x));
    assert_ne!(y.data_ptr(), x.data_ptr());
}
