//! Image augmentations as plain kernels on slices, each with a small config struct and a
//! per-sample RNG derived from (seed, epoch, index).
//!
//! Each operation lives in its own file as a plain kernel on slices plus a config struct:
//! [`flip`], [`jitter`] (brightness, contrast, saturation, hue), [`grayscale()`], [`blur`],
//! [`sobel()`], [`normalize()`]. Their arithmetic follows torchvision's tensor functions on uint8
//! images, checked against golden outputs in `tests/golden.rs`. [`Augment`] chains them
//! into the paper's presets; [`sample_rng`] gives each sample its own random stream.
//!
//! ```
//! use rand::Rng;
//! let a: u64 = uic_augment::sample_rng(7, 2, 1000).gen();
//! let b: u64 = uic_augment::sample_rng(7, 2, 1000).gen();
//! assert_eq!(a, b);
//! ```

pub mod blur;
mod colour;
pub mod flip;
pub mod grayscale;
pub mod jitter;
pub mod normalize;
mod preset;
pub mod sobel;

pub use blur::{gaussian_blur, BlurConfig};
pub use flip::{hflip, FlipConfig};
pub use grayscale::{grayscale, GrayscaleConfig};
pub use jitter::JitterConfig;
pub use normalize::{normalize, NormalizeConfig};
pub use preset::{Augment, Drawn, Preset};
pub use sobel::sobel;

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// `p` as `gen_bool` takes it: clamped to [0, 1], with NaN as 0 (never), where
/// `f64::clamp` would keep the NaN and `gen_bool` panic on it.
pub(crate) fn chance(p: f64) -> f64 {
    if p > 0.0 {
        p.min(1.0)
    } else {
        0.0
    }
}

/// The RNG of one sample in one epoch. It depends only on `(seed, epoch, index)`, never on
/// which thread draws it or when, so augmented batches are identical for any thread count.
///
/// A run names this stream `uic_loader::seeds::Stream::Augment`, which checks it against the
/// run's other streams.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(sample_seed(seed, epoch, index))
}

/// The seed of [`sample_rng`]: SplitMix64-style mixing of the three words into one
/// well-spread seed.
#[must_use]
pub fn sample_seed(seed: u64, epoch: u64, index: u64) -> u64 {
    let mut z = seed
        ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ index.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_differ_by_seed_epoch_and_index() {
        let draw = |s, e, i| sample_rng(s, e, i).gen::<u64>();
        let base = draw(1, 1, 1);
        assert_eq!(base, draw(1, 1, 1));
        assert_ne!(base, draw(2, 1, 1));
        assert_ne!(base, draw(1, 2, 1));
        assert_ne!(base, draw(1, 1, 2));
        assert_ne!(draw(0, 1, 0), draw(0, 0, 1));
    }

    #[test]
    fn hostile_settings_neither_panic_nor_hang() {
        // Found by the `augment` fuzz target: a NaN probability and infinite ranges reached
        // `gen_bool` / `gen_range` (panics), and a huge kernel fraction counted down from
        // usize::MAX. Each now has a defined result.
        use crate::{BlurConfig, FlipConfig, GrayscaleConfig, JitterConfig};
        let (w, h) = (5, 4);
        for p in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 2.0] {
            let mut img: Vec<u8> = (0..w * h * 3).map(|i| (i * 29 % 256) as u8).collect();
            let mut rng = sample_rng(1, 2, 3);
            let always = p > 0.0; // NaN and negative: never; above 1: always
            assert_eq!(FlipConfig { p }.draw(&mut rng), always, "flip p {p}");
            assert_eq!(GrayscaleConfig { p }.apply(&mut img, &mut rng), always);
            let jitter = JitterConfig {
                brightness: f64::INFINITY,
                contrast: f64::NAN,
                saturation: 1e308,
                hue: f64::INFINITY,
                p,
            };
            assert_eq!(jitter.apply(&mut img, &mut rng), always);
            let blur = BlurConfig {
                sigma: (0.1, f32::INFINITY),
                kernel_fraction: 1e30,
                p,
            };
            assert_eq!(
                blur.kernel_size(w, h),
                7,
                "the largest odd k with k / 2 < 4"
            );
            assert_eq!(
                blur.apply(&mut img, w, h, &mut rng, &mut Vec::new()),
                always
            );
        }
        let huge = BlurConfig {
            kernel_fraction: f32::MAX,
            ..BlurConfig::default()
        };
        assert_eq!(huge.kernel_size(1, 1), 1);
        assert_eq!(huge.kernel_size(0, 9), 1);
        assert_eq!(BlurConfig::default().kernel_size(224, 300), 23);
    }
}
