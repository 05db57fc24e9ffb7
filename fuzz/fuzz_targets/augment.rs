//! Arbitrary sizes (up to 64x64) and parameters through every augmentation kernel of
//! `uic-augment`, by its public API only. Slice bounds hold and float outputs are finite.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use uic_augment::jitter::{adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation};
use uic_augment::{
    gaussian_blur, grayscale, hflip, normalize, sample_rng, sobel, Augment, BlurConfig, FlipConfig,
    GrayscaleConfig, JitterConfig, NormalizeConfig,
};

#[derive(Debug, Arbitrary)]
struct Input {
    w: u8,
    h: u8,
    seed: u64,
    /// Jitter factors and strengths, any f64 bits (NaN and infinities included).
    factors: [f64; 4],
    /// Jitter strengths, blur sigmas and kernel fraction, as fractions of their ranges.
    strengths: [u16; 4],
    /// Probabilities, as fractions of 1.
    p: [u8; 4],
    sigma: (u16, u16),
    kernel_fraction: u8,
    /// Kernel size for the direct blur call (made odd).
    k: u8,
    mean: [f32; 3],
    std: [u8; 3],
    /// Settings taken as raw bits instead (NaN, infinities, huge values): each must give a
    /// defined result, neither a panic nor a hang.
    wild: Option<Wild>,
    pixels: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
struct Wild {
    p: [f64; 4],
    strengths: [f64; 4],
    sigma: (f32, f32),
    kernel_fraction: f32,
    hue_factor: f64,
}

fuzz_target!(|input: Input| {
    let (w, h) = (1 + (input.w % 64) as usize, 1 + (input.h % 64) as usize);
    let n = w * h * 3;
    let base: Vec<u8> = (0..n)
        .map(|i| {
            input
                .pixels
                .get(i % input.pixels.len().max(1))
                .copied()
                .unwrap_or(i as u8)
        })
        .collect();
    let mut rng = sample_rng(input.seed, 0, 0);
    let mut scratch = Vec::new();

    let mut img = base.clone();
    hflip(&mut img, w, h, 3);
    hflip(&mut img, w, h, 3);
    assert_eq!(img, base, "two flips are the identity");
    grayscale(&mut img);
    adjust_brightness(&mut img, input.factors[0]);
    adjust_contrast(&mut img, input.factors[1]);
    adjust_saturation(&mut img, input.factors[2]);
    adjust_hue(&mut img, input.factors[3].clamp(-0.5, 0.5));
    if let Some(wild) = &input.wild {
        adjust_hue(&mut img, wild.hue_factor);
    }
    assert_eq!(img.len(), n);

    // Direct blur: any odd kernel a side of this image allows with reflect padding.
    let side = w.min(h);
    let k = 2 * ((input.k as usize) % side.max(1)) + 1;
    if k / 2 < side {
        let mut img = base.clone();
        gaussian_blur(
            &mut img,
            w,
            h,
            k,
            input.sigma.0 as f32 / 4096.0,
            &mut scratch,
        );
        assert_eq!(img.len(), n);
    }

    // Sane settings (fractions of their ranges), or wild ones (any bits): NaN probabilities,
    // infinite strengths and huge kernel fractions once panicked or hung
    // (docs/reliability.md).
    let (jitter, blur, p) = match &input.wild {
        None => {
            let [s0, s1, s2, s3] = input.strengths.map(|s| s as f64 / 4096.0);
            let p = input.p.map(|p| p as f64 / 255.0);
            let jitter = JitterConfig {
                brightness: s0,
                contrast: s1,
                saturation: s2,
                hue: (s3 / 16.0).min(0.5),
                p: p[0],
            };
            let blur = BlurConfig {
                sigma: (input.sigma.0 as f32 / 4096.0, input.sigma.1 as f32 / 4096.0),
                kernel_fraction: input.kernel_fraction as f32 / 64.0,
                p: p[1],
            };
            (jitter, blur, p)
        }
        Some(wild) => {
            let [s0, s1, s2, s3] = wild.strengths;
            let jitter = JitterConfig {
                brightness: s0,
                contrast: s1,
                saturation: s2,
                hue: s3,
                p: wild.p[0],
            };
            let blur = BlurConfig {
                sigma: wild.sigma,
                kernel_fraction: wild.kernel_fraction,
                p: wild.p[1],
            };
            (jitter, blur, wild.p)
        }
    };
    let flip = FlipConfig { p: p[2] };
    let gray = GrayscaleConfig { p: p[3] };
    let mut img = base.clone();
    let _ = jitter.apply(&mut img, &mut rng);
    let _ = blur.apply(&mut img, w, h, &mut rng, &mut scratch);
    let _ = flip.apply(&mut img, w, h, 3, &mut rng);
    let _ = gray.apply(&mut img, &mut rng);
    let aug = Augment {
        flip: Some(flip),
        jitter: Some(jitter),
        grayscale: Some(gray),
        blur: Some(blur),
    };
    aug.apply(&mut img, w, h, &mut rng, &mut scratch);
    let _ =
        Augment { blur: None, ..aug }.apply_deferring_flip(&mut img, w, h, &mut rng, &mut scratch);
    assert_eq!(img.len(), n);

    // Normalise (any finite mean, std in 1/255..1) and Sobel: finite floats.
    let cfg = NormalizeConfig {
        mean: input.mean.map(|m| {
            if m.is_finite() {
                m.clamp(-10.0, 10.0)
            } else {
                0.0
            }
        }),
        std: input.std.map(|s| (1 + s as u32) as f32 / 256.0),
    };
    let mut norm = vec![0f32; n];
    normalize(&img, &mut norm, &cfg);
    assert!(
        norm.iter().all(|v| v.is_finite()),
        "normalize gave a non-finite value"
    );
    let mut edges = vec![0f32; 2 * w * h];
    sobel(&norm, &mut edges, w, h);
    assert!(
        edges.iter().all(|v| v.is_finite()),
        "sobel gave a non-finite value"
    );
});
