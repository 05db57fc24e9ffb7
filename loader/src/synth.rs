//! Synthetic labelled images for demos and tests: shapes x colours x textures.
//!
//! Latent class `c` fixes a shape (circle, square, triangle, cross), a colour (red, green,
//! blue, yellow) and a texture (plain, stripes); each image draws the position, size,
//! background and noise from a seeded RNG, so the same options give the same bytes.
//!
//! [`write_scale_records`] and [`write_scale_folder`] make data sets of any size quickly
//! (the scale bench, `uic synth`): a handful of tiny JPEGs is encoded once per class and
//! reused, so a million records take seconds, not the hours one encode per image would.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::error::{Error, IoContext, Result};
use crate::jpeg::{EncodeOptions, Encoder, PixelFormat};
use crate::writer::{NewSample, RecordWriter, WriterOptions, WrittenFile};

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

/// Settings of a scale data set: `images` tiny JPEGs whose labels cycle through `classes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleOptions {
    /// Number of images.
    pub images: usize,
    /// Number of classes (any number; image `i` has class `i % classes`).
    pub classes: usize,
    /// Side of the square images in pixels.
    pub size: u32,
    /// Distinct images per class, encoded once and reused.
    pub variants: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        ScaleOptions {
            images: 10_000,
            classes: 1000,
            size: 32,
            variants: 4,
            seed: 0,
        }
    }
}

/// The name of class `c` of a scale data set: the latent class it is drawn from and its
/// number, e.g. `circle-red-plain-0032`.
pub fn scale_class_name(c: usize) -> String {
    format!("{}-{c:04}", class_name(c % MAX_CLASSES))
}

/// The images of a scale data set: `[class][variant]` JPEG bytes. Class `c` is drawn as
/// latent class `c % MAX_CLASSES` with its own random draws.
fn scale_jpegs(opts: &ScaleOptions) -> Result<Vec<Vec<Vec<u8>>>> {
    if opts.classes == 0 || opts.variants == 0 || opts.size < 8 {
        return Err(Error::InvalidArgument(format!(
            "a scale data set needs at least 1 class and 1 variant, and images of 8 pixels or \
             more (got {} classes, {} variants, {} pixels)",
            opts.classes, opts.variants, opts.size
        )));
    }
    let mut encoder = Encoder::new()?;
    (0..opts.classes)
        .map(|c| {
            (0..opts.variants)
                .map(|v| {
                    let rgb = render(
                        c % MAX_CLASSES,
                        c / MAX_CLASSES * opts.variants + v,
                        opts.size,
                        opts.seed,
                    );
                    encoder.encode(
                        &rgb,
                        opts.size,
                        opts.size,
                        PixelFormat::Rgb,
                        &EncodeOptions::default(),
                    )
                })
                .collect()
        })
        .collect()
}

/// Image `i`'s class, its JPEG, and its path relative to the root of a folder.
fn scale_image<'a>(jpegs: &'a [Vec<Vec<u8>>], i: usize, path: &mut String) -> (usize, &'a [u8]) {
    use std::fmt::Write;
    let c = i % jpegs.len();
    let v = (i / jpegs.len()) % jpegs[c].len();
    path.clear();
    write!(path, "{}/{i:07}.jpg", scale_class_name(c)).expect("a String takes any write");
    (c, &jpegs[c][v])
}

/// Writes a scale data set straight into a record file at `path` (records aligned to 64
/// bytes, as `convert` aligns small ones), with class names and source paths as an
/// ImageFolder tree would give them.
///
/// # Errors
/// Invalid options, or an error of the [`RecordWriter`].
pub fn write_scale_records(path: &Path, opts: &ScaleOptions) -> Result<WrittenFile> {
    let jpegs = scale_jpegs(opts)?;
    let mut w = RecordWriter::create(
        path,
        WriterOptions {
            align: 64,
            classes: (0..opts.classes)
                .map(|c| scale_class_name(c).into_bytes())
                .collect(),
            ..Default::default()
        },
    )?;
    // Paths are `<class name>/<7 digits>.jpg`; the longest class name bounds them.
    let longest = (0..opts.classes.min(MAX_CLASSES))
        .map(|c| scale_class_name(c).len())
        .max()
        .unwrap_or(0);
    w.reserve(opts.images, opts.images * (longest + 12));
    let mut source = String::new();
    for i in 0..opts.images {
        let (c, data) = scale_image(&jpegs, i, &mut source);
        w.append(&NewSample {
            data,
            width: opts.size,
            height: opts.size,
            label: Some(c as u32),
            source: source.as_bytes(),
            converted: false,
        })?;
    }
    w.finish()
}

/// Writes a scale data set as an ImageFolder tree `dir/<class>/<index>.jpg` (for timing
/// `convert`) and returns the number of files written.
///
/// # Errors
/// Invalid options, or an I/O error with the path.
pub fn write_scale_folder(dir: &Path, opts: &ScaleOptions) -> Result<usize> {
    let jpegs = scale_jpegs(opts)?;
    for c in 0..opts.classes.min(opts.images) {
        let d = dir.join(scale_class_name(c));
        std::fs::create_dir_all(&d).at("cannot create", &d)?;
    }
    let mut source = String::new();
    for i in 0..opts.images {
        let (_, data) = scale_image(&jpegs, i, &mut source);
        let p = dir.join(&source);
        std::fs::write(&p, data).at("cannot write", &p)?;
    }
    Ok(opts.images)
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

    #[test]
    fn scale_records_cycle_through_the_classes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scale.uicr");
        let opts = ScaleOptions {
            images: 250,
            classes: 40,
            size: 16,
            variants: 2,
            seed: 5,
        };
        let w = write_scale_records(&path, &opts).unwrap();
        assert_eq!(w.num_samples, 250);
        let f = crate::RecordFile::open(&path).unwrap();
        assert_eq!(f.num_classes(), 40);
        assert!(f.verify().is_empty());
        let labels = f.labels().unwrap();
        assert!(labels
            .iter()
            .enumerate()
            .all(|(i, &l)| l as usize == i % 40));
        // Classes beyond the 32 latent ones get their own images and names.
        assert_ne!(f.sample(0).data, f.sample(32).data);
        assert_eq!(f.class_names()[33], "square-red-plain-0033");
        // Variants cycle: image i and i + classes * variants share their bytes.
        assert_eq!(f.sample(3).data, f.sample(3 + 80).data);
        assert_ne!(f.sample(3).data, f.sample(3 + 40).data);
    }

    #[test]
    fn scale_folder_has_one_file_per_image() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ScaleOptions {
            images: 30,
            classes: 7,
            size: 16,
            variants: 1,
            seed: 0,
        };
        assert_eq!(write_scale_folder(dir.path(), &opts).unwrap(), 30);
        let per_class: Vec<usize> = (0..7)
            .map(|c| {
                std::fs::read_dir(dir.path().join(scale_class_name(c)))
                    .unwrap()
                    .count()
            })
            .collect();
        assert_eq!(per_class, vec![5, 5, 4, 4, 4, 4, 4]);
        assert!(write_scale_folder(dir.path(), &ScaleOptions { classes: 0, ..opts }).is_err());
    }
}
