//! Fixtures that the integration tests build for themselves in a fresh temp dir.
#![allow(dead_code)]

pub mod s3;

use std::path::Path;

use uic_loader::jpeg::{EncodeOptions, Encoder, PixelFormat, Subsampling};

/// A smooth RGB test pattern.
pub fn pattern(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            v.push(((x * 7 + seed * 13) % 256) as u8);
            v.push(((y * 5 + seed * 29) % 256) as u8);
            v.push((((x + y) * 3 + seed * 31) % 256) as u8);
        }
    }
    v
}

pub fn jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
    encode(&pattern(w, h, seed), w, h, PixelFormat::Rgb, false)
}

pub fn encode(px: &[u8], w: u32, h: u32, f: PixelFormat, progressive: bool) -> Vec<u8> {
    let opts = EncodeOptions {
        quality: 90,
        subsampling: Subsampling::S420,
        progressive,
    };
    Encoder::new().unwrap().encode(px, w, h, f, &opts).unwrap()
}

pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_raw(w, h, pattern(w, h, 3)).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A JPEG whose SOF header declares `w x h` (no matching data): a decompression bomb.
pub fn bomb(w: u16, h: u16) -> Vec<u8> {
    let mut b = jpeg(16, 16, 1);
    let sof = b
        .windows(2)
        .position(|m| m == [0xff, 0xc0])
        .expect("baseline SOF0 marker");
    b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    b
}

pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// An ImageFolder tree of `classes x per_class` small JPEGs of varied sizes.
pub fn image_folder(root: &Path, classes: usize, per_class: usize) {
    for c in 0..classes {
        for i in 0..per_class {
            let (w, h) = (
                17 + (i as u32 * 13) % 50,
                11 + (c as u32 * 7 + i as u32) % 40,
            );
            write(
                &root.join(format!("class{c}/img{i:03}.jpg")),
                &jpeg(w, h, (c * 100 + i) as u32),
            );
        }
    }
}
