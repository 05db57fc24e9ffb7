//! Synthetic labelled images for demos and tests: shapes x colours x textures.
//!
//! Latent class `c` fixes a shape (circle, square, triangle, cross), a colour (red, green,
//! blue, yellow) and a texture (plain, stripes); each image draws the position, size,
//! background and noise from a seeded RNG, so the same options give the same bytes.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::error::{IoContext, Result};
use crate::jpeg::{EncodeOptions, Encoder, PixelFormat};

const SHAPES: [&str; 4] = ["circle", "square", "triangle", "cross"];
const COLOURS: [(&str, [f32; 3]); 4] = [
    ("red", [220.0, 40.0, 40.0]),
    ("green", [40.0, 190.0, 60.0]),
    ("blue", [40.0, 80.0, 220.0]),
    ("yellow", [230.0, 210.0, 40.0]),
];
const TEXTURES: [&str; 2] = ["plain", "striped"];

/// Number of distinct latent classes [`render`] can draw.
pub const MAX_CLASSES: usize = SHAPES.len() * COLOURS.len() * TEXTURES.len();

/// Settings of a synthetic dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthOptions {
    /// Number of latent classes, 1..=[`MAX_CLASSES`].
    pub classes: usize,
    /// Images per class.
    pub per_class: usize,
    /// Side of the square images in pixels.
    pub size: u32,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            classes: 16,
            per_class: 64,
            size: 64,
            seed: 0,
        }
    }
}

/// The name of latent class `c`, e.g. `circle-red-plain`.
pub fn class_name(c: usize) -> String {
    let shape = SHAPES[c % SHAPES.len()];
    let (colour, _) = COLOURS[(c / SHAPES.len()) % COLOURS.len()];
    let texture = TEXTURES[(c / (SHAPES.len() * COLOURS.len())) % TEXTURES.len()];
    format!("{shape}-{colour}-{texture}")
}

/// Draws image `index` of latent class `class` as packed RGB, `size x size`.
pub fn render(class: usize, index: usize, size: u32, seed: u64) -> Vec<u8> {
    let mut rng =
        Xoshiro256PlusPlus::seed_from_u64(seed ^ (class as u64) << 32 ^ index as u64 ^ 0x5eed_5eed);
    let shape = class % SHAPES.len();
    let mut colour = COLOURS[(class / SHAPES.len()) % COLOURS.len()].1;
    let striped = (class / (SHAPES.len() * COLOURS.len())) % TEXTURES.len() == 1;
    for v in &mut colour {
        *v = (*v + rng.gen_range(-25.0..25.0)).clamp(0.0, 255.0);
    }
    let s = size as f32;
    let r = s * rng.gen_range(0.18..0.34);
    let cx = rng.gen_range(r..s - r);
    let cy = rng.gen_range(r..s - r);
    let bg: f32 = rng.gen_range(70.0..190.0);
    let bg_tint: [f32; 3] = std::array::from_fn(|_| rng.gen_range(-15.0..15.0));
    let mut out = Vec::with_capacity((size * size * 3) as usize);
    for y in 0..size {
        for x in 0..size {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let inside = match shape {
                0 => dx * dx + dy * dy <= r * r,
                1 => dx.abs() <= 0.8 * r && dy.abs() <= 0.8 * r,
                2 => dy <= 0.8 * r && dy >= -r && dx.abs() <= (dy + r) * 0.55,
                _ => {
                    (dx.abs() <= r / 3.0 && dy.abs() <= r) || (dy.abs() <= r / 3.0 && dx.abs() <= r)
                }
            };
            let noise: f32 = rng.gen_range(-12.0..12.0);
            for c in 0..3 {
                let v = if inside {
                    let shade = if striped && ((x + y) / 3) % 2 == 0 {
                        0.55
                    } else {
                        1.0
                    };
                    colour[c] * shade
                } else {
                    bg + bg_tint[c]
                };
                out.push((v + noise).clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

/// Writes an ImageFolder tree `dir/<class name>/<index>.jpg` and returns the files written.
///
/// # Errors
/// I/O errors, with the path.
pub fn write_image_folder(dir: &Path, opts: &SynthOptions) -> Result<Vec<PathBuf>> {
    let classes = opts.classes.clamp(1, MAX_CLASSES);
    let mut encoder = Encoder::new()?;
    let mut written = Vec::with_capacity(classes * opts.per_class);
    for c in 0..classes {
        let class_dir = dir.join(class_name(c));
        std::fs::create_dir_all(&class_dir).at("cannot create", &class_dir)?;
        for i in 0..opts.per_class {
            let rgb = render(c, i, opts.size, opts.seed);
            let jpeg = encoder.encode(
                &rgb,
                opts.size,
                opts.size,
                PixelFormat::Rgb,
                &EncodeOptions::default(),
            )?;
            let path = class_dir.join(format!("{i:05}.jpg"));
            std::fs::write(&path, jpeg).at("cannot write", &path)?;
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_have_distinct_names() {
        let names: std::collections::HashSet<_> = (0..MAX_CLASSES).map(class_name).collect();
        assert_eq!(names.len(), MAX_CLASSES);
    }

    #[test]
    fn rendering_is_seeded_and_class_dependent() {
        assert_eq!(render(3, 7, 32, 1), render(3, 7, 32, 1));
        assert_ne!(render(3, 7, 32, 1), render(3, 7, 32, 2));
        assert_ne!(render(3, 7, 32, 1), render(4, 7, 32, 1));
        assert_eq!(render(0, 0, 32, 0).len(), 32 * 32 * 3);
    }
}
