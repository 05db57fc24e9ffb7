//! The fused region + DCT-scaled decode agrees with decoding everything and cropping after.

use crate::common;

use rand::SeedableRng;
use uic_loader::crop::{random_resized_crop, ten_crop, CropDecoder, Rect, RrcConfig};
use uic_loader::jpeg::{Decoder, PixelFormat, Scale};
use uic_loader::StorageMode;

fn smooth(w: u32, h: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            v.push((127.0 + 120.0 * (fx * 9.0).sin() * (fy * 4.0).cos()) as u8);
            v.push((127.0 + 120.0 * (fy * 7.0 + fx * 2.0).sin()) as u8);
            v.push((255.0 * fx * fy) as u8);
        }
    }
    v
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y) as f64)
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn fused_crop_matches_full_decode_then_crop() {
    let (w, h) = (1000u32, 760u32);
    for progressive in [false, true] {
        let jpeg = common::encode(&smooth(w, h), w, h, PixelFormat::Rgb, progressive);
        let mut full = vec![0u8; (w * h * 3) as usize];
        Decoder::new()
            .unwrap()
            .decode_rgb(&jpeg, Scale::Full, &mut full)
            .unwrap();
        let mut dec = CropDecoder::new().unwrap();
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(4);
        let mut crops: Vec<Rect> = (0..40)
            .map(|_| random_resized_crop(w, h, &RrcConfig::default(), &mut rng))
            .collect();
        crops.extend(ten_crop(w, h, 256, 224));
        crops.push(Rect {
            x: 999.0,
            y: 759.0,
            w: 1.0,
            h: 1.0,
        });
        for (out_side, tol) in [(224u32, 2.5), (64, 2.5), (16, 3.0)] {
            let n = (out_side * out_side * 3) as usize;
            let (mut fused, mut reference) = (vec![0u8; n], vec![0u8; n]);
            for crop in &crops {
                dec.decode(
                    StorageMode::Jpeg,
                    &jpeg,
                    w,
                    h,
                    *crop,
                    (out_side, out_side),
                    &mut fused,
                )
                .unwrap();
                dec.decode(
                    StorageMode::Raw,
                    &full,
                    w,
                    h,
                    *crop,
                    (out_side, out_side),
                    &mut reference,
                )
                .unwrap();
                let d = mean_abs_diff(&fused, &reference);
                assert!(d < tol, "crop {crop:?} -> {out_side}: mean abs diff {d}");
            }
        }
    }
}

#[test]
fn grayscale_and_odd_subsampling_decode_to_rgb() {
    let gray: Vec<u8> = (0..300 * 200).map(|i| (i % 300) as u8 / 2 + 40).collect();
    let jpeg = common::encode(&gray, 300, 200, PixelFormat::Gray, false);
    let mut dec = CropDecoder::new().unwrap();
    let mut out = vec![0u8; 32 * 32 * 3];
    dec.decode(
        StorageMode::Jpeg,
        &jpeg,
        300,
        200,
        Rect {
            x: 33.0,
            y: 17.0,
            w: 150.0,
            h: 120.0,
        },
        (32, 32),
        &mut out,
    )
    .unwrap();
    assert!(
        out.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]),
        "gray must expand to equal RGB"
    );
    assert!(dec
        .decode(
            StorageMode::Jpeg,
            b"junk",
            300,
            200,
            Rect::full(300, 200),
            (32, 32),
            &mut out
        )
        .is_err());
    let outside = Rect {
        x: 290.0,
        y: 0.0,
        w: 20.0,
        h: 10.0,
    };
    assert!(dec
        .decode(
            StorageMode::Jpeg,
            &jpeg,
            300,
            200,
            outside,
            (32, 32),
            &mut out
        )
        .is_err());
}
